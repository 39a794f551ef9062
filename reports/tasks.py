"""Dramatiq actor of the dashboard: the scheduled count of its slow sections."""

from __future__ import annotations

import dramatiq

from kernel.timestamps import utcnow
from reports import snapshots

TEN_MINUTES_MS = 10 * 60 * 1000


@dramatiq.actor(
    actor_name=snapshots.REFRESH_JOB, queue_name="reports", max_retries=0, time_limit=TEN_MINUTES_MS
)
def refresh_dashboard() -> None:
    """Count the dashboard's slow sections now (sent by ``kernel.scheduling``).

    No retries: the next turn counts afresh, and a count is only ever replaced."""
    snapshots.refresh(utcnow())
