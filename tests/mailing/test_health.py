"""mailing.health: the late retention run and the stuck outbox, and /healthz saying so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from crm.models import RetentionRun
from extensions import db
from kernel.scheduling import take_turn
from kernel.timestamps import utcnow
from mailing.health import scheduling_health
from mailing.models import OutboxMessage
from tests.crm.retention_helpers import add_contact


def _run_ended(ago: timedelta, status: str = "completed") -> None:
    ended = utcnow() - ago
    db.session.add(
        RetentionRun(
            as_of=ended.date(), started_at=ended, ended_at=ended, started_by="system:daily-retention",
            status=status, counts={},
        )
    )  # fmt: skip
    db.session.commit()


def _email(status: str, created_ago: timedelta, sent_ago: timedelta | None = None) -> None:
    contact = add_contact(f"{status}-{created_ago.total_seconds():.0f}@kund.se")
    db.session.flush()
    now = utcnow()
    db.session.add(
        OutboxMessage(
            idempotency_key=f"health:{contact.id}", kind="transactional", contact_id=contact.id,
            template="confirm", language="sv", message_id=f"<{contact.id}@test>", status=status,
            created_at=now - created_ago, sent_at=None if sent_ago is None else now - sent_ago,
        )
    )  # fmt: skip
    db.session.commit()


def test_no_run_and_no_scheduler_ever_is_late(app_ctx) -> None:
    health = scheduling_health(utcnow())
    assert health.is_retention_late and health.is_degraded
    assert health.summary() == {"retention": "never_run", "outbox": "ok"}


def test_a_scheduler_that_just_started_is_given_its_day(app_ctx) -> None:
    take_turn("retention-daily", utcnow() - timedelta(hours=1))
    assert not scheduling_health(utcnow()).is_retention_late


def test_a_run_within_a_day_and_the_margin_is_on_time(app_ctx) -> None:
    _run_ended(timedelta(hours=26))  # default margin: 3 hours
    health = scheduling_health(utcnow())
    assert not health.is_degraded
    assert health.retention_age is not None and health.retention_age > timedelta(hours=25)


def test_a_run_older_than_a_day_and_the_margin_is_late(app_ctx) -> None:
    _run_ended(timedelta(hours=28))
    _run_ended(timedelta(hours=1), status="failed")  # a failed run does not count
    health = scheduling_health(utcnow())
    assert health.is_retention_late
    assert health.summary()["retention"] == "late"


def test_an_email_waiting_with_nothing_sent_meanwhile_is_a_stuck_outbox(app_ctx) -> None:
    _run_ended(timedelta(hours=1))
    _email("queued", created_ago=timedelta(minutes=20))
    health = scheduling_health(utcnow())
    assert health.is_outbox_stuck and health.is_degraded
    assert health.outbox_oldest_age is not None and health.outbox_oldest_age > timedelta(minutes=19)


def test_a_long_campaign_still_sending_is_not_stuck(app_ctx) -> None:
    _run_ended(timedelta(hours=1))
    _email("queued", created_ago=timedelta(minutes=20))
    _email("sent", created_ago=timedelta(minutes=20), sent_ago=timedelta(minutes=1))
    assert not scheduling_health(utcnow()).is_outbox_stuck


def test_a_fresh_email_is_not_stuck(app_ctx) -> None:
    _run_ended(timedelta(hours=1))
    _email("sending", created_ago=timedelta(minutes=5))
    assert not scheduling_health(utcnow()).is_degraded


def test_healthz_answers_200_degraded_for_a_stuck_outbox(app: Any, client: Any) -> None:
    with app.app_context():
        _run_ended(timedelta(hours=1))
        _email("queued", created_ago=timedelta(hours=2))
        db.session.remove()
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json == {
        "status": "degraded", "database": "ok", "broker": "ok", "retention": "ok",
        "outbox": "stuck",
    }  # fmt: skip


def test_healthz_answers_ok_when_the_work_is_done(app: Any, client: Any) -> None:
    with app.app_context():
        _run_ended(timedelta(hours=1))
        _email("sent", created_ago=timedelta(hours=2), sent_ago=timedelta(hours=2))
        db.session.remove()
    answer = client.get("/healthz")
    assert (answer.status_code, answer.json["status"]) == (200, "ok")


def _gauges(client: Any) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
        if sample.name
        in ("consent_health_degraded", "consent_retention_late", "consent_outbox_stuck")
    }


def test_metrics_show_what_healthz_says(app: Any, client: Any) -> None:
    with app.app_context():
        _run_ended(timedelta(hours=1))
        db.session.remove()
    assert _gauges(client) == {
        "consent_health_degraded": 0.0, "consent_retention_late": 0.0, "consent_outbox_stuck": 0.0,
    }  # fmt: skip
    with app.app_context():
        _email("queued", created_ago=timedelta(hours=2))
        db.session.remove()
    assert _gauges(client) == {
        "consent_health_degraded": 1.0, "consent_retention_late": 0.0, "consent_outbox_stuck": 1.0,
    }  # fmt: skip
