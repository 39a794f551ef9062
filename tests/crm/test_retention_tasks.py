"""The daily retention run: a chain of delayed messages run by a real dramatiq worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa

from crm import retention
from crm.models import RetentionRun, RetentionSchedule
from crm.tasks import run_daily_retention
from extensions import AppContextMiddleware, broker, db
from kernel.timestamps import utcnow
from tests.crm.retention_helpers import add_contact, exists


class SentMessages(dramatiq.Middleware):
    """Records what was enqueued, delayed or not."""

    def __init__(self) -> None:
        self.sent: list[tuple[dramatiq.Message, int | None]] = []

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: Any) -> None:
        self.sent.append((message, delay))


@pytest.fixture
def worker(app: Any) -> Iterator[SentMessages]:
    if not any(isinstance(m, AppContextMiddleware) for m in broker.middleware):
        broker.add_middleware(AppContextMiddleware(app))
    spy = SentMessages()
    broker.add_middleware(spy)
    running = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    running.start()
    try:
        yield spy
    finally:
        running.stop()
        broker.middleware.remove(spy)
        broker.flush_all()


def wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the worker")


def links_sent_now(worker: SentMessages) -> list[dramatiq.Message]:
    return [m for m, d in worker.sent if not d and m.actor_name == "run_daily_retention"]


def completed_runs() -> list[RetentionRun]:
    db.session.rollback()
    return list(
        db.session.scalars(sa.select(RetentionRun).where(RetentionRun.status == "completed"))
    )


def test_the_daily_link_runs_retention_once_and_schedules_tomorrow(app_ctx, worker) -> None:
    add_contact("forgotten@kund.se", last_interaction="2010-05-05T10:00:00")
    db.session.commit()
    link = retention.ensure_daily_schedule()
    assert link is not None
    assert retention.ensure_daily_schedule() is None, "a live chain is not started twice"
    # Pretend the link's time has come.
    due_at = utcnow() - timedelta(minutes=1)
    db.session.execute(sa.update(RetentionSchedule).values(next_run_at=due_at))
    db.session.commit()

    run_daily_retention.send(link.chain_id, due_at.isoformat())
    wait_for(lambda: len(completed_runs()) == 1)
    assert not exists("forgotten@kund.se")
    (record,) = completed_runs()
    assert record.started_by == "system:daily-retention"
    assert record.as_of == utcnow().date()

    schedule = db.session.get(RetentionSchedule, retention.SCHEDULE_NAME, populate_existing=True)
    assert schedule.next_run_at == retention.next_daily_time(due_at)
    wait_for(lambda: any(d for _, d in worker.sent))
    delayed = [(m, d) for m, d in worker.sent if d]
    assert len(delayed) == 1
    message, delay = delayed[0]
    assert message.args == (link.chain_id, schedule.next_run_at.isoformat())
    assert timedelta(hours=0) < timedelta(milliseconds=delay) <= timedelta(days=1)

    # The same message delivered again (a redelivery) neither runs twice nor forks the chain.
    run_daily_retention.send(link.chain_id, due_at.isoformat())
    # Counted by actor: the day's link also announces the day (the
    # jobs of the consent bases and of the art. 14 notices).
    undelayed_links = lambda: [  # noqa: E731
        m for m, d in worker.sent if not d and m.actor_name == "run_daily_retention"
    ]
    wait_for(lambda: len(undelayed_links()) == 2)
    time.sleep(0.5)
    assert len(completed_runs()) == 1
    assert len([m for m, d in worker.sent if d]) == 1


def test_a_message_of_a_replaced_chain_stops(app_ctx) -> None:
    link = retention.ensure_daily_schedule()
    assert link is not None
    # The chain went silent for longer than the grace period: a new one replaces it.
    db.session.execute(
        sa.update(RetentionSchedule).values(next_run_at=utcnow() - timedelta(hours=3))
    )
    db.session.commit()
    replacement = retention.ensure_daily_schedule()
    assert replacement is not None and replacement.chain_id != link.chain_id

    assert retention.take_daily_turn(link.chain_id, link.due_at) is None
    schedule = db.session.get(RetentionSchedule, retention.SCHEDULE_NAME, populate_existing=True)
    assert schedule.chain_id == replacement.chain_id


def test_an_in_memory_broker_replaces_the_chain_its_last_process_took_along(app_ctx) -> None:
    first = retention.ensure_daily_schedule()
    assert first is not None
    # A restarted `flask run` (in-memory broker): the delayed message is gone.
    second = retention.ensure_daily_schedule(replace=True)
    assert second is not None and second.chain_id != first.chain_id
    assert retention.take_daily_turn(first.chain_id, first.due_at) is None
