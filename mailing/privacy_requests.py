"""A person's own privacy requests (access, erasure), verified by a link mailed to
the address before anything is done (docs/rules.md R20, R21)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent import rights
from consent.tokens import LinkInvalid, Purpose, read_token
from crm.models import Contact
from extensions import db
from kernel.addresses import keyed_hash, normalise_email
from kernel.database import commit_retrying
from kernel.errors import InvalidInput, NotFound
from kernel.i18n import zone_of_country
from kernel.jobs import send_or_unavailable
from kernel.timestamps import utcnow
from mailing import messages
from mailing.models import MailKind, OutboxMessage
from mailing.outbox import EMAIL_INTERVAL, hand_over, mailbox_may_receive, queue_email

# The actor behind ``request_privacy`` (declared in mailing.tasks).
PRIVACY_REQUEST_JOB = "open_privacy_request"


def request_privacy(email: str, kind: str) -> None:
    """A person asks for a copy of their data or its erasure: email a verification link.

    As with ``request_unsubscribe_link``, the request only hands the address's
    keyed hash to a job, so neither the answer nor its timing tells whether the
    address is known. Nothing is done until the link is used (R21).
    """
    if kind not in rights.PRIVACY_KINDS:
        raise InvalidInput("kind must be access or erasure.", fields={"kind": ["Unknown."]})
    # The job is the request's only record: see request_unsubscribe_link.
    send_or_unavailable(PRIVACY_REQUEST_JOB, keyed_hash(normalise_email(email)), kind)


def open_privacy_request(address_hash: str, kind: str, at: datetime | None = None) -> None:
    """The job behind ``request_privacy``: for a known address, record the request
    and email the link, within the mailbox's share (``mailbox_may_receive``)."""
    now = at or utcnow()

    def work() -> list[int]:
        contact = db.session.scalar(sa.select(Contact).where(Contact.address_hash == address_hash))
        if contact is None or not mailbox_may_receive(contact, now):
            return []
        # One key per address and ten-minute bucket: two jobs racing for the
        # same address collide on it, and the loser's retry finds the email.
        bucket = int(now.timestamp()) // int(EMAIL_INTERVAL.total_seconds())
        key = f"privacy_verify:{contact.id}:{bucket}"
        if db.session.scalar(
            sa.select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)
        ):
            return []
        request = rights.open_privacy_request(contact, kind, now)
        row = queue_email(
            contact,
            kind=MailKind.TRANSACTIONAL,
            template="privacy_verify",
            idempotency_key=key,
            params={"request_id": request.id, "kind": kind},
            at=now,
        )
        if row.params.get("request_id") != request.id:
            # Another job won the race for this address: keep its request only.
            db.session.rollback()
            return []
        return [row.id]

    hand_over(commit_retrying(work))


@dataclass(frozen=True)
class PrivacyLink:
    request: Any
    language: str
    zone: str  # the contact's, for the dates the page shows (kernel.i18n.zone_of_country)


def read_privacy_link(token: str) -> PrivacyLink:
    """What the verification page shows (GET: reads only)."""
    payload = read_token(Purpose.VERIFY_ADDRESS, token)
    try:
        request_id = int(payload["p"])
    except (KeyError, TypeError, ValueError):
        raise LinkInvalid("This link is not valid.") from None
    try:
        request = rights.get_privacy_request(request_id)
    except NotFound:
        raise LinkInvalid("This link no longer works.") from None
    contact = rights.contact_of_request(request)
    return PrivacyLink(
        request=request,
        language=messages.page_language(contact.language),
        zone=zone_of_country(contact.country),
    )


def language_behind(payload: dict[str, Any]) -> str | None:
    """The language of the person behind a genuine (if expired) verification link."""
    try:
        request = rights.get_privacy_request(int(payload["p"]))
        contact = rights.contact_of_request(request)
    except (KeyError, TypeError, ValueError, NotFound):
        return None
    return messages.page_language(contact.language)


def verify_privacy(token: str, at: datetime | None = None) -> PrivacyLink:
    """The button on the verification page: a copy is emailed; an erasure waits for an admin."""
    link = read_privacy_link(token)
    now = at or utcnow()

    def work() -> list[int]:
        request, fresh = rights.verify_privacy_request(link.request.id, now)
        if not fresh or request.kind != "access":
            return []
        contact = rights.contact_of_request(request)
        row = queue_email(
            contact,
            kind=MailKind.TRANSACTIONAL,
            template="privacy_export",
            idempotency_key=f"privacy_export:{request.id}",
            params={"request_id": request.id},
            at=now,
        )
        return [row.id]

    hand_over(commit_retrying(work))
    return read_privacy_link(token)
