"""Consent actors: thin wrappers that take ids and call one service."""

from __future__ import annotations

from datetime import datetime

import dramatiq
from dramatiq.middleware import TimeLimitExceeded

from consent import bases, bulk_actions, imports, webhooks


def _retry_webhook(retries: int, exception: BaseException) -> bool:
    # The delivery's row decides when to give up (WEBHOOK_RETRY_HOURS) and asks
    # for each retry with its delay; anything else (a crash) gets a few tries.
    return isinstance(exception, dramatiq.Retry) or retries < 3


@dramatiq.actor(
    actor_name=webhooks.WEBHOOK_JOB,
    queue_name="webhooks",
    retry_when=_retry_webhook,
    time_limit=60_000,
)
def deliver_webhook(delivery_id: int) -> None:
    """Post one webhook delivery; retried after the delay the delivery asks for."""
    try:
        webhooks.deliver(delivery_id)
    except webhooks.DeliveryFailed as failed:
        raise dramatiq.Retry(str(failed), delay=failed.retry_in_ms) from None


@dramatiq.actor(
    actor_name=bases.BASES_JOB, queue_name="retention", max_retries=3, time_limit=3_600_000
)
def reconcile_bases(at: str) -> None:
    """Write the day's lapsed and company-given bases to the ledger (idempotent)."""
    bases.reconcile_bases(datetime.fromisoformat(at))


IMPORT_TIME_LIMIT_MS = 6 * 3_600_000


@dramatiq.actor(
    actor_name=imports.IMPORT_JOB,
    queue_name="imports",
    max_retries=3,
    time_limit=IMPORT_TIME_LIMIT_MS,
)
def run_import(batch_id: int) -> None:
    """Import a stored CSV file (docs/imports.md); a batch already run is left alone."""
    try:
        imports.run_queued_import(batch_id)
    except TimeLimitExceeded:
        # Started over, it would run out of time again (the sweeper hands a
        # batch whose lease ran out over again): it ends here, failed.
        imports.stop_import(
            batch_id,
            f"Stopped: the import ran longer than its time limit "
            f"({IMPORT_TIME_LIMIT_MS // 3_600_000} hours). Split the file and import the parts.",
        )
        raise


@dramatiq.actor(
    actor_name=bulk_actions.BULK_JOB,
    # The staff's long jobs share the imports queue and its workers.
    queue_name="imports",
    max_retries=3,
    time_limit=6 * 3_600_000,
)
def run_bulk_action(run_id: int) -> None:
    """Apply a confirmed bulk action to its contacts (docs/staff-pages.md); idempotent."""
    bulk_actions.run_bulk_action(run_id)
