"""Dramatiq actors: ids in, one service call, safe to run twice."""

from __future__ import annotations

from typing import Any

import dramatiq

from extensions import broker
from mailing import (
    art14_notices,
    bounce_mailbox,
    delivery,
    notices,
    outbox,
    privacy_requests,
    staff_mail,
    subscription_flows,
)
from mailing.transport import TemporaryFailure

# Temporary SMTP trouble (4xx, connection refused) is retried with exponential
# backoff; anything else is a bug or a permanent refusal and is not.
MAX_DELIVERY_RETRIES = 25


def _retry_temporary_failures(retries: int, exception: BaseException) -> bool:
    return isinstance(exception, TemporaryFailure) and retries < MAX_DELIVERY_RETRIES


_DELIVERY: dict[str, Any] = {
    "broker": broker,
    "queue_name": "mail",
    "retry_when": _retry_temporary_failures,
    "min_backoff": 5_000,
    "max_backoff": 30 * 60_000,
}


@dramatiq.actor(**_DELIVERY, time_limit=120_000)
def deliver_email(outbox_id: int) -> None:
    # Jobs of one row each, as a version before deliver_emails handed them over.
    delivery.deliver(outbox_id)


@dramatiq.actor(actor_name=outbox.DELIVERY_JOB, **_DELIVERY, time_limit=600_000)
def deliver_emails(outbox_ids: list[int]) -> None:
    delivery.deliver_many(outbox_ids)


@dramatiq.actor(
    actor_name=outbox.SWEEP_JOB, broker=broker, queue_name="mail", max_retries=0, time_limit=300_000
)
def sweep_outbox() -> None:
    outbox.sweep_all()


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=3, time_limit=3_600_000)
def send_policy_notices(policy_version_id: int) -> None:
    """Queue the notice of a major policy version to every contact (R24)."""
    notices.queue_policy_notices(policy_version_id)


@dramatiq.actor(
    actor_name=art14_notices.ART14_NOTICES_JOB,
    broker=broker,
    queue_name="mail",
    max_retries=3,
    time_limit=3_600_000,
)
def send_art14_notices() -> None:
    """Queue the GDPR art. 14 notice for every contact still owed one (daily)."""
    art14_notices.queue_art14_notices()


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=3, time_limit=60_000)
def send_staff_password_reset(user_id: int) -> None:
    """Mail a staff user a password-reset link (crm.accounts); the link is
    single use, so a repeat after a lost acknowledgement is harmless."""
    staff_mail.send_password_reset(user_id)


@dramatiq.actor(
    actor_name=subscription_flows.UNSUBSCRIBE_LINK_JOB,
    broker=broker,
    queue_name="mail",
    max_retries=3,
    time_limit=60_000,
)
def send_unsubscribe_link(address_hash: str) -> None:
    subscription_flows.send_unsubscribe_link(address_hash)


@dramatiq.actor(
    actor_name=privacy_requests.PRIVACY_REQUEST_JOB,
    broker=broker,
    queue_name="mail",
    max_retries=3,
    time_limit=60_000,
)
def open_privacy_request(address_hash: str, kind: str) -> None:
    privacy_requests.open_privacy_request(address_hash, kind)


@dramatiq.actor(
    actor_name=bounce_mailbox.POLL_JOB,
    broker=broker,
    queue_name="mail",
    max_retries=0,
    time_limit=600_000,
)
def poll_bounce_mailbox() -> None:
    bounce_mailbox.poll_mailbox()
