"""Consent actors: thin wrappers that take ids and call one service."""

from __future__ import annotations

import dramatiq

from consent import webhooks


@dramatiq.actor(
    actor_name=webhooks.WEBHOOK_JOB, queue_name="webhooks", max_retries=25, time_limit=60_000
)
def deliver_webhook(delivery_id: int) -> None:
    """Post one webhook delivery; dramatiq retries it with backoff on failure."""
    webhooks.deliver(delivery_id)
