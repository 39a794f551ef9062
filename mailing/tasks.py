"""Dramatiq actors: ids in, one service call, safe to run twice."""

from __future__ import annotations

import dramatiq

from extensions import broker
from mailing import services
from mailing.transport import TemporaryFailure

# Temporary SMTP trouble (4xx, connection refused) is retried with exponential
# backoff; anything else is a bug or a permanent refusal and is not.
MAX_DELIVERY_RETRIES = 25


def _retry_temporary_failures(retries: int, exception: BaseException) -> bool:
    return isinstance(exception, TemporaryFailure) and retries < MAX_DELIVERY_RETRIES


@dramatiq.actor(
    broker=broker,
    queue_name="mail",
    retry_when=_retry_temporary_failures,
    min_backoff=5_000,
    max_backoff=30 * 60_000,
    time_limit=120_000,
)
def deliver_email(outbox_id: int) -> None:
    services.deliver(outbox_id)


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=0, time_limit=300_000)
def sweep_outbox() -> None:
    services.sweep()


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=3, time_limit=3_600_000)
def send_policy_notices(policy_version_id: int) -> None:
    """Queue the notice of a major policy version to every contact (R24)."""
    from mailing import notices

    notices.queue_policy_notices(policy_version_id)


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=3, time_limit=60_000)
def send_unsubscribe_link(address_hash: str) -> None:
    services.send_unsubscribe_link(address_hash)


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=3, time_limit=60_000)
def open_privacy_request(address_hash: str, kind: str) -> None:
    services.open_privacy_request(address_hash, kind)
