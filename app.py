"""The Flask application factory: configuration, extensions, packages, errors."""

from __future__ import annotations

import logging
import os
import secrets
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

import connectors
import consent
import crm
import mailing
import reports
import service_files
from connectors.config import SYNC_JOB as CONNECTORS_JOB
from consent.models import Basis
from consent.projection import RESERVED_SOURCES
from consent.topics import MarketingPolicy
from consent.webhooks import check_retry_window
from crm.retention import DAILY_RETENTION_JOB
from extensions import api, broker, csrf, db, limiter, migrate, queue_sqlite_writers
from kernel import (
    api_docs,
    api_fields,
    i18n,
    idempotency,
    inputs,
    logs,
    metrics,
    scheduling,
    settings,
)
from kernel.cli import settings_cli
from kernel.errors import (
    N_,
    BadRequest,
    Conflict,
    DomainError,
    Gone,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    NotPermitted,
    Unavailable,
)
from kernel.pages import refusal_text
from kernel.scheduling import Periodic
from kernel.timestamps import utcnow
from mailing.art14_notices import ART14_NOTICES_JOB
from mailing.bounce_mailbox import POLL_JOB
from mailing.health import RETENTION_JOB, scheduling_health
from mailing.outbox import SWEEP_JOB
from reports.snapshots import REFRESH_JOB as DASHBOARD_REFRESH_JOB

log = logging.getLogger(__name__)

DEFAULT_POLICY_FILE = Path(__file__).parent / "consent" / "default_policy.toml"
DEVELOPMENT_BASE_URL = "http://127.0.0.1:5000"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        # From service_files, so that an installed wheel finds them as a checkout does.
        template_folder=service_files.templates(),
        static_folder=service_files.static(),
        instance_path=_instance_path(),
        instance_relative_config=True,
    )
    register_config(app, test_config)
    register_proxies(app)
    inputs.init_app(app)
    register_observability(app)
    register_extensions(app)
    register_packages(app)
    register_scheduling(app)
    idempotency.init_app(app)
    register_error_handlers(app)
    register_health(app)
    return app


# Configuration ------------------------------------------------------------------


def _instance_path() -> str | None:
    """``INSTANCE_PATH``: the writable folder for this installation's own files.

    Unset, Flask's choice: ``instance/`` in a checkout, ``<venv>/var/app-instance``
    for an installed wheel. A container or unit points it at its data volume."""
    configured = settings.value("INSTANCE_PATH")
    return os.path.abspath(configured) if configured else None


def register_config(app: Flask, test_config: dict[str, Any] | None) -> None:
    """Every variable from kernel/settings/variables.py, then a test's overrides; every
    problem (a malformed value, and in production each unsafe default) stops
    the start at once, all of them listed (docs/configuration.md)."""
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    loaded = settings.load()
    settings.warn_deprecations(loaded.deprecations)
    app.config.update(loaded.values)
    fallback = app.config["RATELIMIT_IN_MEMORY_FALLBACK"]
    app.config.update(
        SQLALCHEMY_DATABASE_URI=app.config["DATABASE_URL"]
        or f"sqlite:///{Path(app.instance_path) / 'consent.db'}",
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        # A rate-limit store (Redis) that is down: count in this process meanwhile,
        # rather than answer every limited form with an error. A request caught
        # mid-check by the failure (before the switch) goes through uncounted
        # instead of failing (the outbox's own ten-minute rule still holds).
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=fallback,
        RATELIMIT_SWALLOW_ERRORS=fallback,
        # 1 MiB for every request; the two import routes (API and staff page) raise
        # their own limit, once the caller is known to be allowed to import.
        MAX_CONTENT_LENGTH=1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        API_TITLE="Marketing consent service",
        API_VERSION="v1",
        # 3.1: a nullable object is ``anyOf: [{$ref}, {type: null}]``, which generated
        # clients turn into their model (3.0's form left them an untyped object).
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        },
    )
    # Any other Flask setting: CONSENT_<NAME>, e.g. CONSENT_PERMANENT_SESSION_LIFETIME=3600.
    app.config.update(settings.legacy_flask_settings())
    if test_config:
        app.config.update(test_config)
    # A statement's values are personal data (the addresses of a batch check): an
    # error's text names the statement, never them, in the log or anywhere else.
    # Options given some other way keep it unless they turn it off by name.
    app.config["SQLALCHEMY_ENGINE_OPTIONS"].setdefault("hide_parameters", True)
    app.config["POLICY_FILE"] = app.config["POLICY_FILE"] or str(DEFAULT_POLICY_FILE)
    problems = settings.startup_problems(loaded.problems, app.config)
    try:
        # Before any extension: a configuration that would lose webhook deliveries never runs.
        check_retry_window(app.config)
    except RuntimeError as exc:
        problems.append(str(exc))
    _load_policy(app, problems)
    if problems:
        raise settings.SettingsError(problems, str(app.config.get("CONSENT_ENV", "")))
    if not app.config["PUBLIC_BASE_URL"]:
        app.config["PUBLIC_BASE_URL"] = DEVELOPMENT_BASE_URL
    _require_secrets(app)


def _load_policy(app: Flask, problems: list[str]) -> None:
    """The policy file, parsed at start so that a malformed one stops the
    service (one more problem of the list), not a request."""
    path = app.config["POLICY_FILE"]
    try:
        with open(path, "rb") as handle:
            app.config["POLICY"] = tomllib.load(handle)
        app.extensions["marketing_policy"] = MarketingPolicy.from_mapping(app.config["POLICY"])
    except OSError as exc:
        problems.append(f"POLICY_FILE: cannot read {path!r} ({exc.strerror or exc}).")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"POLICY_FILE: {path!r} is not valid TOML ({exc}).")
    except RuntimeError as exc:
        problems.append(f"POLICY_FILE: {exc}")


def _require_secrets(app: Flask) -> None:
    """Secrets come from the environment; only development may generate its own,
    kept under instance/ so that links survive a restart."""
    for name in ("SECRET_KEY", "SUPPRESSION_KEY"):
        if app.config.get(name):
            continue
        if not settings.is_development(app.config):
            raise settings.SettingsError([f"{name} is not set: set it (or {name}_FILE)."])
        path = Path(app.instance_path) / f"dev-{name.lower().replace('_', '-')}"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        app.config[name] = path.read_text().strip()


def register_observability(app: Flask) -> None:
    """Logs, request ids and metrics, first: every request after this is timed,
    logged and counted, and every job sent carries the request id."""
    if app.config["LOG_FORMAT"] is None:
        # A terminal in development, a log collector anywhere else.
        development = app.config["CONSENT_ENV"] in settings.DEVELOPMENT_ENVS
        app.config["LOG_FORMAT"] = "text" if development else "json"
    logs.configure_logging(app)
    logs.init_app(app)
    logs.install_job_log(broker)
    metrics.init_app(app)


def register_proxies(app: Flask) -> None:
    """Behind reverse proxies, take the client's address and scheme from the
    ``X-Forwarded-For`` and ``X-Forwarded-Proto`` entries that the last
    ``TRUSTED_PROXY_HOPS`` of them added.

    Off by default: with no proxy in front, those headers come from the client,
    who could then choose the address that the rate limits count and that a
    consent's evidence records. With too few hops trusted, every client shares
    the proxy's address (and its rate limit).
    """
    raw = app.config["TRUSTED_PROXY_HOPS"]
    # A whole number, from the environment or from CONSENT_TRUSTED_PROXY_HOPS
    # (read as JSON); not a boolean, not a fraction.
    if type(raw) is int:
        hops = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        hops = int(raw)
    else:
        hops = -1
    if hops < 0:
        raise RuntimeError(
            f"TRUSTED_PROXY_HOPS must be a whole number of proxies (0 or more), not {raw!r}."
        )
    app.config["TRUSTED_PROXY_HOPS"] = hops
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


# Extensions and packages -------------------------------------------------------------


class RowIdConverter(IntegerConverter):
    """``<int:...>`` in every route: ids are 32-bit integers on PostgreSQL, so a
    larger number cannot name a row and is a 404, never a database error."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def _row_id_schema(converter: RowIdConverter) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}


def register_extensions(app: Flask) -> None:
    # Before any route exists, so that every <int:...> is bounded.
    app.url_map.converters["int"] = RowIdConverter
    db.init_app(app)
    with app.app_context():
        queue_sqlite_writers(db.engine)
    migrate.init_app(app, db, directory=str(service_files.migrations()))
    csrf.init_app(app)
    limiter.init_app(app)
    i18n.init_app(app)
    # Before any blueprint registers its routes, so that every write's
    # operation documents the Idempotency-Key header.
    api.init_app(app, spec_kwargs={"extra_plugins": [idempotency.IdempotencyKeyPlugin(app)]})
    api.register_converter(RowIdConverter, _row_id_schema)
    api_fields.install(api, _vocabularies(app.extensions["marketing_policy"]))
    if app.config["CONSENT_ENV"] == "testing":
        return
    if app.config["DRAMATIQ_BROKER_URL"] is None and app.config["INPROCESS_WORKER"]:
        _start_inprocess_worker(app)


def _start_inprocess_worker(app: Flask) -> None:
    """With no broker configured, run the actors in this process so that
    ``flask run`` alone is a working service."""
    from dramatiq import Worker

    from extensions import AppContextMiddleware

    if not any(isinstance(m, AppContextMiddleware) for m in broker.middleware):
        broker.add_middleware(AppContextMiddleware(app))
    if "inprocess_worker" not in app.extensions:
        worker = Worker(broker, worker_threads=2)
        worker.start()
        app.extensions["inprocess_worker"] = worker


def _vocabularies(policy: MarketingPolicy) -> dict[str, list[str]]:
    """The names the API description lists as enums, from the policy file loaded
    at start: a site with other topics describes its own."""
    return {
        "topic": sorted(policy.topics),
        "consent_topic": sorted(k for k, t in policy.topics.items() if Basis.CONSENT in t.bases),
        "marketing_topic": sorted(policy.marketing_topics),
        "channel": list(policy.channels),
        "reserved_source": sorted(RESERVED_SOURCES),
    }


def register_packages(app: Flask) -> None:
    app.cli.add_command(settings_cli)
    crm.init_app(app)
    consent.init_app(app)
    mailing.init_app(app)
    reports.init_app(app)
    connectors.init_app(app)
    api_docs.init_app(app, api)


def register_scheduling(app: Flask) -> None:
    """The periodic jobs the scheduler hands to the workers (``flask scheduler run``)."""
    config = app.config
    daily = scheduling.daily_at(str(config["RETENTION_DAILY_AT"]))
    bounce_every = float(config["BOUNCE_IMAP_INTERVAL_S"]) if config["BOUNCE_IMAP_URL"] else 0
    connector_every = (
        float(config["CONNECTOR_SYNC_INTERVAL_S"]) if config["CONNECTORS_ENABLED"] else 0
    )
    scheduling.init_app(
        app,
        [
            Periodic(RETENTION_JOB, DAILY_RETENTION_JOB, daily_at=daily),
            # GDPR art. 14(3)(a): the notices still owed go out well within their month.
            Periodic("art14-notices", ART14_NOTICES_JOB, daily_at=daily),
            Periodic(
                "outbox-sweep",
                SWEEP_JOB,
                every=timedelta(seconds=float(config["OUTBOX_SWEEP_INTERVAL_S"])),
            ),
            Periodic("bounce-poll", POLL_JOB, every=timedelta(seconds=bounce_every)),
            # The dashboard's slow sections (reports/snapshots.py says why they are stored).
            Periodic(
                "dashboard-refresh",
                DASHBOARD_REFRESH_JOB,
                every=timedelta(seconds=float(config["DASHBOARD_REFRESH_INTERVAL_S"])),
            ),
            # The CRM connectors (docs/connectors.md); none runs unless enabled.
            Periodic("connectors", CONNECTORS_JOB, every=timedelta(seconds=connector_every)),
        ],
    )


# Errors ------------------------------------------------------------------------------

# True of every route: some write before the failure may already be committed
# (a permission check's audit entry is, by design: R25), so it promises nothing
# about what was changed.
DATABASE_DOWN = N_("The service is briefly unavailable; please try again shortly.")
INTERNAL_ERROR = N_(
    "Something went wrong on our side and the request did not finish. Please try again in a moment."
)

_STATUS = {
    BadRequest: 400,
    Gone: 410,
    InvalidInput: 422,
    NotFound: 404,
    Conflict: 409,
    NotPermitted: 403,
    NotAuthenticated: 401,
    Unavailable: 503,
}


def _wants_json() -> bool:
    return (
        request.path.startswith(("/api/", "/webhooks/"))
        or request.is_json
        or (request.accept_mimetypes.best == "application/json")
    )


def error_response(
    status: int,
    code: str,
    message: str,
    fields: dict | None = None,
    details: dict | None = None,
    page_message: str | None = None,
) -> Any:
    """The error as JSON for a program, else as a page. ``page_message`` is what
    the page says instead of the (English) ``message``: a refusal in the reader's
    language (``kernel.pages.refusal_text``)."""
    if _wants_json():
        body: dict[str, Any] = {"error": {**(details or {}), "code": code, "message": message}}
        if fields:
            body["error"]["fields"] = fields
        response = jsonify(body)
        response.status_code = status
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    shown = message if page_message is None else page_message
    return render_template(
        "error.html", status=status, message=shown, english=shown == message, code=code
    ), status


def _http_code(exc: HTTPException) -> str:
    return {
        400: "bad_request",
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "invalid_input",
        429: "rate_limited",
    }.get(exc.code or 500, "error")


def handle_http_exception(exc: HTTPException) -> Any:
    fields = None
    message = exc.description or exc.name
    data = getattr(exc, "data", None)
    if isinstance(data, dict) and "messages" in data:
        # marshmallow validation errors, keyed by location (json, query, form).
        messages = data["messages"]
        fields = {}
        for located in messages.values():
            if isinstance(located, dict):
                fields.update(located)
        message = "The request is not valid; see fields."
        if exc.code == 400:
            exc.code = 422
    if exc.code == 413:
        message = "The request body is too large."
    response = make_response(error_response(exc.code or 500, _http_code(exc), message, fields))
    # Keep what the exception says about itself (Allow on 405, Retry-After on 429).
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)

    @app.errorhandler(DomainError)
    def handle_domain_error(exc: DomainError) -> Any:
        db.session.rollback()
        status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 400)
        return error_response(
            status, exc.code, exc.message, exc.fields, exc.details, page_message=refusal_text(exc)
        )

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Any:
        db.session.rollback()
        # The route's template, never the path: a path can carry a live token
        # (/confirm/<token>, /staff/password-reset/<token>).
        rule = request.url_rule.rule if request.url_rule else "unmatched"
        log.exception("Unhandled error on %s %s", request.method, rule)
        return error_response(
            500, "internal_error", INTERNAL_ERROR, page_message=i18n.translate(INTERNAL_ERROR)
        )

    @app.errorhandler(sa.exc.OperationalError)
    def handle_database_down(exc: Exception) -> Any:
        db.session.rollback()
        log.error("Database unavailable: %s", type(exc).__name__)
        return error_response(
            503, "unavailable", DATABASE_DOWN, page_message=i18n.translate(DATABASE_DOWN)
        )


def register_health(app: Flask) -> None:
    """``/healthz``: 503 "unavailable" when the database or the broker cannot be
    reached (this process cannot do its work: take it out of rotation); 200
    "degraded" when it can but the periodic work lags (a late retention run, a
    stuck outbox: restarting web processes would not help, an operator must
    look; docs/operations.md, Scheduling); 200 "ok" otherwise."""

    @app.get("/healthz")
    def healthz() -> Any:
        checks = {"database": "ok", "broker": "ok"}
        try:
            db.session.execute(sa.text("SELECT 1"))
        except Exception:
            db.session.rollback()
            checks["database"] = "unreachable"
        client = getattr(broker, "client", None)
        try:
            if client is not None:
                client.ping()
            elif hasattr(broker, "connection"):
                broker.connection  # noqa: B018 - opening it is the check
        except Exception:
            checks["broker"] = "unreachable"
        if any(v != "ok" for v in checks.values()):
            return jsonify(status="unavailable", **checks), 503
        try:
            health = scheduling_health(utcnow())
        except sa.exc.SQLAlchemyError:
            db.session.rollback()
            return jsonify(status="unavailable", broker="ok", database="unreachable"), 503
        status = "degraded" if health.is_degraded else "ok"
        return jsonify(status=status, **checks, **health.summary()), 200
