"""The daily retention run, as the scheduler's message runs it on a real dramatiq worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import sqlalchemy as sa

from crm.models import RetentionRun
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


def completed_runs() -> list[RetentionRun]:
    db.session.rollback()
    return list(
        db.session.scalars(sa.select(RetentionRun).where(RetentionRun.status == "completed"))
    )


def test_the_daily_message_runs_retention_once_and_sends_nothing_delayed(app_ctx, worker) -> None:
    add_contact("forgotten@kund.se", last_interaction="2010-05-05T10:00:00")
    db.session.commit()

    run_daily_retention.send()
    broker.join(run_daily_retention.queue_name)
    assert not exists("forgotten@kund.se")
    (record,) = completed_runs()
    assert record.started_by == "system:daily-retention"
    assert record.as_of == utcnow().date()

    # The same message again (a redelivery, a second turn the same day) runs nothing twice.
    run_daily_retention.send()
    broker.join(run_daily_retention.queue_name)
    time.sleep(0.2)
    assert len(completed_runs()) == 1
    # The scheduler, not the message, decides tomorrow: no delayed message is left behind.
    assert [d for _, d in worker.sent if d] == []


def test_a_link_of_the_former_chain_runs_the_day_and_ends_the_chain(app_ctx, worker) -> None:
    """Messages of the daily chain that an upgrade finds in Redis carry (chain id,
    due time): they run today's retention like the scheduler's and start no link."""
    run_daily_retention.send("0f" * 16, utcnow().isoformat())
    broker.join(run_daily_retention.queue_name)
    assert len(completed_runs()) == 1
    assert [d for _, d in worker.sent if d] == []
