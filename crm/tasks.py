"""Dramatiq actors of the CRM package: the daily retention run, which also
announces the day to the packages above (``kernel.signals.day_started``).

Thin wrappers around ``crm.retention``; ids and times in, never data.
"""

from __future__ import annotations

import logging
from datetime import datetime

import dramatiq
import sqlalchemy as sa
from flask import Flask

from crm import retention
from extensions import broker
from kernel.signals import day_started
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)

# A run over millions of rows takes minutes; the daily link may take hours.
SIX_HOURS_MS = 6 * 60 * 60 * 1000


@dramatiq.actor(queue_name="retention", max_retries=3, time_limit=SIX_HOURS_MS)
def run_daily_retention(chain_id: str, due_at: str) -> None:
    """One link of the daily chain: send tomorrow's link, then run today's retention."""
    link = retention.take_daily_turn(chain_id, datetime.fromisoformat(due_at))
    if link is not None:
        send_link(link)
    retention.run_daily()
    # The day's other duties belong to the packages above: the bases that lapsed
    # by time (R1, R3), the art. 14 notices still owed (docs/rules.md X15), the web
    # visitors whose consent ended (R19). Each is safe to run twice in a day.
    day_started.send(signal_sender(), at=utcnow())


@dramatiq.actor(queue_name="retention", max_retries=10)
def ensure_retention_schedule(replace: bool = False) -> None:
    """Start the daily chain unless a live one exists (sent when a worker boots)."""
    try:
        link = retention.ensure_daily_schedule(replace=replace)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        # `flask db upgrade` itself boots the in-process worker before the
        # tables exist; the next boot starts the chain.
        log.info("Retention schedule not started: the database schema is not ready")
        return
    if link is not None:
        send_link(link)


def send_link(link: retention.NextLink) -> None:
    run_daily_retention.send_with_options(
        args=(link.chain_id, link.due_at.isoformat()),
        delay=link.delay_ms(utcnow()),
    )


class DailyRetentionMiddleware(dramatiq.Middleware):
    """Makes sure the daily chain exists whenever a worker boots."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        ensure_retention_schedule.send(_is_in_memory(broker))


def _is_in_memory(broker: dramatiq.Broker) -> bool:
    # Delayed messages of an in-memory broker die with the process: a new
    # process replaces the chain instead of waiting for a message that is gone.
    from dramatiq.brokers.stub import StubBroker

    return isinstance(broker, StubBroker)


def register(app: Flask) -> None:
    if app.config["CONSENT_ENV"] == "testing":
        return
    if not any(isinstance(m, DailyRetentionMiddleware) for m in broker.middleware):
        broker.add_middleware(DailyRetentionMiddleware())
    if "inprocess_worker" in app.extensions:
        # The in-process worker booted before this package registered.
        ensure_retention_schedule.send(_is_in_memory(broker))
