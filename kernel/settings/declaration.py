"""What a setting is: its declaration, the parsers of its text, the errors.

docs/configuration.md explains the naming scheme these declarations follow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ENVIRONMENTS = ("production", "development", "testing")
# Development and testing may generate their own secrets and run without servers.
DEVELOPMENT_ENVS = ("development", "testing")
# Variables named CONSENT_<NAME> were how settings without a variable of their
# own were set (Flask's from_prefixed_env). For a declared setting that
# spelling is a deprecated alias of <NAME>; it still sets any other Flask setting.
LEGACY_PREFIX = "CONSENT_"
MIN_KEY_BYTES = 32


class SettingsError(RuntimeError):
    """The configuration cannot start the service; one line per problem."""

    def __init__(self, problems: list[str], environment: str = "") -> None:
        self.problems = problems
        where = f" (CONSENT_ENV={environment})" if environment else ""
        lines = "\n".join(f"- {problem}" for problem in problems)
        super().__init__(
            f"The service refuses to start{where}: {len(problems)} setting problem(s); "
            f"see docs/configuration.md.\n{lines}"
        )


class DeprecatedSetting(FutureWarning):
    """A variable set under a name that is no longer the setting's own.

    A FutureWarning, not a DeprecationWarning: Python shows it to whoever runs
    the service, which is who must rename the variable."""


# Parsers: raw text in, the typed value out; ValueError says what was expected.


def text(raw: str) -> str:
    return raw


def stripped(raw: str) -> str:
    return raw.strip()


def integer(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def positive_integer(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError("must be a whole number of 1 or more")
    return value


def log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("json", "text"):
        raise ValueError("must be json or text")
    return value


def log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return value


def number(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number") from None
    if not 0 <= value < float("inf"):
        raise ValueError("must be a number of 0 or more")
    return value


def flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0")


def comma_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def origins(raw: str) -> list[str]:
    return [item.rstrip("/").lower() for item in comma_list(raw)]


def base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with https:// (or http://)")
    return value


def database_url(raw: str) -> str:
    url = raw.strip()
    # Accept the plain scheme most hosts hand out; we speak psycopg 3.
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith(("postgresql+psycopg://", "sqlite://")):
        raise ValueError("must start with postgresql:// (or sqlite:// for development)")
    return url


def broker_url(raw: str) -> str:
    url = raw.strip()
    if not url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        raise ValueError("must start with redis://, rediss://, amqp:// or amqps://")
    return url


def smtp_url(raw: str) -> str:
    url = raw.strip()
    if not url.startswith(("smtp://", "smtps://")):
        raise ValueError("must start with smtp:// or smtps://")
    return url


def environment(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ENVIRONMENTS:
        raise ValueError(f"must be one of {', '.join(ENVIRONMENTS)}")
    return value


# How a connector removes the CRM's copy after an erasure or a purge (docs/connectors.md).
ERASURE_MODES = ("delete", "anonymise")


def erasure_mode(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ERASURE_MODES:
        raise ValueError(f"must be one of {', '.join(ERASURE_MODES)}")
    return value


def time_of_day(raw: str) -> str:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw.strip())
    if not match:
        raise ValueError("must be a time of day HH:MM (UTC)")
    return f"{int(match[1]):02d}:{match[2]}"


_TYPE_NAMES: dict[Callable[[str], Any], str] = {
    text: "text",
    stripped: "text",
    integer: "integer",
    log_format: "choice",
    log_level: "choice",
    positive_integer: "integer",
    number: "number",
    flag: "1/0",
    comma_list: "comma list",
    origins: "comma list",
    base_url: "URL",
    database_url: "URL",
    broker_url: "URL",
    smtp_url: "URL",
    environment: "choice",
    time_of_day: "HH:MM",
    erasure_mode: "choice",
}


@dataclass(frozen=True)
class Setting:
    """One environment variable: also the ``app.config`` key of its value."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    meaning: str
    # What production requires, in words ("" when nothing); the checks are
    # in ``production_problems``, one per requirement.
    production: str = ""
    # May come from the file named by <NAME>_FILE; its value is never echoed.
    secret: bool = False
    # The variable that lifts the production requirement for a deliberate
    # single-host install, if any.
    opt_out: str | None = None
    # Old names still read, with a DeprecatedSetting warning.
    aliases: tuple[str, ...] = ()
    # The default as the table shows it, when the value is worked out at start.
    shown_default: str | None = None
    # The app.config key, when it is not the name: a variable renamed to the
    # naming scheme keeps the key the code and tests already use.
    key: str | None = None

    @property
    def config_key(self) -> str:
        return self.key or self.name

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.parse, "text")

    def names_read(self) -> tuple[str, ...]:
        """The name, then every old name still read (deprecated)."""
        names = (self.name, *self.aliases)
        legacy = tuple(LEGACY_PREFIX + n for n in names if not n.startswith(LEGACY_PREFIX))
        return (*names, *legacy)


def opt_out(name: str, what: str) -> Setting:
    """An ``ALLOW_<WHAT>_IN_PRODUCTION`` switch, off unless set to 1."""
    return Setting(
        name,
        flag,
        False,
        f"`1`: a deliberate single-host install accepts {what} in production",
    )
