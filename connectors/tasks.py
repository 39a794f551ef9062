"""The connectors' actor: every enabled connector synced once, sent by the scheduler."""

from __future__ import annotations

import dramatiq

from connectors import config, sync

# A sync of a large CRM's first pass takes minutes; the lease (sync.LEASE) is longer.
THIRTY_MINUTES_MS = 30 * 60 * 1000


@dramatiq.actor(
    actor_name=config.SYNC_JOB, queue_name="connectors", max_retries=0, time_limit=THIRTY_MINUTES_MS
)
def sync_connectors(*names: str) -> None:
    """Sync the named connectors (all enabled ones when none is named). Safe to
    run twice: a connector held by another run is passed over, and a record
    applied before writes nothing. No retries here: the scheduler's next turn
    is the retry, resuming from the saved cursors."""
    for name in names or config.enabled():
        sync.sync(name)
