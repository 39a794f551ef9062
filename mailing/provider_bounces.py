"""Bounces and complaints reported by a mail provider or by another system, into the one path.

Three providers post their events to ``/webhooks/bounces/<provider>``
(docs/bounces.md), and staff systems post one bounce at a time to
``POST /api/v1/bounces``. Each post is first proven to come from where it
claims (``mailing.provider_signatures``, before any event in it is used),
then each of its events becomes a ``mailing.bounces.Bounce`` and goes through
``mailing.bounces.record_bounce``, the same path a DSN piped into
``flask bounces ingest`` takes: matching to a message of ours, then the
ledger's effects. An event about a message we never sent is ignored there.

The payload formats follow each provider's published reference (Amazon SES
"Contents of notifications", Postmark "Bounce webhook" and "Spam complaint
webhook", SendGrid "Event Webhook reference"); what each provider type means
here is in the tables below and in docs/bounces.md.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from typing import Any

from crm.services import audit
from extensions import db
from kernel.access import Actor
from kernel.timestamps import utcnow
from mailing import provider_signatures as proof
from mailing.bounces import Bounce, BounceOutcome, record_bounce

log = logging.getLogger(__name__)

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
BOUNCE_TYPES = (HARD, SOFT, COMPLAINT)
# What the evidence may hold of a provider's text.
MAX_DIAGNOSTIC = 1000
MAX_MESSAGE_ID = 255
# An RFC 3463 enhanced status code ("5.1.1").
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
# SendGrid posts batches; more events than this in one post is not SendGrid.
MAX_EVENTS_PER_POST = 5_000


@dataclass(frozen=True)
class Received:
    """What became of the events of one post: recorded, ignored by the one path
    (no message of ours matches), or skipped here (not a bounce or complaint:
    a delivery, an open, an auto-reply)."""

    recorded: int = 0
    # Recorded before (a provider posting the same event again).
    duplicate: int = 0
    ignored: int = 0
    skipped: int = 0
    # SNS only: the subscription was confirmed (SubscriptionConfirmation).
    confirmed_subscription: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "duplicate": self.duplicate,
            "ignored": self.ignored,
            "skipped": self.skipped,
            "confirmed_subscription": self.confirmed_subscription,
        }


# --- the one path -------------------------------------------------------------------------


def _record_all(bounces: Iterable[Bounce], skipped: int = 0) -> Received:
    counts = {"recorded": 0, "duplicate": 0, "ignored": 0}
    for bounce in bounces:
        counts[record_bounce(bounce).status] += 1
    return Received(
        recorded=counts["recorded"],
        duplicate=counts["duplicate"],
        ignored=counts["ignored"],
        skipped=skipped,
    )


def report_bounce(
    actor: Actor,
    *,
    email: str,
    type: str,
    source: str,
    message_id: str | None = None,
    diagnostic: str | None = None,
    status: str | None = None,
) -> BounceOutcome:
    """A bounce or complaint another system saw (``POST /api/v1/bounces``),
    recorded through the one path; commits.

    The evidence's source is ``api:<the caller's source>``, never a bare
    provider's name, so that no caller can pass its report off as one of the
    verified ways in; who reported it goes to the audit log (R25), with the
    contact when the report matched one of our messages.
    """
    bounce = Bounce(
        email=email,
        type=type,
        source=f"api:{source}",
        status=status,
        diagnostic=diagnostic,
        message_id=message_id,
        occurred_at=utcnow(),
    )
    outcome = record_bounce(bounce)
    audit(actor, "bounce.report", outcome.contact_id, f"{type} via api:{source}: {outcome.reason}")
    db.session.commit()
    return outcome


# --- Amazon SES, through SNS --------------------------------------------------------------

# SES's bounceType: Permanent is a hard bounce; Transient (a full mailbox, a
# message too large) and Undetermined (SES could not tell) count as soft, so
# that only repetition makes such an address undeliverable.
_SES_BOUNCE_TYPES = {"Permanent": HARD, "Transient": SOFT, "Undetermined": SOFT}


def receive_ses(body: bytes, message_type: str | None, now: datetime | None = None) -> Received:
    """An SNS post carrying SES notifications: verified, then confirmed or recorded."""
    message = proof.verify_sns(body, message_type, now or utcnow())
    if message.type == "SubscriptionConfirmation":
        return Received(confirmed_subscription=_confirm_subscription(message))
    if message.type != "Notification":
        log.info("SNS %s for %s: nothing to do", message.type, message.topic_arn)
        return Received(skipped=1)
    bounces = list(ses_bounces(message.message))
    return _record_all(bounces, skipped=0 if bounces else 1)


def _confirm_subscription(message: proof.SnsMessage) -> bool:
    """Visit the SubscribeURL, as SNS asks, only when it is an SNS address (the
    topic was already checked against SES_SNS_TOPIC_ARNS)."""
    url = message.subscribe_url or ""
    if not proof.is_sns_url(url):
        raise proof.ProofRefused(
            "The SubscribeURL is not an https:// address on an SNS host.",
            code="subscribe_url_refused",
        )
    proof.https_get(url, 64 * 1024, code="subscription_not_confirmed")
    log.info("Confirmed the SNS subscription to %s", message.topic_arn)
    return True


def ses_bounces(message: str) -> Iterator[Bounce]:
    """The bounces and complaints of one SES notification (the SNS ``Message``).

    Both formats count: the notifications of an identity (``notificationType``)
    and event publishing (``eventType``). Deliveries, sends and opens are no
    bounce. A complaint whose feedback type is ``not-spam`` is the opposite of
    a complaint and is skipped.
    """
    try:
        notification = json.loads(message)
    except (ValueError, RecursionError):
        return
    if not isinstance(notification, dict):
        return
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = _mapping(notification.get("mail"))
    message_id = _ses_message_id(mail)
    if kind == "Bounce":
        bounce = _mapping(notification.get("bounce"))
        bounce_type = _SES_BOUNCE_TYPES.get(str(bounce.get("bounceType")))
        if bounce_type is None:
            return
        for recipient in _mappings(bounce.get("bouncedRecipients")):
            email = _address(recipient.get("emailAddress"))
            if email:
                yield Bounce(
                    email=email,
                    type=bounce_type,
                    source="ses",
                    status=_status(recipient.get("status")),
                    diagnostic=_text(recipient.get("diagnosticCode"), MAX_DIAGNOSTIC),
                    message_id=message_id,
                    occurred_at=_moment(bounce.get("timestamp")),
                )
    elif kind == "Complaint":
        complaint = _mapping(notification.get("complaint"))
        feedback = _text(complaint.get("complaintFeedbackType"), 64)
        if feedback == "not-spam":
            return
        for recipient in _mappings(complaint.get("complainedRecipients")):
            email = _address(recipient.get("emailAddress"))
            if email:
                yield Bounce(
                    email=email,
                    type=COMPLAINT,
                    source="ses",
                    diagnostic=f"feedback type: {feedback}" if feedback else None,
                    message_id=message_id,
                    occurred_at=_moment(complaint.get("timestamp")),
                )


def _ses_message_id(mail: Mapping[str, Any]) -> str | None:
    """The Message-ID header of our original message, when SES returned the headers."""
    common = _mapping(mail.get("commonHeaders"))
    found = common.get("messageId")
    if not found:
        for header in _mappings(mail.get("headers")):
            if str(header.get("name", "")).lower() == "message-id":
                found = header.get("value")
                break
    return _text(found, MAX_MESSAGE_ID)


# --- Postmark -----------------------------------------------------------------------------

# Postmark's bounce Type (its "bounce types" reference). What is not here
# (AutoResponder, Subscribe, Unsubscribe, AddressChange, ChallengeVerification,
# SpamNotification, VirusNotification, OpenRelayTest, ManuallyDeactivated,
# Unconfirmed, SMTPApiError, InboundError, DMARCPolicy, TemplateRenderingFailed,
# Unknown) is no statement about the recipient's mailbox and is skipped.
POSTMARK_TYPES = {
    "HardBounce": HARD,
    "BadEmailAddress": HARD,
    "SoftBounce": SOFT,
    "Transient": SOFT,
    "DnsError": SOFT,
    "Blocked": SOFT,
    "SpamComplaint": COMPLAINT,
}


def receive_postmark(body: bytes, authorization: str | None) -> Received:
    """A Postmark bounce or spam-complaint webhook: credentials checked, then recorded."""
    proof.verify_postmark(authorization)
    bounces = list(postmark_bounces(body))
    return _record_all(bounces, skipped=0 if bounces else 1)


def postmark_bounces(body: bytes) -> Iterator[Bounce]:
    """The bounce of one Postmark post (one record per post)."""
    record = _json_object(body)
    if record.get("RecordType") not in ("Bounce", "SpamComplaint"):
        return
    bounce_type = POSTMARK_TYPES.get(str(record.get("Type")))
    email = _address(record.get("Email"))
    if bounce_type is None or not email:
        return
    yield Bounce(
        email=email,
        type=bounce_type,
        source="postmark",
        diagnostic=_text(record.get("Details") or record.get("Description"), MAX_DIAGNOSTIC),
        occurred_at=_moment(record.get("BouncedAt")),
    )


# --- SendGrid -----------------------------------------------------------------------------

# SendGrid's "dropped" events name why SendGrid did not even try: an address
# that bounced or is invalid is a hard bounce, one that reported spam a
# complaint; the others (its own unsubscribe lists, spam content, quotas) say
# nothing about the mailbox.
_SENDGRID_DROPPED = {
    "bounced address": HARD,
    "invalid": HARD,
    "spam reporting address": COMPLAINT,
}


def receive_sendgrid(
    body: bytes, signature: str | None, timestamp: str | None, now: datetime | None = None
) -> Received:
    """A SendGrid signed event webhook post: signature checked, then every bounce recorded."""
    proof.verify_sendgrid(body, signature, timestamp, now or utcnow())
    events = _json_list(body)
    bounces = []
    for event in events:
        found = sendgrid_bounce(event)
        if found is not None:
            bounces.append(found)
    return _record_all(bounces, skipped=len(events) - len(bounces))


def sendgrid_bounce(event: Mapping[str, Any]) -> Bounce | None:
    """The bounce one SendGrid event reports, or None (delivered, open, deferred...).

    ``bounce`` events of type ``blocked`` and any bounce with a 4.x.x status
    are soft; other bounces are hard (SendGrid's "bounce" is a permanent
    refusal). ``spamreport`` is a complaint.
    """
    kind = event.get("event")
    status = _status(event.get("status"))
    reason = _text(event.get("reason"), MAX_DIAGNOSTIC)
    if kind == "bounce":
        soft = event.get("type") == "blocked" or (status or "").startswith("4")
        bounce_type = SOFT if soft else HARD
    elif kind == "dropped":
        found = _SENDGRID_DROPPED.get((reason or "").strip().lower())
        if found is None:
            return None
        bounce_type = found
    elif kind == "spamreport":
        bounce_type = COMPLAINT
    else:
        return None
    email = _address(event.get("email"))
    if not email:
        return None
    return Bounce(
        email=email,
        type=bounce_type,
        source="sendgrid",
        status=status,
        diagnostic=reason,
        message_id=_text(event.get("smtp-id"), MAX_MESSAGE_ID),
        occurred_at=_moment(event.get("timestamp")),
    )


# --- reading what the providers send ------------------------------------------------------
# Signed or not, a provider's payload is read defensively: a field of the
# wrong type or size is dropped, never a 500.


def _json_object(body: bytes) -> Mapping[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _json_list(body: bytes) -> list[Mapping[str, Any]]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return []
    if not isinstance(value, list):
        return []
    return [item for item in value[:MAX_EVENTS_PER_POST] if isinstance(item, dict)]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


# NUL and the other control characters, and lone surrogates: no column can
# store them (PostgreSQL refuses NUL in text), and an SNS body is not JSON to
# kernel.inputs (text/plain), so the payload's strings are cleaned here.
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _text(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = _UNSTORABLE.sub(" ", value).strip()
    return cleaned[:limit] or None


def _status(value: Any) -> str | None:
    text = _text(value, 16)
    return text if text and _STATUS.fullmatch(text) else None


def _address(value: Any) -> str | None:
    """The bare address of ``value`` (providers may send ``"Name" <a@b>``)."""
    text = _text(value, 400)
    if not text:
        return None
    address = parseaddr(text)[1] or text
    return address if "@" in address and len(address) <= 320 else None


def _moment(value: Any) -> datetime | None:
    """An ISO 8601 time or a Unix time, in UTC; None when it is neither."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            return moment.astimezone(UTC) if moment.tzinfo else None
    except (ValueError, OverflowError, OSError):
        return None
    return None
