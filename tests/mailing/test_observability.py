"""The jobs a request queues carry its request id; the worker logs one line per
job; the outbox shows as metrics (docs/operations.md: Logs, Metrics)."""

from __future__ import annotations

import json
import logging

from kernel.logs import JsonFormatter
from tests.mailing.helpers import HOSTED, SITE_ORIGIN
from tests.test_observability import scrape, value


def _signup(client, address: str, request_id: str) -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/subscribe",
        data={**HOSTED, "email": address, "topics": "newsletter"},
        headers={"Origin": SITE_ORIGIN, "X-Request-ID": request_id},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id


def test_the_job_a_request_queued_logs_the_request_id(client, smtp, mail_worker, caplog) -> None:
    caplog.set_level(logging.INFO, logger="consent.jobs")
    _signup(client, "trace@example.se", "signup-trace-1")
    mail_worker.drain()
    assert len(smtp.to("trace@example.se")) == 1
    jobs = [r for r in caplog.records if getattr(r, "event", None) == "job"]
    [delivery] = [r for r in jobs if r.actor == "deliver_emails"]
    line = json.loads(JsonFormatter().format(delivery))
    assert line["request_id"] == "signup-trace-1"
    assert line["outcome"] == "done" and line["duration_ms"] >= 0
    assert line["message_id"] and line["queue"] == "mail"
    assert "trace@example.se" not in json.dumps(line)


def test_a_job_queued_outside_any_request_has_no_request_id(app, smtp, mail_worker, caplog):  # type: ignore[no-untyped-def]
    from mailing.tasks import sweep_outbox

    caplog.set_level(logging.INFO, logger="consent.jobs")
    sweep_outbox.send()
    mail_worker.drain()
    [line] = [r for r in caplog.records if getattr(r, "actor", None) == "sweep_outbox"]
    assert line.request_id is None


def test_the_outbox_backlog_and_its_deliveries_are_metrics(client, smtp, mail_worker) -> None:
    before = scrape(client)
    mail_worker.worker.pause()
    _signup(client, "backlog@example.se", "backlog-1")
    waiting = scrape(client)
    assert waiting[("consent_outbox_waiting_messages", ())] == 1
    assert waiting[("consent_outbox_oldest_waiting_age_seconds", ())] >= 0
    assert (
        value(waiting, "consent_outbox_handed_over_total")
        - value(before, "consent_outbox_handed_over_total")
        == 1
    )
    mail_worker.worker.resume()
    mail_worker.drain()
    after = scrape(client)
    assert after[("consent_outbox_waiting_messages", ())] == 0
    assert after[("consent_outbox_oldest_waiting_age_seconds", ())] == 0
    name = "consent_outbox_deliveries_total"
    assert value(after, name, outcome="sent") - value(before, name, outcome="sent") == 1
    jobs = "consent_jobs_total"
    labels = {"actor": "deliver_emails", "outcome": "done"}
    assert value(after, jobs, **labels) - value(before, jobs, **labels) == 1


def test_one_scrape_reads_the_scheduling_health_once(client, monkeypatch) -> None:
    """Four gauges follow one health reading: a scrape runs its queries once, not per gauge."""
    from mailing import health

    readings = []
    real = health.scheduling_health

    def counted(now):  # type: ignore[no-untyped-def]
        readings.append(now)
        return real(now)

    monkeypatch.setattr(health, "scheduling_health", counted)
    first = scrape(client)
    assert len(readings) == 1
    for gauge in (
        "consent_health_degraded",
        "consent_retention_late",
        "consent_outbox_stuck",
        "consent_outbox_oldest_waiting_age_seconds",
    ):
        assert (gauge, ()) in first
    scrape(client)
    assert len(readings) == 2


HEALTH_GAUGES = (
    "consent_health_degraded",
    "consent_retention_late",
    "consent_outbox_stuck",
    "consent_outbox_oldest_waiting_age_seconds",
)


def test_a_failing_health_reading_is_tried_once_per_scrape(client, monkeypatch) -> None:
    """A health read that fails (a database timing out) is not tried again by
    each gauge that follows it: each of them reports the one failure."""
    from mailing import health

    tries = []

    def failing(now):  # type: ignore[no-untyped-def]
        tries.append(now)
        raise TimeoutError("database too slow")

    monkeypatch.setattr(health, "scheduling_health", failing)
    samples = scrape(client)
    assert len(tries) == 1
    for gauge in HEALTH_GAUGES:
        assert (gauge, ()) not in samples
        assert value(samples, "consent_metrics_reading_failed", reading=gauge) == 1
    scrape(client)
    assert len(tries) == 2
