"""The daily run: today's retention once, whichever worker gets the scheduler's
message (``kernel.scheduling`` sends ``DAILY_RETENTION_JOB`` at
``RETENTION_DAILY_AT``)."""

from __future__ import annotations

import logging
from datetime import datetime

from crm import changes as change_feed
from crm.models import RetentionRun
from crm.retention.rules import utc_day
from crm.retention.run import has_completed_run, run
from kernel.errors import Conflict
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)


# The job the scheduler sends (``kernel.scheduling``; listed in ``app.register_scheduling``).
DAILY_RETENTION_JOB = "run_daily_retention"
DAILY_RUN_BY = "system:daily-retention"


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
        return run(today, started_by=DAILY_RUN_BY)
    except Conflict:
        log.info("Retention run for %s skipped: another run holds the lock", today)
        return None
