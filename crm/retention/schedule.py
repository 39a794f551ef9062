"""The daily schedule: a chain of delayed jobs, one link a day, kept alive by every
worker at boot (``ensure_daily_schedule``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from crm import changes as change_feed
from crm.models import (
    RetentionRun,
)
from crm.retention.rules import utc_day
from crm.retention.run import has_completed_run, run
from extensions import db
from kernel.errors import Conflict
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)


# The daily schedule ---------------------------------------------------------------
#
# A chain of delayed dramatiq messages: each link runs today's retention and
# sends the next link for tomorrow. The chain's id and the next link's time
# live in one row, so a stale or duplicated message (several workers booting,
# a redelivery) stops instead of multiplying the chain.

SCHEDULE_NAME = "retention-daily"
# A chain whose next link is this late is considered lost and replaced.
SCHEDULE_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class NextLink:
    chain_id: str
    due_at: datetime

    def delay_ms(self, now: datetime) -> int:
        return max(0, int((self.due_at - now).total_seconds() * 1000))


def next_daily_time(now: datetime) -> datetime:
    """The next ``RETENTION_DAILY_AT`` (HH:MM, UTC) strictly after ``now``."""
    hour, minute = (int(part) for part in str(current_app.config["RETENTION_DAILY_AT"]).split(":"))
    candidate = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)


def ensure_daily_schedule(now: datetime | None = None, *, replace: bool = False) -> NextLink | None:
    """Start a chain unless a live one exists (``replace``: start one anyway, for
    an in-memory broker whose messages died with the last process). The
    caller sends the returned link's message after this commits."""
    import uuid

    from crm.models import RetentionSchedule

    now = now or utcnow()
    row = db.session.get(RetentionSchedule, SCHEDULE_NAME, populate_existing=True)
    if row is not None and row.next_run_at > now - SCHEDULE_GRACE and not replace:
        return None
    link = NextLink(chain_id=uuid.uuid4().hex, due_at=next_daily_time(now))
    if row is None:
        db.session.add(
            RetentionSchedule(name=SCHEDULE_NAME, chain_id=link.chain_id, next_run_at=link.due_at)
        )
    else:
        replaced = db.session.execute(
            sa.update(RetentionSchedule)
            .where(
                RetentionSchedule.name == SCHEDULE_NAME, RetentionSchedule.chain_id == row.chain_id
            )
            .values(chain_id=link.chain_id, next_run_at=link.due_at)
            .execution_options(synchronize_session=False)
        )
        if replaced.rowcount != 1:  # type: ignore[attr-defined]
            db.session.rollback()
            return None
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # another host started a chain at the same moment
        db.session.rollback()
        return None
    return link


def take_daily_turn(
    chain_id: str, due_at: datetime, now: datetime | None = None
) -> NextLink | None:
    """Move the chain on by one day if this message is its current link.
    Returns the next link to send (after this commits), or None for a stale
    or duplicate message, which must not send one."""
    from crm.models import RetentionSchedule

    now = now or utcnow()
    link = NextLink(chain_id=chain_id, due_at=next_daily_time(max(now, due_at)))
    moved = db.session.execute(
        sa.update(RetentionSchedule)
        .where(
            RetentionSchedule.name == SCHEDULE_NAME,
            RetentionSchedule.chain_id == chain_id,
            RetentionSchedule.next_run_at == due_at,
        )
        .values(next_run_at=link.due_at)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return link if moved.rowcount == 1 else None  # type: ignore[attr-defined]


def run_daily(now: datetime | None = None) -> RetentionRun | None:
    """Today's run unless one completed already or another is in progress.

    First the change feed drops the items older than ``CHANGE_FEED_KEEP_DAYS``
    (``crm.changes.prune``; by the clock, not a run's ``as_of``, and safe to
    run twice a day)."""
    change_feed.prune(now)
    today = utc_day(now or utcnow())
    if has_completed_run(today):
        return None
    try:
        return run(today, started_by="system:daily-retention")
    except Conflict:
        log.info("Retention run for %s skipped: another run holds the lock", today)
        return None
