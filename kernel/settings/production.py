"""Why a configuration must not start: the production refusals, with the
problems reading found, in one list."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kernel.settings.declaration import DEVELOPMENT_ENVS, MIN_KEY_BYTES
from kernel.settings.reading import load
from kernel.settings.variables import BY_NAME


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
