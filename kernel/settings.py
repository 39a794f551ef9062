"""Every environment variable the service reads, declared once.

Each ``Setting`` says its name, type, default, meaning, what production
requires of it, whether it is a secret (then it may also come from a file,
``<NAME>_FILE``, the way container secrets are mounted) and which variable
opts a deliberate single-host install out of a production requirement.
``load`` reads them all and reports every problem at once; ``production_problems``
is the list of reasons a production start is refused; ``markdown_table`` is the
README's configuration table (``flask settings table``). docs/configuration.md
explains the naming scheme and the refusals.

Imports nothing from the service: ``extensions.py`` reads the broker's
settings from here at import time, before any package exists.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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


def _text(raw: str) -> str:
    return raw


def _stripped(raw: str) -> str:
    return raw.strip()


def _integer(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _number(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("must be a number") from None
    if not 0 <= value < float("inf"):
        raise ValueError("must be a number of 0 or more")
    return value


def _flag(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0")


def _comma_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _origins(raw: str) -> list[str]:
    return [item.rstrip("/").lower() for item in _comma_list(raw)]


def _base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with https:// (or http://)")
    return value


def _database_url(raw: str) -> str:
    url = raw.strip()
    # Accept the plain scheme most hosts hand out; we speak psycopg 3.
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith(("postgresql+psycopg://", "sqlite://")):
        raise ValueError("must start with postgresql:// (or sqlite:// for development)")
    return url


def _broker_url(raw: str) -> str:
    url = raw.strip()
    if not url.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
        raise ValueError("must start with redis://, rediss://, amqp:// or amqps://")
    return url


def _smtp_url(raw: str) -> str:
    url = raw.strip()
    if not url.startswith(("smtp://", "smtps://")):
        raise ValueError("must start with smtp:// or smtps://")
    return url


def _environment(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ENVIRONMENTS:
        raise ValueError(f"must be one of {', '.join(ENVIRONMENTS)}")
    return value


def _time_of_day(raw: str) -> str:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw.strip())
    if not match:
        raise ValueError("must be a time of day HH:MM (UTC)")
    return f"{int(match[1]):02d}:{match[2]}"


_TYPE_NAMES: dict[Callable[[str], Any], str] = {
    _text: "text",
    _stripped: "text",
    _integer: "integer",
    _number: "number",
    _flag: "1/0",
    _comma_list: "comma list",
    _origins: "comma list",
    _base_url: "URL",
    _database_url: "URL",
    _broker_url: "URL",
    _smtp_url: "URL",
    _environment: "choice",
    _time_of_day: "HH:MM",
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


def _opt_out(name: str, what: str) -> Setting:
    return Setting(
        name,
        _flag,
        False,
        f"`1`: a deliberate single-host install accepts {what} in production",
    )


SETTINGS: tuple[Setting, ...] = (
    # Where it runs -------------------------------------------------------------
    Setting(
        "CONSENT_ENV",
        _environment,
        "production",
        "`production`, `development` or `testing`; the last two generate their own "
        "secrets under `instance/` and skip the production checks; `testing` starts no worker",
    ),
    Setting(
        "DATABASE_URL",
        _database_url,
        None,
        "e.g. `postgresql://user:pw@host:5432/consent` (psycopg 3 is used)",
        production="PostgreSQL",
        secret=True,
        opt_out="ALLOW_SQLITE_IN_PRODUCTION",
        shown_default="SQLite file `instance/consent.db`",
    ),
    Setting(
        "DRAMATIQ_BROKER_URL",
        _broker_url,
        None,
        "`redis://host:6379/0` or `amqp://user:pw@host:5672/`; the queues the workers "
        "(`dramatiq worker`) take jobs from",
        production="set",
        secret=True,
        opt_out="ALLOW_INPROCESS_WORKER_IN_PRODUCTION",
        shown_default="none: in-process worker",
    ),
    Setting("DRAMATIQ_NAMESPACE", _stripped, "consent", "Redis key namespace of the queues"),
    Setting(
        "INPROCESS_WORKER",
        _flag,
        True,
        "with no broker, run the actors in the web process (`0` to disable)",
    ),
    Setting(
        "RATELIMIT_STORAGE_URI",
        _stripped,
        "memory://",
        "Flask-Limiter storage, e.g. `redis://host:6379/1`: shared by every web process",
        production="not `memory://`",
        secret=True,
        opt_out="ALLOW_MEMORY_RATELIMITS_IN_PRODUCTION",
    ),
    Setting(
        "RATELIMIT_IN_MEMORY_FALLBACK",
        _flag,
        True,
        "while that Redis is down, count in each web process instead of failing the forms "
        "(`0`: fail)",
    ),
    Setting(
        "TRUSTED_PROXY_HOPS",
        _integer,
        0,
        "how many reverse proxies (load balancer, ingress) stand in front of the web "
        "processes; with `1` or more, the client's address and scheme are taken from the "
        "`X-Forwarded-For`/`-Proto` entries those proxies added (werkzeug's `ProxyFix`). The "
        "rate limits count that address and a consent's evidence records it. Leave `0` when "
        "clients reach gunicorn directly: the header would then be the client's own word",
    ),
    Setting(
        "PUBLIC_BASE_URL",
        _base_url,
        None,
        "base of the links in emails and of the public pages, e.g. `https://consent.example.com`",
        production="`https://`",
        opt_out="ALLOW_HTTP_PUBLIC_BASE_URL_IN_PRODUCTION",
        shown_default="`http://127.0.0.1:5000` (development only)",
    ),
    # Secrets -------------------------------------------------------------------
    Setting(
        "SECRET_KEY",
        _text,
        None,
        "signs sessions and links",
        production=f"at least {MIN_KEY_BYTES} bytes",
        secret=True,
        shown_default="none: generated under `instance/` in development",
    ),
    Setting(
        "SECRET_KEY_FALLBACKS",
        _comma_list,
        [],
        "comma-separated old keys still accepted after a rotation",
        secret=True,
    ),
    Setting(
        "SUPPRESSION_KEY",
        _text,
        None,
        "HMAC key of the suppression list; never change it, or old entries stop matching "
        "(back it up with the database)",
        production=f"at least {MIN_KEY_BYTES} bytes",
        secret=True,
        shown_default="none: generated under `instance/` in development",
    ),
    Setting(
        "SESSION_COOKIE_SECURE",
        _flag,
        True,
        "send the staff session cookie over HTTPS only",
    ),
    Setting(
        "STAFF_SESSION_MAX_AGE_S",
        _integer,
        12 * 3600,
        "seconds a staff sign-in lasts",
        aliases=("STAFF_SESSION_MAX_AGE",),
        key="STAFF_SESSION_MAX_AGE",
    ),
    Setting(
        "STAFF_SIGN_IN_LIMIT_PER_IP",
        _stripped,
        "30 per minute;200 per hour",
        "sign-in attempts per client address",
    ),
    Setting(
        "STAFF_SIGN_IN_LIMIT_PER_ACCOUNT",
        _stripped,
        "5 per 15 minutes",
        "sign-in attempts per staff account",
    ),
    # Mail ----------------------------------------------------------------------
    Setting(
        "SMTP_URL",
        _smtp_url,
        None,
        "`smtp://user:pass@host:587`: STARTTLS whenever the server offers it, then `AUTH`; "
        "`smtps://user:pass@host:465`: TLS from the first byte; `smtp://localhost:25`: a "
        "local relay, no user, no authentication. `smtp://` does not insist on TLS: a server "
        "that offers no STARTTLS gets the mail (and the password, if given) in the clear, so "
        "across a network use `smtps://` or a relay that offers STARTTLS",
        production="set",
        secret=True,
        opt_out="ALLOW_MAIL_FOLDER_IN_PRODUCTION",
        shown_default="none: mail written to `MAIL_FOLDER`",
    ),
    Setting(
        "SMTP_CA_FILE",
        _stripped,
        None,
        "a PEM file with the CA that signed the SMTP server's certificate (a relay with a "
        "self-signed or private-CA certificate). Trusted for that server *instead of* the "
        "system store, so that no public CA can vouch for it; add the public CAs to the file "
        "if the server may also show a public certificate. Without it such a server's mail "
        "waits in the outbox, retried, with the reason in `last_error`",
        shown_default="none: the system's CAs",
    ),
    Setting(
        "MAIL_FOLDER",
        _stripped,
        None,
        "where messages are written when `SMTP_URL` is not set",
        shown_default="`instance/mail/`",
    ),
    Setting(
        "MAIL_FROM",
        _stripped,
        "Consent Service <no-reply@localhost>",
        "sender of every email",
    ),
    Setting(
        "BRAND_NAME",
        _stripped,
        "",
        'the name the public pages and the signup notice give the sender ("Consent Service" '
        "when `MAIL_FROM` has none)",
        shown_default="the name in `MAIL_FROM`",
    ),
    Setting(
        "MAIL_UNSUBSCRIBE_MAILTO",
        _stripped,
        None,
        "an address added as `mailto:` to `List-Unsubscribe` in marketing mail",
    ),
    Setting(
        "POLICY_NOTICE_ON_MAJOR",
        _flag,
        True,
        "publishing a major privacy-policy version mails a notice to every registered address "
        "(R24); `0` to send it another way",
    ),
    Setting(
        "OUTBOX_MIN_BACKOFF_MS",
        _integer,
        15_000,
        "retry backoff of temporary SMTP failures: the first wait",
    ),
    Setting(
        "OUTBOX_MAX_BACKOFF_MS",
        _integer,
        30 * 60_000,
        "retry backoff of temporary SMTP failures: the longest wait",
    ),
    Setting(
        "OUTBOX_CLAIM_TIMEOUT_S",
        _integer,
        600,
        "a row claimed by a worker that died (or handed over and still queued) this long ago "
        "is handed over again",
    ),
    Setting(
        "OUTBOX_SWEEP_INTERVAL_S",
        _number,
        60.0,
        "the outbox sweeper runs this often (`0`: never; then run `flask outbox sweep` from cron)",
    ),
    Setting(
        "OUTBOX_SWEEP_GRACE_S",
        _number,
        60.0,
        "rows younger than this are left to the request that queued them",
    ),
    # Returned mail ---------------------------------------------------------------
    Setting(
        "BOUNCE_ADDRESS",
        _stripped,
        None,
        "returned mail's address (`bounces@example.com`); each message leaves with "
        "`bounces+<signed outbox id>@example.com` as its envelope sender (VERP, "
        "`docs/bounces.md`)",
        shown_default="none: the envelope sender is `MAIL_FROM`'s address",
    ),
    Setting(
        "BOUNCE_IMAP_URL",
        _stripped,
        None,
        "an IMAP folder of returned mail to read (`imaps://user:pass@host/INBOX`)",
        secret=True,
    ),
    Setting(
        "BOUNCE_IMAP_INTERVAL_S",
        _number,
        300.0,
        "how often that folder is read",
    ),
    Setting(
        "BOUNCE_IMAP_DONE_FOLDER",
        _stripped,
        None,
        "the IMAP folder processed messages move to",
        shown_default="none: deleted",
    ),
    Setting(
        "BOUNCE_IMAP_ERROR_FOLDER",
        _stripped,
        "bounces-unreadable",
        "the IMAP folder messages that cannot be read move to",
    ),
    Setting(
        "BOUNCE_MAX_BYTES",
        _integer,
        10 * 1024 * 1024,
        "a returned message larger than this is refused before it is parsed",
    ),
    Setting(
        "SES_SNS_TOPIC_ARNS",
        _stripped,
        "",
        "the Amazon SES bounce webhook (through SNS): the topics taken, comma-separated "
        "(none: every post refused; docs/bounces.md)",
    ),
    Setting(
        "SNS_CERT_HOST_PATTERN",
        _stripped,
        r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?",
        "where SNS signing certificates may come from (a regular expression over the host name)",
    ),
    Setting(
        "SNS_CA_FILE",
        _stripped,
        None,
        "the CAs trusted to fetch SNS signing certificates",
        shown_default="the system's CAs",
    ),
    Setting("SNS_MAX_AGE_S", _integer, 2 * 3600, "the oldest SNS signature taken"),
    Setting(
        "POSTMARK_WEBHOOK_AUTH",
        _stripped,
        None,
        "`user:password`, the basic auth in Postmark's bounce webhook URL",
        secret=True,
        shown_default="none: refused",
    ),
    Setting(
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        _stripped,
        None,
        "the SendGrid Signed Event Webhook's verification key (base64, as shown)",
        shown_default="none: refused",
    ),
    Setting("SENDGRID_MAX_AGE_S", _integer, 600, "the oldest SendGrid signature taken"),
    Setting(
        "BOUNCE_WEBHOOK_LIMIT",
        _stripped,
        "600 per minute",
        "posts per client address to each bounce webhook",
    ),
    Setting(
        "BOUNCE_WEBHOOK_MAX_BYTES",
        _integer,
        1024 * 1024,
        "the largest body a bounce webhook takes",
    ),
    # Public forms ----------------------------------------------------------------
    Setting(
        "SIGNUP_ALLOWED_ORIGINS",
        _origins,
        [],
        "comma-separated origins (`https://www.example.se`; `*` for any) that may post the "
        "registered signup forms that list no `origins` of their own; never the hosted form "
        '(docs/policy.md, docs/mail-flows.md "Cross-site posts")',
    ),
    Setting(
        "SIGNUP_LIMIT_PER_IP",
        _stripped,
        "30 per hour",
        "rate limit shared by every public form that can send an email, per client address",
    ),
    Setting(
        "SIGNUP_LIMIT_PER_ADDRESS",
        _stripped,
        "5 per hour",
        "the same, per mailbox (the address without its `+tag`, in lower case) and client",
    ),
    Setting(
        "SIGNUP_LIMIT_PER_DOMAIN",
        _stripped,
        "100 per hour",
        "the same, per recipient domain",
    ),
    Setting(
        "MAILBOX_DAILY_LIMIT",
        _integer,
        5,
        "at most this many emails a public form can cause go to one mailbox in 24 hours, and "
        "never more than one in ten minutes; counted in the database where the email is queued",
    ),
    Setting(
        "SIGNUP_MIN_S",
        _number,
        0.1,
        "every signup is answered no sooner than this, so that its timing does not tell a new "
        "address from a known one",
        aliases=("SIGNUP_MIN_SECONDS",),
        key="SIGNUP_MIN_SECONDS",
    ),
    # Policy, retention, feed -----------------------------------------------------
    Setting(
        "POLICY_FILE",
        _stripped,
        None,
        "topics, bases per topic, country rules, retention rules, the registered signup forms "
        "(docs/policy.md)",
        shown_default="`consent/default_policy.toml`",
    ),
    Setting(
        "RETENTION_DAILY_AT",
        _time_of_day,
        "02:30",
        "when the daily retention run starts (HH:MM, UTC)",
    ),
    Setting(
        "RETENTION_BATCH_SIZE",
        _integer,
        1000,
        "rows a retention run removes per transaction",
    ),
    Setting(
        "RETENTION_BATCH_PAUSE_S",
        _number,
        0.0,
        "seconds a retention run waits between batches",
        aliases=("RETENTION_BATCH_PAUSE",),
        key="RETENTION_BATCH_PAUSE",
    ),
    Setting(
        "RETENTION_LOCK_STALE_S",
        _integer,
        300,
        "a retention run's lock not beaten for this long may be taken over",
        aliases=("RETENTION_LOCK_STALE_SECONDS",),
        key="RETENTION_LOCK_STALE_SECONDS",
    ),
    Setting(
        "CHANGE_FEED_KEEP_DAYS",
        _integer,
        90,
        "days the change feed keeps its items (docs/integration.md)",
    ),
    Setting(
        "IDEMPOTENCY_KEEP_HOURS",
        _number,
        24.0,
        "how long an API caller's `Idempotency-Key` and the answer kept for it last "
        "(docs/integration.md)",
    ),
    Setting(
        "IMPORT_MAX_BYTES",
        _integer,
        200 * 1024 * 1024,
        "largest CSV the imports (API and staff page) accept, lifted only once the caller may "
        "import; every other route keeps a 1 MiB limit",
    ),
    # Webhooks --------------------------------------------------------------------
    Setting(
        "WEBHOOK_MIN_BACKOFF_MS",
        _integer,
        5_000,
        "retry backoff of webhook deliveries: the first wait (docs/webhooks.md)",
    ),
    Setting(
        "WEBHOOK_MAX_BACKOFF_MS",
        _integer,
        3_600_000,
        "retry backoff of webhook deliveries: the longest wait",
    ),
    Setting(
        "WEBHOOK_RETRY_HOURS",
        _number,
        72.0,
        "a webhook delivery is retried this long after its first try, then fails; must be "
        "shorter than `CHANGE_FEED_KEEP_DAYS`",
    ),
    Setting(
        "WEBHOOK_REPLAY_MAX",
        _integer,
        100_000,
        "the most changes one webhook replay may re-send",
    ),
    Setting(
        "WEBHOOK_ALLOW_PRIVATE_TARGETS",
        _flag,
        False,
        "`1` allows webhook receivers inside the network (loopback, private, link-local "
        "addresses); otherwise refused at registration and at every delivery (docs/webhooks.md)",
    ),
    # Production opt-outs ---------------------------------------------------------
    _opt_out("ALLOW_SQLITE_IN_PRODUCTION", "a SQLite database"),
    _opt_out(
        "ALLOW_INPROCESS_WORKER_IN_PRODUCTION",
        "jobs run inside the web process (no broker; queued jobs die with it)",
    ),
    _opt_out(
        "ALLOW_MEMORY_RATELIMITS_IN_PRODUCTION",
        "rate limits counted per process (one web process only)",
    ),
    _opt_out("ALLOW_MAIL_FOLDER_IN_PRODUCTION", "mail written to `MAIL_FOLDER`, never sent"),
    _opt_out(
        "ALLOW_HTTP_PUBLIC_BASE_URL_IN_PRODUCTION",
        "an `http://` `PUBLIC_BASE_URL` (links and cookies in the clear)",
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_KEY: dict[str, Setting] = {s.config_key: s for s in SETTINGS}


@dataclass
class Loaded:
    """The values read, and what was wrong with the variables."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    deprecations: list[str] = field(default_factory=list)
    # The names that were set (from any of their spellings).
    given: set[str] = field(default_factory=set)


def _read_file(variable: str, path: str, problems: list[str]) -> str | None:
    try:
        # A file written by an editor or `echo` ends in a newline that is no
        # part of the secret.
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        problems.append(f"{variable}: cannot read {path!r} ({exc.strerror or exc}).")
    except UnicodeDecodeError:
        problems.append(f"{variable}: {path!r} is not UTF-8 text.")
    return None


def _raw(setting: Setting, environ: Mapping[str, str], loaded: Loaded) -> tuple[str, str] | None:
    """The text set for ``setting`` and the variable it came from, or None."""
    direct = environ.get(setting.name) or None
    from_file = environ.get(f"{setting.name}_FILE") or None if setting.secret else None
    if direct is not None and from_file is not None:
        loaded.problems.append(
            f"{setting.name}: set both it and {setting.name}_FILE; set only one."
        )
        return None
    if from_file is not None:
        text = _read_file(f"{setting.name}_FILE", from_file, loaded.problems)
        return None if text is None else (text, f"{setting.name}_FILE")
    old = [name for name in setting.names_read()[1:] if environ.get(name)]
    for name in old:
        if direct is not None:
            loaded.deprecations.append(f"{name} is ignored: {setting.name} is set; remove {name}.")
        else:
            loaded.deprecations.append(f"{name} is deprecated; rename it {setting.name}.")
    if direct is not None:
        return direct, setting.name
    if old:
        return environ[old[0]], old[0]
    return None


def _legacy_json(raw: str) -> str:
    # CONSENT_<NAME> values were read as JSON (Flask's from_prefixed_env):
    # "true" was True and '"02:30"' a string; take them as they were meant.
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    return raw


def load(environ: Mapping[str, str] | None = None) -> Loaded:
    """Every declared setting from ``environ`` (default: the process's), typed;
    every malformed or unreadable variable is one problem, naming it."""
    environ = os.environ if environ is None else environ
    loaded = Loaded()
    for setting in SETTINGS:
        found = _raw(setting, environ, loaded)
        if found is None:
            loaded.values[setting.config_key] = _copy(setting.default)
            continue
        raw, variable = found
        loaded.given.add(setting.name)
        if variable.startswith(LEGACY_PREFIX) and variable != setting.name:
            raw = _legacy_json(raw)
        try:
            loaded.values[setting.config_key] = setting.parse(raw)
        except ValueError as exc:
            shown = "" if setting.secret else f" (not {raw!r})"
            loaded.problems.append(f"{variable}: {exc}{shown}.")
            loaded.values[setting.config_key] = _copy(setting.default)
    return loaded


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def value(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting's value, its default when unset or malformed (``load``, at
    the app's start, reports the problem)."""
    setting = BY_NAME[name]
    environ = os.environ if environ is None else environ
    found = _raw(setting, environ, Loaded())
    if found is None:
        return _copy(setting.default)
    try:
        return setting.parse(found[0])
    except ValueError:
        return _copy(setting.default)


def warn_deprecations(messages: Iterable[str]) -> None:
    for message in messages:
        warnings.warn(message, DeprecatedSetting, stacklevel=3)


def legacy_flask_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``CONSENT_<NAME>`` for any Flask or extension setting not declared here
    (e.g. ``CONSENT_PERMANENT_SESSION_LIFETIME=3600``), read as JSON the way
    Flask's ``from_prefixed_env`` does."""
    environ = os.environ if environ is None else environ
    declared = {name for s in SETTINGS for name in s.names_read()}
    declared |= {LEGACY_PREFIX + s.config_key for s in SETTINGS}
    found: dict[str, Any] = {}
    for variable in sorted(environ):
        if not variable.startswith(LEGACY_PREFIX) or variable in declared:
            continue
        if variable.endswith("_FILE") and variable.removesuffix("_FILE") in declared:
            continue
        raw = environ[variable]
        try:
            found[variable.removeprefix(LEGACY_PREFIX)] = json.loads(raw)
        except ValueError:
            found[variable.removeprefix(LEGACY_PREFIX)] = raw
    return found


# Production ---------------------------------------------------------------------------


def production_problems(config: Mapping[str, Any]) -> list[str]:
    """Why ``config`` must not run in production, one line per problem naming
    the variable and, where there is one, the variable that opts out.

    ``config`` is the app's configuration (a test's overrides included), with
    the database URI the app will use as ``SQLALCHEMY_DATABASE_URI``."""
    problems: list[str] = []

    def refuse(name: str, why: str) -> None:
        opt_out = BY_NAME[name].opt_out
        if opt_out and config.get(opt_out):
            return
        hint = f"; or set {opt_out}=1 for a deliberate single-host install" if opt_out else ""
        problems.append(f"{name}: {why}{hint}.")

    database = str(config.get("SQLALCHEMY_DATABASE_URI") or "")
    if not config.get("DATABASE_URL") and database.startswith("sqlite"):
        refuse("DATABASE_URL", "is not set, so the database is a SQLite file; set a PostgreSQL URL")
    elif database.startswith("sqlite"):
        refuse("DATABASE_URL", "names SQLite; production runs on PostgreSQL")
    if not config.get("DRAMATIQ_BROKER_URL"):
        refuse(
            "DRAMATIQ_BROKER_URL",
            "is not set, so jobs run inside the web process and die with it; set a Redis or "
            "RabbitMQ URL and run `dramatiq worker`",
        )
    if str(config.get("RATELIMIT_STORAGE_URI") or "memory://").startswith("memory://"):
        refuse(
            "RATELIMIT_STORAGE_URI",
            "keeps rate limits in memory, so each web process counts alone; set a redis:// URL",
        )
    if not config.get("SMTP_URL"):
        refuse(
            "SMTP_URL", "is not set, so mail is written to a folder and never sent; set smtp(s)://"
        )
    base = str(config.get("PUBLIC_BASE_URL") or "")
    if not base:
        problems.append(
            "PUBLIC_BASE_URL: is not set; the links in emails need the service's public address "
            "(https://...)."
        )
    elif not base.startswith("https://"):
        refuse("PUBLIC_BASE_URL", f"must start with https:// (it is {base!r})")
    for name in ("SECRET_KEY", "SUPPRESSION_KEY"):
        key = config.get(name)
        if not key:
            problems.append(
                f"{name} is not set: set it (or {name}_FILE) to at least {MIN_KEY_BYTES} random "
                "bytes, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
            )
        elif len(str(key).encode()) < MIN_KEY_BYTES:
            problems.append(
                f"{name}: is {len(str(key).encode())} bytes; production needs at least "
                f"{MIN_KEY_BYTES} random bytes."
            )
    return problems


def is_development(config: Mapping[str, Any]) -> bool:
    return config.get("CONSENT_ENV") in DEVELOPMENT_ENVS


# The README's table -------------------------------------------------------------------

TABLE_START = (
    "<!-- settings table: generated by `flask settings table`; edit kernel/settings.py -->"
)
TABLE_END = "<!-- end of settings table -->"


def _shown(setting: Setting) -> str:
    if setting.shown_default is not None:
        return setting.shown_default
    default = setting.default
    if default is None or default == "" or default == []:
        return "none"
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table() -> str:
    """The README's configuration table, one row per setting, in declaration order."""
    rows = [
        TABLE_START,
        "| variable | type | default | production | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for setting in SETTINGS:
        name = f"`{setting.name}`"
        if setting.secret:
            name += f" (or `{setting.name}_FILE`)"
        production = setting.production or ""
        if setting.opt_out:
            production += f" (opt out: `{setting.opt_out}`)"
        rows.append(
            "| "
            + " | ".join(
                _cell(part)
                for part in (name, setting.type_name, _shown(setting), production, setting.meaning)
            )
            + " |"
        )
    rows.append(TABLE_END)
    return "\n".join(rows) + "\n"


def readme_table(readme: str) -> str:
    """The generated table as it stands in ``readme`` (markers included)."""
    start = readme.index(TABLE_START)
    end = readme.index(TABLE_END, start) + len(TABLE_END)
    return readme[start:end] + "\n"


def replace_readme_table(readme: str) -> str:
    start = readme.index(TABLE_START)
    end = readme.index(TABLE_END, start) + len(TABLE_END)
    return readme[:start] + markdown_table().rstrip("\n") + readme[end:]


def problems(environ: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """What would stop the service starting with ``environ``, and the deprecated
    names it uses: ``flask settings check`` without building the app."""
    loaded = load(environ)
    config = dict(loaded.values)
    config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"] or "sqlite:///instance/consent.db"
    return startup_problems(loaded.problems, config), loaded.deprecations


def startup_problems(read: list[str], config: Mapping[str, Any]) -> list[str]:
    """The problems reading the variables found, then in production the unsafe
    defaults, leaving out a variable already named (an unreadable file is
    its problem; "not set" would only repeat it)."""
    named = {_variable(problem) for problem in read}
    unsafe = [] if is_development(config) else production_problems(config)
    return read + [problem for problem in unsafe if _variable(problem) not in named]


def _variable(problem: str) -> str:
    match = re.match(r"[A-Z][A-Z0-9_]*", problem)
    return match[0].removesuffix("_FILE") if match else ""
