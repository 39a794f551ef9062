"""Structured logs: one JSON object a line, one line per request and per job.

Every line carries the request id of the request or job it was written for
(``kernel.request_ids``), so a request's line and the lines of the jobs it
queued are found together. The request line names the route template
(``/confirm/<token>``), never the path, and no query string, address or client
IP: the logs hold no personal data (docs/operations.md, Logs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from contextvars import Token
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from flask import Flask, Response, g, request

from kernel import metrics
from kernel.request_ids import (
    HEADER,
    accepted_request_id,
    bind_request_id,
    current_request_id,
    new_request_id,
    unbind_request_id,
)

request_log = logging.getLogger("consent.requests")
job_log = logging.getLogger("consent.jobs")

# What every LogRecord has; anything else on a record came through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Probes and scrapes arrive every few seconds: their lines only at DEBUG.
_QUIET_ROUTES = ("/healthz", "/metrics")


# PostgreSQL's detail of a refused write repeats the row's values ("Key
# (email)=(sara@kund.se) already exists.", "Failing row contains (...)").
# SQLAlchemy's exception text carries it, and the engine's hide_parameters
# does not reach it, so a traceback logged with such an error held the address.
# Withheld from "DETAIL:" to what follows the detail: the statement SQLAlchemy
# appends, its pointer to the docs, a blank line (the traceback going on) or
# the end. Not anchored to a line's start, and line breaks escaped or not: a
# value may hold line breaks, and an error logged with %r has them escaped.
_ROW_DETAIL = re.compile(
    r"(DETAIL:\s+).*?(?=(?:\n|\\n)\[SQL: |(?:\n|\\n)\(Background on this error|\n\n|\Z)",
    re.DOTALL,
)
WITHHELD_DETAIL = "(withheld from the log: the database repeats the row's values there)"


def withhold_row_values(text: str) -> str:
    """``text`` without the database's error details, which repeat row values."""
    if "DETAIL:" not in text:
        return text
    return _ROW_DETAIL.sub(lambda m: m.group(1) + WITHHELD_DETAIL, text)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines, the database's row details withheld."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return withhold_row_values(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request id,
    the ``extra=`` fields, and the traceback if any (the database's row
    details withheld from both)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": withhold_row_values(record.getMessage()),
        }
        request_id = current_request_id()
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = withhold_row_values(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = withhold_row_values(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(app: Flask) -> None:
    """Format the root logger's handlers (a stderr one if there is none) as
    ``LOG_FORMAT`` says, at ``LOG_LEVEL``. Under dramatiq the root handler is
    the one writing to the worker's log pipe, so the worker's lines are JSON
    too. Under tests pytest owns the handlers and this changes nothing."""
    if app.config.get("TESTING"):
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    formatter = JsonFormatter() if app.config["LOG_FORMAT"] == "json" else TextFormatter()
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(app.config["LOG_LEVEL"])


# Requests -----------------------------------------------------------------------------


def _start_request() -> None:
    request_id = accepted_request_id(request.headers.get(HEADER)) or new_request_id()
    g.request_id = request_id
    g.request_started = time.perf_counter()
    g.request_id_token = bind_request_id(request_id)


def _log_request(response: Response) -> Response:
    started = g.get("request_started")
    if started is None:  # a hook before ours answered; nothing to time
        return response
    seconds = time.perf_counter() - started
    response.headers[HEADER] = g.request_id
    # The template keeps tokens and ids out of the line and the label set small;
    # a path that matched no route is one label, not one per scanner's guess.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.observe_request(request.method, route, response.status_code, seconds)
    request_log.log(
        logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
        "%s %s %s",
        request.method,
        route,
        response.status_code,
        extra={
            "event": "request",
            "method": request.method,
            "route": route,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2),
            "request_id": g.request_id,
        },
    )
    return response


def _end_request(exc: BaseException | None) -> None:
    token: Token[str | None] | None = g.pop("request_id_token", None)
    if token is not None:
        # Set in another context (a copied one), it dies with that context.
        with contextlib.suppress(ValueError):
            unbind_request_id(token)


def init_app(app: Flask) -> None:
    """Put first of every before-request hook, even before ``kernel.inputs``'s
    check, so that each request is timed, logged and counted even when a later
    hook refuses it. It reads one header only, through a strict pattern."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)
    app.after_request(_log_request)
    app.teardown_request(_end_request)


# Jobs -----------------------------------------------------------------------------------


class JobLog(dramatiq.Middleware):
    """Carries the request id into the jobs a request (or a job) queues, and writes
    one line per job in the worker: actor, message id, outcome, duration."""

    def __init__(self) -> None:
        self._running: dict[int, tuple[float, Token[str | None]]] = {}

    def before_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        request_id = current_request_id()
        if request_id is not None and "request_id" not in message.options:
            message.options["request_id"] = request_id

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        request_id = accepted_request_id(message.options.get("request_id"))
        token = bind_request_id(request_id)
        self._running[threading.get_ident()] = (time.perf_counter(), token)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        self._end(message, "done" if exception is None else "failed", exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._end(message, "skipped", None)

    def _end(self, message: MessageProxy, outcome: str, exception: BaseException | None) -> None:
        running = self._running.pop(threading.get_ident(), None)
        if running is None:
            return
        started, token = running
        seconds = time.perf_counter() - started
        metrics.observe_job(message.actor_name, outcome, seconds)
        fields: dict[str, Any] = {
            "event": "job",
            "actor": message.actor_name,
            "queue": message.queue_name,
            "message_id": message.message_id,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000, 2),
            "retries": message.options.get("retries", 0),
            "request_id": current_request_id(),
        }
        if exception is not None:
            # The type only: an exception's text may quote an address.
            fields["error"] = type(exception).__name__
        job_log.log(
            logging.WARNING if exception is not None else logging.INFO,
            "job %s %s",
            message.actor_name,
            outcome,
            extra=fields,
        )
        with contextlib.suppress(ValueError):
            unbind_request_id(token)


def install_job_log(broker: dramatiq.Broker) -> None:
    """Add ``JobLog`` to ``broker`` once (``create_app`` runs many times in tests)."""
    if not any(isinstance(m, JobLog) for m in broker.middleware):
        broker.add_middleware(JobLog())
