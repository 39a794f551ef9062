"""Whether the periodic work is being done: the daily retention run and the outbox.

``scheduling_health`` is the one computation; ``/healthz`` reports it and a
metric may read it. A scheduler that is not running, or workers that do not
take its jobs, fail silently otherwise: nothing errors, retention simply
stops purging and mail stops leaving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from crm.models import RetentionRun
from extensions import db
from kernel import metrics
from kernel.models import ScheduledJob
from kernel.timestamps import utcnow
from mailing.models import MailStatus, OutboxMessage

RETENTION_JOB = "retention-daily"
RETENTION_PERIOD = timedelta(days=1)
_WAITING = (MailStatus.QUEUED.value, MailStatus.SENDING.value)


@dataclass(frozen=True)
class SchedulingHealth:
    """What ``scheduling_health`` found at ``at``; no personal data."""

    at: datetime
    # End of the last completed retention run (daily or `flask retention run`).
    last_retention_at: datetime | None
    # Since when no retention run counts as late: the last run, else the first
    # time a scheduler sent the daily job; None when no scheduler ever ran.
    retention_since: datetime | None
    retention_late_after: timedelta
    # The oldest email still waiting (queued or being sent), and the last one sent.
    oldest_waiting_at: datetime | None
    last_sent_at: datetime | None
    outbox_stuck_after: timedelta

    @property
    def retention_age(self) -> timedelta | None:
        return None if self.last_retention_at is None else self.at - self.last_retention_at

    @property
    def is_retention_late(self) -> bool:
        since = self.retention_since
        return since is None or self.at - since > self.retention_late_after

    @property
    def outbox_oldest_age(self) -> timedelta | None:
        return None if self.oldest_waiting_at is None else self.at - self.oldest_waiting_at

    @property
    def is_outbox_stuck(self) -> bool:
        """Mail has waited too long and nothing left lately. A long campaign
        that is still sending is a backlog, not stuck."""
        limit = self.at - self.outbox_stuck_after
        if self.oldest_waiting_at is None or self.oldest_waiting_at > limit:
            return False
        return self.last_sent_at is None or self.last_sent_at <= limit

    @property
    def is_degraded(self) -> bool:
        return self.is_retention_late or self.is_outbox_stuck

    def summary(self) -> dict[str, str]:
        """Words for a public health answer: states, never counts or dates."""
        if not self.is_retention_late:
            retention = "ok"
        else:
            retention = "late" if self.last_retention_at else "never_run"
        return {"retention": retention, "outbox": "stuck" if self.is_outbox_stuck else "ok"}


def scheduling_health(now: datetime) -> SchedulingHealth:
    """The retention run is late when none completed within a day plus
    ``HEALTH_RETENTION_MARGIN_S``; the outbox is stuck when an email has waited
    longer than ``HEALTH_OUTBOX_STUCK_AFTER_S`` and none was sent in that time.
    A few indexed reads."""
    config = current_app.config
    last_run = db.session.scalar(
        sa.select(sa.func.max(RetentionRun.ended_at)).where(RetentionRun.status == "completed")
    )
    first_scheduled = db.session.scalar(
        sa.select(ScheduledJob.created_at).where(ScheduledJob.name == RETENTION_JOB)
    )
    # One MIN per status, each answered from ix_outbox_message_status_created_at.
    waiting = [
        db.session.scalar(
            sa.select(sa.func.min(OutboxMessage.created_at)).where(OutboxMessage.status == status)
        )
        for status in _WAITING
    ]
    oldest = min((w for w in waiting if w is not None), default=None)
    last_sent = db.session.scalar(sa.select(sa.func.max(OutboxMessage.sent_at)))
    return SchedulingHealth(
        at=now,
        last_retention_at=last_run,
        retention_since=last_run or first_scheduled,
        retention_late_after=RETENTION_PERIOD
        + timedelta(seconds=float(config["HEALTH_RETENTION_MARGIN_S"])),
        oldest_waiting_at=oldest,
        last_sent_at=last_sent,
        outbox_stuck_after=timedelta(seconds=float(config["HEALTH_OUTBOX_STUCK_AFTER_S"])),
    )


def _health_now() -> SchedulingHealth:
    """``scheduling_health`` now, read once per /metrics scrape for all its gauges."""

    def read() -> SchedulingHealth:
        try:
            return scheduling_health(utcnow())
        finally:
            db.session.rollback()

    return metrics.once_per_scrape("scheduling_health", read)


def _now_reading(state: str) -> float:
    """One state of ``scheduling_health`` now, as 1.0 or 0.0 (for /metrics)."""
    return 1.0 if getattr(_health_now(), state) else 0.0


def oldest_waiting_age_seconds() -> float:
    """Seconds the oldest waiting email has waited (0 when none waits), from the
    same reading as the health gauges."""
    age = _health_now().outbox_oldest_age
    return 0.0 if age is None else max(0.0, age.total_seconds())


def is_degraded() -> float:
    return _now_reading("is_degraded")


def is_retention_late() -> float:
    return _now_reading("is_retention_late")


def is_outbox_stuck() -> float:
    return _now_reading("is_outbox_stuck")
