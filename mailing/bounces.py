"""Returned mail: read a bounce or complaint, tie it to a message we sent, record it.

Every way in (``flask bounces ingest``, the mailbox poller, the API and the
providers' webhooks) ends in ``record_bounce``, the one processing path:

1. ``parse_message`` reads a raw returned message: an RFC 3464 delivery
   status notification by its ``Final-Recipient``, ``Action`` and ``Status``;
   an RFC 5965 ARF complaint; a non-standard bounce by ``flufl.bounce`` (GNU
   Mailman's detectors). An auto-reply is never a bounce; a message with a
   delivery-status or feedback-report part is one even with ``Auto-Submitted``.
2. ``record_bounce`` finds the message it is about: the VERP token of the
   address it came back to (``mailing.verp``), else the ``Message-ID`` of the
   returned original, else a message we sent to that address in the last 30
   days. A bounce it cannot tie to a message of ours changes nothing and is
   logged (a forged or misdirected report).
3. ``consent.deliverability.record_bounce_report`` writes the effect through
   the ledger with its evidence.

See docs/bounces.md.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

import sqlalchemy as sa
from flask import current_app

from consent.deliverability import (
    ADDRESS_FIXED_SINCE,
    BOUNCE_TYPES,
    COMPLAINT,
    HARD,
    SOFT,
    BounceEvidence,
    record_bounce_report,
)
from crm.models import Contact
from extensions import db
from kernel import metrics
from kernel.addresses import normalise_email
from kernel.errors import DomainError, NotFound
from kernel.timestamps import utcnow
from mailing import verp
from mailing.models import MailStatus, OutboxMessage

log = logging.getLogger(__name__)

# A bounce without a token or Message-ID counts against the last message sent
# to its address within this time (not for returned mail anyone could send,
# below).
RECENT_MAIL = timedelta(days=30)
# Sources of raw returned mail (``flask bounces ingest``, the mailbox poller):
# anyone can mail the bounce address, so only a verified VERP token or a
# Message-ID we sent ties such a report to our mail. A provider's verified
# webhook (ses, postmark, sendgrid), the authenticated API (``api:<source>``)
# and our own SMTP conversation (smtp, always with its outbox row) are
# authenticated and may fall back on the address.
MAILED_IN_SOURCES = frozenset({"dsn", "arf", "bounce"})


@dataclass(frozen=True)
class Bounce:
    """One recipient's bounce or complaint, as any way in reports it.

    ``type``: hard, soft or complaint. ``source``: where it came from (dsn,
    arf, bounce, smtp, api, ses, postmark, sendgrid). ``status``: the enhanced
    status code (5.1.1). ``message_id``: the returned message's Message-ID;
    ``outbox_id``: the row a verified VERP token named.
    """

    email: str
    type: str
    source: str
    status: str | None = None
    diagnostic: str | None = None
    message_id: str | None = None
    outbox_id: int | None = None
    occurred_at: datetime | None = None
    # The Message-ID of the report itself (the DSN's or ARF's own header): what
    # a redelivery of it is known by when it returns no Message-ID of ours.
    report_message_id: str | None = None


@dataclass(frozen=True)
class BounceOutcome:
    """What ``record_bounce`` did. ``status``: ``recorded``, ``duplicate`` or
    ``ignored``; ``reason``: the effect (``undeliverable``, ``soft_bounce``,
    ``objection``, ``unsubscribed``) or why it was ignored (``not_our_message``,
    ``unknown_type``, ``contact_gone``, ``address_fixed_since``: it happened
    before the address last worked again)."""

    status: str
    reason: str
    contact_id: int | None = None
    outbox_id: int | None = None
    matched_by: str | None = None


class MessageTooLarge(DomainError):
    code = "message_too_large"


class UnreadableMessage(DomainError):
    """The message could not be read at all (the poller moves it aside)."""

    code = "unreadable_message"


def record_bounce(bounce: Bounce, at: datetime | None = None) -> BounceOutcome:
    """Tie ``bounce`` to a message we sent and record its effect; owns its transaction.

    Ignored, logged and never raised: a bounce for an address we never
    mailed (in the last 30 days), a Message-ID or outbox row we do not know,
    an unknown type. Those change nothing.
    """
    outcome = _record(bounce, at)
    kind = bounce.type if bounce.type in BOUNCE_TYPES else "unknown"
    metrics.BOUNCES.labels(kind, outcome.status).inc()
    return outcome


def _record(bounce: Bounce, at: datetime | None) -> BounceOutcome:
    now = at or utcnow()
    if bounce.type not in BOUNCE_TYPES:
        log.warning("Bounce ignored: unknown type %r from %s.", bounce.type, bounce.source)
        return BounceOutcome("ignored", "unknown_type")
    row, matched_by = _find_message(bounce, now)
    if row is None:
        db.session.rollback()
        log.info(
            "Bounce ignored: %s %s from %s names no message this service sent (%s).",
            bounce.type,
            bounce.status or "",
            bounce.source,
            matched_by or "no message found",
        )
        return BounceOutcome("ignored", "not_our_message")
    outbox_id, contact_id = row.id, row.contact_id
    evidence = BounceEvidence(
        contact_id=contact_id,
        type=bounce.type,
        source=bounce.source,
        status=bounce.status,
        diagnostic=_clean(bounce.diagnostic),
        message_id=row.message_id,
        outbox_id=outbox_id,
        campaign_id=row.campaign_id,
        mail_kind=row.kind,
        matched_by=matched_by,
        occurred_at=bounce.occurred_at,
        report_key=_report_key(bounce),
    )
    try:
        effect = record_bounce_report(evidence, at=now)
    except NotFound:
        # Erased between the match and the record: nobody left to record it for.
        db.session.rollback()
        return BounceOutcome("ignored", "contact_gone", None, outbox_id, matched_by)
    log.info(
        "Bounce %s (%s) for outbox %s matched by %s: %s.",
        bounce.type,
        bounce.status or "no status",
        outbox_id,
        matched_by,
        effect.effect,
    )
    if effect.effect in ("duplicate", ADDRESS_FIXED_SINCE):
        status = "duplicate" if effect.effect == "duplicate" else "ignored"
    else:
        status = "recorded"
    return BounceOutcome(status, effect.effect, contact_id, outbox_id, matched_by)


def _find_message(bounce: Bounce, now: datetime) -> tuple[OutboxMessage | None, str | None]:
    """The outbox row the bounce is about, and how it was found (without a
    row: why the address fallback was not tried, or None).

    Returned mail that came in by the MTA or the mailbox (``MAILED_IN_SOURCES``)
    without a token or a Message-ID we sent is anyone's to forge: with VERP
    configured every genuine bounce of ours carries the token, so it is
    ignored; without VERP a DSN may still fall back on the last mail to the
    address, a complaint never (a forged ARF would be a permanent objection).
    """
    if bounce.outbox_id is not None:
        return db.session.get(OutboxMessage, bounce.outbox_id), "verp"
    if bounce.message_id:
        wanted = _message_id(bounce.message_id)
        row = db.session.scalar(
            sa.select(OutboxMessage).where(OutboxMessage.message_id == wanted).limit(1)
        )
        if row is not None:
            return row, "message_id"
    if bounce.source in MAILED_IN_SOURCES:
        if current_app.config.get("BOUNCE_ADDRESS"):
            return None, "no VERP token on returned mail"
        if bounce.type == COMPLAINT:
            return None, "complaint tied to no message of ours"
    try:
        address = normalise_email(bounce.email)
    except DomainError:
        return None, None
    row = db.session.scalar(
        sa.select(OutboxMessage)
        .join(Contact, Contact.id == OutboxMessage.contact_id)
        .where(
            Contact.email == address,
            OutboxMessage.status == MailStatus.SENT,
            OutboxMessage.sent_at >= now - RECENT_MAIL,
        )
        .order_by(OutboxMessage.sent_at.desc(), OutboxMessage.id.desc())
        .limit(1)
    )
    return row, "recent_mail" if row is not None else None


def _report_key(bounce: Bounce) -> str | None:
    """What a repeat of the report is known by: the Message-ID it returns,
    else its own (an MTA delivering the same DSN again keeps both)."""
    for value in (bounce.message_id, bounce.report_message_id):
        if value and value.strip():
            return _message_id(value)[:255]
    return None


def _message_id(value: str) -> str:
    value = value.strip()
    return value if value.startswith("<") else f"<{value.strip('<>')}>"


def _clean(text: str | None) -> str | None:
    """One line of printable text: a diagnostic is shown on staff pages."""
    if not text:
        return None
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return cleaned[:500] or None


@dataclass(frozen=True)
class IngestResult:
    """What ``ingest_message`` made of one returned message: the outcome of each
    bounce in it, or why it was ignored as a whole (``auto_reply_or_other``:
    no bounce or complaint in it; ``too_large``; ``unreadable``)."""

    outcomes: tuple[tuple[Bounce, BounceOutcome], ...] = ()
    ignored: str | None = None

    @property
    def recognised(self) -> bool:
        """Whether it was a bounce or complaint (the poller may remove it)."""
        return bool(self.outcomes)


def ingest_message(raw: bytes, envelope_recipient: str | None = None) -> IngestResult:
    """The one processing path of a raw returned message (``flask bounces
    ingest``, the mailbox poller): parse it and record each bounce in it.

    Input that is no bounce, too large or unreadable is an answer, not an
    error (logged); an error of the database propagates, so that the MTA or
    the poller tries again later.
    """
    try:
        bounces = parse_message(raw, envelope_recipient)
    except MessageTooLarge:
        log.warning("Returned message of %d bytes refused: over BOUNCE_MAX_BYTES.", len(raw))
        return IngestResult(ignored="too_large")
    except UnreadableMessage:
        return IngestResult(ignored="unreadable")
    if not bounces:
        return IngestResult(ignored="no_bounce")
    return IngestResult(outcomes=tuple((b, record_bounce(b)) for b in bounces))


# --- parsing -----------------------------------------------------------------------


def max_bytes() -> int:
    return int(current_app.config.get("BOUNCE_MAX_BYTES") or 10 * 1024 * 1024)


def parse_message(raw: bytes, envelope_recipient: str | None = None) -> list[Bounce]:
    """The bounces and complaints a returned message reports; empty for an
    auto-reply, an out-of-office, a delay warning and anything else that is
    neither (logged). Raises ``MessageTooLarge`` above ``BOUNCE_MAX_BYTES``,
    before parsing, and ``UnreadableMessage`` for bytes that are no message.
    Never anything else: returned mail is hostile input.

    ``envelope_recipient``: the address the MTA delivered the message to (a
    Postfix pipe's ``${original_recipient}``), checked for a VERP token before
    the headers are.
    """
    if len(raw) > max_bytes():
        raise MessageTooLarge(
            f"The message is larger than {max_bytes()} bytes (BOUNCE_MAX_BYTES); not read."
        )
    if not raw.strip():
        raise UnreadableMessage("The message is empty.")
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        _refuse_unreadable(message)
        return _bounces_of(message, envelope_recipient)
    except verp.ForgedToken as exc:
        log.warning("Returned message ignored: %s.", exc)
        return []
    except (MessageTooLarge, UnreadableMessage):
        raise
    except Exception as exc:
        # The email package and the detectors meet any malformed MIME; none of
        # it may stop the next message (docs/bounces.md).
        log.warning("Returned message unreadable: %s: %s", type(exc).__name__, exc)
        raise UnreadableMessage(f"The message cannot be read ({type(exc).__name__}).") from exc


# Defects after which the parts of a message cannot be told apart.
_BROKEN = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
)


def _refuse_unreadable(message: Message) -> None:
    """No header at all, or a multipart whose parts cannot be found: malformed
    MIME that no reader could take a report from (the poller moves it aside)."""
    if not message.keys():
        raise UnreadableMessage("The message has no header.")
    for part in message.walk():
        if any(isinstance(defect, _BROKEN) for defect in part.defects):
            raise UnreadableMessage("The message's MIME parts cannot be found.")


def _bounces_of(message: Message, envelope_recipient: str | None) -> list[Bounce]:
    outbox_id = verp.outbox_id_of(envelope_recipient or "") or _verp_outbox_id(message)
    report = _report_type(message)
    if report == "delivery-status" and _dsn_blocks(message):
        found = _from_dsn(message)
    elif report == "delivery-status":
        # A report without a single per-recipient block (only the Reporting-MTA,
        # or no delivery-status part at all): its text names the recipient.
        found = _from_detectors(message)
    elif report == "feedback-report":
        found = _from_arf(message)
    elif _is_auto_reply(message):
        log.info("Returned message ignored: an auto-reply.")
        return []
    else:
        found = _from_detectors(message)
    if not found:
        log.info("Returned message ignored: no bounce or complaint in it.")
        return []
    # A report that repeats a recipient's block reports it once.
    firsts: dict[tuple[str, str], Bounce] = {}
    for bounce in found:
        firsts.setdefault((bounce.email.lower(), bounce.type), bounce)
    found = list(firsts.values())
    if outbox_id is not None:
        found = [_with(b, outbox_id=outbox_id) for b in found]
    own_id = str(message.get("Message-ID") or "").strip()
    if own_id:
        found = [_with(b, report_message_id=own_id[:255]) for b in found]
    return found


def _with(bounce: Bounce, **changes: object) -> Bounce:
    from dataclasses import replace

    return replace(bounce, **changes)  # type: ignore[arg-type]


def _report_type(message: Message) -> str | None:
    """The report type of the message's multipart/report part, if any; a
    delivery-status or feedback-report part counts even without it."""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "multipart/report":
            kind = str(part.get_param("report-type") or "").lower()
            if kind in ("delivery-status", "feedback-report"):
                return kind
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            return "delivery-status"
        if content_type == "message/feedback-report":
            return "feedback-report"
    return None


_AUTO_REPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")
_MAIL_SYSTEM = frozenset({"mailer-daemon", "postmaster", "mail-daemon"})


def _is_auto_reply(message: Message) -> bool:
    """An out-of-office or a vacation notice, which says the address works
    (listmonk's users lost good addresses by counting them as bounces):
    ``X-Autoreply`` and kin, ``Precedence: auto_reply``, or RFC 3834's
    ``Auto-Submitted`` (anything but ``no``) on a message that does not come
    from a mail system. Exim and others send their plain-text bounces with
    ``Auto-Submitted`` too, from ``MAILER-DAEMON`` or with ``X-Failed-Recipients``:
    those are read as bounces."""
    if any(message.get(name) is not None for name in _AUTO_REPLY_HEADERS):
        return True
    precedence = str(message.get("Precedence") or "").strip().lower()
    if precedence in ("auto_reply", "auto-reply"):
        return True
    submitted = str(message.get("Auto-Submitted") or "").strip().lower()
    return bool(submitted) and not submitted.startswith("no") and not _from_mail_system(message)


def _from_mail_system(message: Message) -> bool:
    if message.get("X-Failed-Recipients") is not None:
        return True
    senders = getaddresses([str(v) for v in message.get_all("From", [])])
    return any(address.partition("@")[0].lower() in _MAIL_SYSTEM for _, address in senders)


def _verp_outbox_id(message: Message) -> int | None:
    """The outbox row named by the address the message came back to, from the
    headers an MTA sets on delivery (``X-Original-To``, ``Delivered-To``) or the
    report's own ``To``. Raises ``verp.ForgedToken`` for a wrong signature."""
    for name in ("X-Original-To", "Delivered-To", "Envelope-To", "To"):
        for _, address in getaddresses([str(v) for v in message.get_all(name, [])]):
            found = verp.outbox_id_of(address)
            if found is not None:
                return found
    return None


def _fields(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or feedback-report part
    (an empty one, as a trailing blank line makes, is none)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message) and p.keys()]
    if isinstance(payload, str):
        blocks = re.split(r"\r?\n\s*\r?\n", payload.strip())
        return [HeaderParser().parsestr(block) for block in blocks if block.strip()]
    return []


def _returned_headers(message: Message) -> Message | None:
    """The returned original's headers (``message/rfc822`` or ``text/rfc822-headers``)."""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if content_type in ("text/rfc822-headers", "message/global-headers"):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return HeaderParser().parsestr(raw.decode("utf-8", errors="replace"))
    return None


def _returned_message_id(message: Message) -> str | None:
    original = _returned_headers(message)
    value = original.get("Message-ID") if original is not None else None
    return str(value).strip() or None if value else None


_ADDRESS_TYPE = re.compile(r"^\s*([A-Za-z0-9-]+)\s*;\s*")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Address types that hold a mail address (RFC 3464 2.3.2, RFC 6533 3.2).
_MAIL_ADDRESS_TYPES = frozenset({"rfc822", "utf-8"})
_RECIPIENT_FIELDS = ("Final-Recipient", "Original-Recipient", "Action")


def _address_field(value: object) -> str:
    """``rfc822; anna@example.com`` -> ``anna@example.com`` (RFC 3464 2.3.2)."""
    return _ADDRESS_TYPE.sub("", str(value or "")).strip().strip("<>")


def _mail_address(value: object) -> str:
    """The mail address of an ``Original-Recipient`` / ``Final-Recipient``
    field; empty for another address type (``x400; /S=anna/...``), which names
    no address we could have mailed."""
    text = str(value or "")
    typed = _ADDRESS_TYPE.match(text)
    if typed is not None and typed.group(1).lower() not in _MAIL_ADDRESS_TYPES:
        return ""
    address = _address_field(text)
    return address if "@" in address else ""


def _dsn_blocks(message: Message) -> list[Message]:
    """The per-recipient blocks of the message's delivery-status parts."""
    blocks = []
    for part in message.walk():
        if part.get_content_type() not in (
            "message/delivery-status",
            "message/global-delivery-status",
        ):
            continue
        for block in _fields(part)[1:] or _fields(part):
            if any(block.get(name) is not None for name in _RECIPIENT_FIELDS):
                blocks.append(block)
    return blocks


def _failed(action: object) -> bool:
    """RFC 3464's ``failed``, also as MTAs write it: with a comment
    (``failed (Bad destination mailbox address)``), ``failure``, or
    OpenSMTPD's ``error``. ``delayed``, ``delivered``, ``relayed`` and
    ``expanded`` are no failure."""
    word = str(action or "").strip().lower()
    return word.startswith(("fail", "error"))


def _from_dsn(message: Message) -> list[Bounce]:
    """RFC 3464: one bounce per recipient block whose ``Action`` is ``failed``:
    hard for a 5.x.x ``Status``, soft for 4.x.x (the MTA gave up after
    temporary failures). ``delayed`` is a warning, not a bounce: the MTA is
    still trying. The recipient is the ``Original-Recipient`` (the address we
    sent to, before any forwarding) where the MTA reports it, else the
    ``Final-Recipient``."""
    message_id = _returned_message_id(message)
    found = []
    for block in _dsn_blocks(message):
        recipient = _mail_address(block.get("Original-Recipient")) or _mail_address(
            block.get("Final-Recipient")
        )
        if not _failed(block.get("Action")) or not recipient:
            continue
        status_match = _STATUS.search(str(block.get("Status") or ""))
        status = status_match.group(0) if status_match else None
        kind = SOFT if status is not None and status.startswith("4") else HARD
        diagnostic = _address_field(block.get("Diagnostic-Code")) or None
        found.append(
            Bounce(
                email=recipient,
                type=kind,
                source="dsn",
                status=status,
                diagnostic=_clean(diagnostic),
                message_id=message_id,
            )
        )
    return found


def _from_arf(message: Message) -> list[Bounce]:
    """RFC 5965: a complaint about a message, its recipient from
    ``Original-Rcpt-To`` or the returned message's ``To`` (providers often
    redact it; the VERP token or the Message-ID then find the message)."""
    original = _returned_headers(message)
    message_id = _returned_message_id(message)
    for part in message.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        fields = _fields(part)
        block = fields[0] if fields else Message()
        feedback = str(block.get("Feedback-Type") or "abuse").strip().lower()
        if feedback not in ("abuse", "fraud", "other", "virus"):
            # "not-spam" and "auth-failure" are no complaint by the person.
            log.info("Feedback report of type %s ignored.", feedback)
            return []
        recipient = _address_field(block.get("Original-Rcpt-To"))
        if not recipient and original is not None:
            addresses = getaddresses([str(v) for v in original.get_all("To", [])])
            recipient = addresses[0][1] if addresses else ""
        return [
            Bounce(
                email=recipient,
                type=COMPLAINT,
                source="arf",
                diagnostic=f"feedback-type {feedback}",
                message_id=message_id,
            )
        ]
    return []


def _from_detectors(message: Message) -> list[Bounce]:
    """A bounce that is no DSN (qmail, old Exchange, a provider's own text):
    GNU Mailman's detectors' permanent failures, as hard bounces. What they
    call temporary failures are delay warnings ("still trying"), which are no
    bounce: counted as soft bounces, the warnings about one slow message
    would reach the soft limit on their own."""
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(message)
    if temporary - permanent:
        log.info("Returned message: a delay warning, not counted as a bounce.")
    message_id = _returned_message_id(message)
    found = []
    for address in sorted(permanent):
        text = address.decode("utf-8", errors="replace") if isinstance(address, bytes) else address
        found.append(Bounce(email=str(text), type=HARD, source="bounce", message_id=message_id))
    return found
