"""Prometheus metrics: the counters every package increments, and ``/metrics``.

The counters live here, below the domain packages, so that crm, consent and
mailing count what they do without knowing about each other or about the
exposition. Values that are a state rather than an event (the outbox
backlog, the age of the last retention run) are read from the database at
scrape time by the package that owns the table (``read_at_scrape``), so
every web process answers the same and nothing drifts after a restart.

Under gunicorn (several worker processes) set ``PROMETHEUS_MULTIPROC_DIR`` to
an empty folder writable by the service, before the processes start:
prometheus_client then keeps each process's values in a file there and a
scrape of any process sums them (docs/operations.md, Metrics). A dramatiq
worker on the same host that shares the folder shows up in the same sums.
"""

from __future__ import annotations

import hmac
import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from kernel import settings

log = logging.getLogger(__name__)

DEVELOPMENT_ENVS = ("development", "testing")

# Requests answer in milliseconds; imports and the batch check take seconds.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A delivery batch holds for up to two seconds; a retention run or an import for minutes.
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

REQUESTS = Counter(
    "consent_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "consent_http_request_duration_seconds",
    "Time from the request's arrival in Flask to its answer, by method and route template.",
    ["method", "route"],
    buckets=_REQUEST_BUCKETS,
)
JOBS = Counter(
    "consent_jobs",
    "Dramatiq jobs processed, by actor and outcome (done, failed, skipped).",
    ["actor", "outcome"],
)
JOB_SECONDS = Histogram(
    "consent_job_duration_seconds",
    "Time a job ran in the worker, by actor.",
    ["actor"],
    buckets=_JOB_BUCKETS,
)
DECISIONS = Counter(
    "consent_decisions",
    "Permission decisions answered (API, staff page, and the check before each "
    "marketing send), by reason code.",
    ["reason"],
)
OUTBOX_HANDED_OVER = Counter(
    "consent_outbox_handed_over",
    "Outbox rows handed to the broker for delivery (again after a sweep).",
)
OUTBOX_DELIVERIES = Counter(
    "consent_outbox_deliveries",
    "Outcomes of delivery attempts: sent, blocked (the policy said no), failed "
    "(permanently), requeued (a temporary failure or the batch's time was up).",
    ["outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "consent_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, retry (will be tried "
    "again), failed (given up), cancelled (the endpoint was deactivated).",
    ["outcome"],
)
BOUNCES = Counter(
    "consent_bounces",
    "Returned mail and complaints received, by type and what became of them "
    "(recorded, duplicate, ignored).",
    ["type", "outcome"],
)
IMPORTS = Counter(
    "consent_imports",
    "Contact imports finished, by status (done, failed).",
    ["status"],
)
IMPORT_ROWS = Counter(
    "consent_import_rows",
    "Rows of finished imports by outcome (created, updated, unchanged, "
    "skipped_suppressed, rejected).",
    ["outcome"],
)
RATE_LIMIT_HITS = Counter(
    "consent_rate_limit_hits",
    "Rate limits breached, by endpoint (a request that breaks two limits counts twice).",
    ["endpoint"],
)

CONNECTOR_ITEMS = Counter(
    "consent_connector_items",
    "CRM connector items by connector and direction: in (contacts and activities "
    "written here), out (decisions written to the CRM), deleted (deletions done in the CRM), "
    "anonymised (copies anonymised in the CRM instead).",
    ["connector", "direction"],
)
CONNECTOR_SKIPPED = Counter(
    "consent_connector_skipped",
    "CRM records a connector skipped with a reason (its staff page lists them).",
    ["connector"],
)
CONNECTOR_ERRORS = Counter(
    "consent_connector_errors",
    "CRM connector runs that ended in an error, by connector and outcome "
    "(unavailable: 429/5xx/no answer after the retries; revoked: the credentials were refused).",
    ["connector", "outcome"],
)
IMPORT_ROW_OUTCOMES = ("created", "updated", "unchanged", "skipped_suppressed", "rejected")


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    REQUEST_SECONDS.labels(method, route).observe(seconds)


def observe_job(actor: str, outcome: str, seconds: float) -> None:
    JOBS.labels(actor, outcome).inc()
    JOB_SECONDS.labels(actor).observe(seconds)


def count_decisions(reasons: Iterable[str]) -> None:
    """One per decision; a batch check of 10,000 addresses costs one call per reason."""
    for reason, n in Tally(reasons).items():
        DECISIONS.labels(reason).inc(n)


def count_import(status: str, rows: dict[str, int]) -> None:
    IMPORTS.labels(status).inc()
    for outcome in IMPORT_ROW_OUTCOMES:
        if rows.get(outcome):
            IMPORT_ROWS.labels(outcome).inc(rows[outcome])


def count_rate_limit_hit(limit: object) -> None:
    """Flask-Limiter's ``on_breach`` callback (``RATELIMIT_ON_BREACH_CALLBACK``); answers
    nothing, so the limiter's own 429 stands."""
    RATE_LIMIT_HITS.labels(request.endpoint or "unmatched").inc()


# Readings taken at scrape time ------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A gauge whose value a package reads from its tables when scraped; ``read``
    runs inside the scrape's application context, None leaves it out."""

    name: str
    documentation: str
    read: Callable[[], float | None]


def read_at_scrape(
    app: Flask, name: str, documentation: str, read: Callable[[], float | None]
) -> None:
    """Have ``/metrics`` report ``name`` with the value ``read()`` returns then."""
    app.extensions.setdefault("metrics_readings", []).append(Reading(name, documentation, read))


T = TypeVar("T")
# The values read once during the scrape in progress (``once_per_scrape``).
_this_scrape: ContextVar[dict[str, Any] | None] = ContextVar("this_scrape", default=None)


def once_per_scrape(key: str, read: Callable[[], T]) -> T:
    """``read()``, taken once per ``/metrics`` scrape however many gauges ask
    for it (several gauges follow one health reading); outside a scrape, every time.

    A failed reading is kept too and raised again to each gauge that asks: a
    database that times out is then waited for once per scrape, not per gauge."""
    taken = _this_scrape.get()
    if taken is None:
        return read()
    if key not in taken:
        try:
            taken[key] = read()
        except Exception as exc:
            taken[key] = _Failed(exc)
    value = taken[key]
    if isinstance(value, _Failed):
        raise value.error
    return value  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Failed:
    """A reading that raised, kept for the rest of its scrape."""

    error: Exception


class _Readings(Collector):
    def __init__(self, readings: list[Reading]) -> None:
        self.readings = readings

    def collect(self) -> Iterator[Metric]:
        scrape = _this_scrape.set({})
        try:
            yield from self._read_all()
        finally:
            _this_scrape.reset(scrape)

    def _read_all(self) -> Iterator[Metric]:
        failed = GaugeMetricFamily(
            "consent_metrics_reading_failed",
            "1 when a reading taken at scrape time failed (its gauge is missing then).",
            labels=["reading"],
        )
        for reading in self.readings:
            try:
                value = reading.read()
            except Exception as exc:
                log.warning("Metric %s could not be read: %s", reading.name, type(exc).__name__)
                failed.add_metric([reading.name], 1)
                continue
            failed.add_metric([reading.name], 0)
            if value is not None:
                yield GaugeMetricFamily(reading.name, reading.documentation, value=value)
        yield failed


class _ThisProcess(Collector):
    """The default registry's metrics, for a registry built per scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def is_multiprocess() -> bool:
    # prometheus_client reads the same variable itself.
    return bool(settings.value("PROMETHEUS_MULTIPROC_DIR"))


def exposition(readings: list[Reading]) -> bytes:
    """The text Prometheus scrapes: every process's counters, then the readings."""
    registry = CollectorRegistry(auto_describe=False)
    if is_multiprocess():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(_Readings(readings))
    return generate_latest(registry)


# The route -----------------------------------------------------------------------------


def _refusal() -> Response | None:
    """Why this scrape may not read the metrics, or None.

    With ``METRICS_TOKEN`` set, only ``Authorization: Bearer <token>`` reads them
    (compared in constant time). Unset, development and testing leave them
    open and production refuses: counters per route tell an outsider what the
    service is doing.
    """
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        if current_app.config["CONSENT_ENV"] in DEVELOPMENT_ENVS:
            return None
        return Response(
            "Metrics are off: set METRICS_TOKEN to read them.\n", 403, mimetype="text/plain"
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), str(token).encode()
    ):
        return None
    return Response(
        "Metrics need Authorization: Bearer <METRICS_TOKEN>.\n",
        401,
        mimetype="text/plain",
        headers={"WWW-Authenticate": "Bearer"},
    )


def metrics_page() -> Any:
    refusal = _refusal()
    if refusal is not None:
        return refusal
    readings = current_app.extensions.get("metrics_readings", [])
    return Response(exposition(readings), content_type=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """``/metrics``, and the rate-limit count; before the limiter is attached,
    which reads its breach callback once."""
    app.config.setdefault("RATELIMIT_ON_BREACH_CALLBACK", count_rate_limit_hit)
    app.add_url_rule("/metrics", "metrics", metrics_page, methods=["GET"])
