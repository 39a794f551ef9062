"""Consent actors: thin wrappers that take ids and call one service."""

from __future__ import annotations

from datetime import datetime

import dramatiq

from consent import bases, webhooks


@dramatiq.actor(
    actor_name=webhooks.WEBHOOK_JOB, queue_name="webhooks", max_retries=25, time_limit=60_000
)
def deliver_webhook(delivery_id: int) -> None:
    """Post one webhook delivery; dramatiq retries it with backoff on failure."""
    webhooks.deliver(delivery_id)


@dramatiq.actor(
    actor_name=bases.BASES_JOB, queue_name="retention", max_retries=3, time_limit=3_600_000
)
def reconcile_bases(at: str) -> None:
    """Write the day's lapsed and company-given bases to the ledger (idempotent)."""
    bases.reconcile_bases(datetime.fromisoformat(at))
