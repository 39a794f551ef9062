"""What returned mail does to a contact: bounces and complaints, through the ledger.

``mailing.bounces`` ties a returned message to one of ours and calls
``record_bounce_report`` here; this module decides the effect and writes it
with its evidence (a ``BounceReport`` row and the ledger event it caused):

- a hard bounce (5.x.x) makes the address undeliverable at once
  (``undeliverable``, decision reason 4);
- a soft bounce (4.x.x) is recorded (``bounced``); when the policy's
  ``[bounces] soft_limit`` of them came within ``soft_window_days`` since the
  address last worked, the address becomes undeliverable;
- a complaint (a person pressed "this is spam") is their "no": an objection
  to marketing by email, or with ``[bounces] complaint = "unsubscribe"`` an
  unsubscribe from everything; the suppression follows as for any objection.

The address works again (``deliverable``) when its owner confirms a link
mailed to it (``note_address_works``) or staff say it was fixed
(``mark_address_fixed``). See docs/bounces.md and docs/rules.md X25.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from consent import ledger
from consent.models import ALL, BounceReport, ConsentEvent, EventKind
from consent.topics import COMPLAINT_UNSUBSCRIBE, current_policy
from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel.access import SYSTEM_ACTOR, Actor
from kernel.errors import N_, Conflict
from kernel.signals import decisions_changed
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"
BOUNCE_TYPES = (HARD, SOFT, COMPLAINT)
# The ledger sources of what returned mail records; reserved (no API body,
# import or form may name them, consent.projection.RESERVED_SOURCES).
BOUNCE_SOURCE = "bounce"
COMPLAINT_SOURCE = "complaint"
# The ledger source of staff's "address fixed".
ADDRESS_FIXED_NOTE = "address fixed"
# The effect of a bounce that happened before the address last worked again.
ADDRESS_FIXED_SINCE = "address_fixed_since"


@dataclass(frozen=True)
class BounceEvidence:
    """What came back, already tied to one of our messages and its contact."""

    contact_id: int
    type: str
    source: str
    status: str | None = None
    diagnostic: str | None = None
    message_id: str | None = None
    outbox_id: int | None = None
    campaign_id: int | None = None
    mail_kind: str | None = None
    matched_by: str | None = None
    occurred_at: datetime | None = None
    # What a repeat is known by: the returned Message-ID, else the report's own.
    report_key: str | None = None


@dataclass(frozen=True)
class BounceEffect:
    """What ``record_bounce_report`` did: ``effect`` is ``undeliverable``,
    ``soft_bounce`` (counted, not yet undeliverable), ``objection``,
    ``unsubscribed``, ``duplicate`` (this report was recorded before) or
    ``address_fixed_since`` (a bounce older than the address's last
    ``deliverable``: kept as evidence, no effect)."""

    effect: str
    contact_id: int
    report_id: int | None = None
    event_ids: tuple[int, ...] = ()


def record_bounce_report(evidence: BounceEvidence, at: datetime | None = None) -> BounceEffect:
    """Record one bounce or complaint and its effect on the decisions; commits.

    The same report twice (an MTA delivering it again, a mailbox poller that
    could not delete it) is recorded once: a second report of the same type
    for the same message of the same contact is a ``duplicate``. Raises
    NotFound for an unknown contact.
    """
    if evidence.type not in BOUNCE_TYPES:
        raise ValueError(f"bounce type must be one of {BOUNCE_TYPES}")
    now = at or utcnow()
    contact = crm.get_contact(evidence.contact_id)
    if _already_recorded(evidence):
        db.session.rollback()
        return BounceEffect("duplicate", contact.id)
    # A provider's timestamp is its word: never later than now.
    occurred = min(evidence.occurred_at or now, now)
    worked = _address_worked_at(contact.id) if evidence.type != COMPLAINT else None
    stale = worked is not None and occurred < worked
    report = BounceReport(
        contact_id=contact.id,
        type=evidence.type,
        source=evidence.source[:32],
        status=evidence.status,
        diagnostic=(evidence.diagnostic or None) and evidence.diagnostic[:500],  # type: ignore[index]
        message_id=evidence.message_id,
        outbox_id=evidence.outbox_id,
        campaign_id=evidence.campaign_id,
        mail_kind=evidence.mail_kind,
        matched_by=evidence.matched_by,
        report_key=evidence.report_key and evidence.report_key[:255],
        occurred_at=occurred,
        recorded_at=now,
    )
    db.session.add(report)
    db.session.flush()
    if stale:
        # Older than the last word that the address works (staff's "address
        # fixed", a confirmation by its owner): evidence only, no effect, so a
        # late or replayed provider event cannot undo the fix.
        log.info(
            "Bounce report %s for contact %s predates the address working again; no effect.",
            report.id,
            contact.id,
        )
        db.session.commit()
        return BounceEffect(ADDRESS_FIXED_SINCE, contact.id, report.id)
    note = _note(evidence)
    ref = f"bounce_report:{report.id}"
    events: list[int] = []
    if evidence.type == COMPLAINT:
        effect, events = _complaint(contact, ref, note)
    elif evidence.type == HARD:
        event = ledger.record(
            contact,
            EventKind.UNDELIVERABLE,
            actor=SYSTEM_ACTOR,
            source=BOUNCE_SOURCE,
            at=occurred,
            channel="email",
            source_ref=ref,
            note=note,
        )
        effect, events = "undeliverable", [event.id]
    else:
        event = ledger.record(
            contact,
            EventKind.BOUNCED,
            actor=SYSTEM_ACTOR,
            source=BOUNCE_SOURCE,
            at=occurred,
            channel="email",
            source_ref=ref,
            note=note,
        )
        effect, events = "soft_bounce", [event.id]
        if contact.hard_bounced_at is None and _soft_limit_reached(contact.id, occurred):
            policy = current_policy().bounces
            limit_note = (
                f"{policy.soft_limit} soft bounces within {policy.soft_window.days} days; "
                f"last: {note}"
            )
            event = ledger.record(
                contact,
                EventKind.UNDELIVERABLE,
                actor=SYSTEM_ACTOR,
                source=BOUNCE_SOURCE,
                at=occurred,
                channel="email",
                source_ref=ref,
                note=limit_note[:1000],
            )
            effect, events = "undeliverable", [*events, event.id]
    report.event_id = events[-1] if events else None
    db.session.commit()
    if events:
        decisions_changed.send(signal_sender(), contact_id=contact.id, kind=effect)
    return BounceEffect(effect, contact.id, report.id, tuple(events))


def _already_recorded(evidence: BounceEvidence) -> bool:
    """A report of the same type for the same contact was recorded before: by
    the exact message a token or Message-ID tied both to, or by the report's
    key (the returned Message-ID, else the report's own) whatever matched it,
    so that a redelivered DSN matched by the address counts once too."""
    same: list[sa.ColumnElement[bool]] = []
    if evidence.matched_by in ("verp", "message_id") and evidence.outbox_id is not None:
        same.append(
            sa.and_(
                BounceReport.outbox_id == evidence.outbox_id,
                BounceReport.matched_by.in_(("verp", "message_id")),
            )
        )
    if evidence.report_key:
        same.append(BounceReport.report_key == evidence.report_key[:255])
    if not same:
        return False
    return (
        db.session.scalar(
            sa.select(BounceReport.id)
            .where(
                BounceReport.contact_id == evidence.contact_id,
                BounceReport.type == evidence.type,
                sa.or_(*same),
            )
            .limit(1)
        )
        is not None
    )


def _complaint(contact: Contact, ref: str, note: str) -> tuple[str, list[int]]:
    """GDPR art. 21(3): "this is spam" is the person's "no" to email marketing.
    The policy file may make it a "no" to everything (an unsubscribe from
    every topic on every channel); either way the suppression follows as for
    any objection or unsubscribe (R22).

    An objection to email already in force is not written again (as the
    API's repeated objection, ``consent.services.record_objection``): the
    report is kept as evidence, its "do not contact" entry restated, and no
    decision changes (R11: the first objection stands)."""
    if current_policy().bounces.complaint == COMPLAINT_UNSUBSCRIBE:
        event = ledger.record(
            contact,
            EventKind.UNSUBSCRIBED,
            actor=SYSTEM_ACTOR,
            source=COMPLAINT_SOURCE,
            topic=ALL,
            channel=ALL,
            source_ref=ref,
            note=note,
        )
        return "unsubscribed", [event.id]
    in_force = ledger.objection_in_force(contact.id, "email")
    if in_force is not None:
        _existing, email = in_force
        ledger.keep_objection_refusal(
            contact.id,
            email,
            channel="email",
            actor=SYSTEM_ACTOR,
            source=COMPLAINT_SOURCE,
            at=utcnow(),
        )
        return "objection", []
    event, _email = ledger.record_objection(
        contact.id,
        actor=SYSTEM_ACTOR,
        source=COMPLAINT_SOURCE,
        channel="email",
        note=f"{note} ({ref})"[:1000],
    )
    return "objection", [event.id]


def _address_worked_at(contact_id: int) -> datetime | None:
    """When the address last worked again (the latest ``deliverable`` event)."""
    return db.session.scalar(
        sa.select(sa.func.max(ConsentEvent.occurred_at)).where(
            ConsentEvent.contact_id == contact_id,
            ConsentEvent.kind == EventKind.DELIVERABLE.value,
        )
    )


def _soft_limit_reached(contact_id: int, at: datetime) -> bool:
    """Whether the soft bounces since the address last worked, within the
    policy's window, reached its limit (this one counted)."""
    policy = current_policy().bounces
    since = at - policy.soft_window
    worked = _address_worked_at(contact_id)
    if worked is not None:
        since = max(since, worked)
    count = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(BounceReport)
        .where(
            BounceReport.contact_id == contact_id,
            BounceReport.type == SOFT,
            BounceReport.occurred_at > since,
            BounceReport.occurred_at <= at,
        )
    )
    return int(count or 0) >= policy.soft_limit


def _note(evidence: BounceEvidence) -> str:
    """The evidence as the timeline shows it: type, status, source, diagnostic,
    the message and campaign it was about."""
    parts = [evidence.type if evidence.type == COMPLAINT else f"{evidence.type} bounce"]
    if evidence.status:
        parts.append(evidence.status)
    parts.append(f"via {evidence.source}")
    if evidence.mail_kind:
        parts.append(f"{evidence.mail_kind} mail")
    if evidence.campaign_id is not None:
        parts.append(f"campaign {evidence.campaign_id}")
    if evidence.message_id:
        parts.append(f"message {evidence.message_id}")
    text = ", ".join(parts)
    if evidence.diagnostic:
        text += f": {evidence.diagnostic}"
    return text[:1000]


def has_unsettled_bounces(contact: Contact) -> bool:
    """Whether the address is undeliverable, or soft bounces count against it."""
    if contact.hard_bounced_at is not None:
        return True
    worked = db.session.scalar(
        sa.select(sa.func.max(ConsentEvent.occurred_at)).where(
            ConsentEvent.contact_id == contact.id,
            ConsentEvent.kind == EventKind.DELIVERABLE.value,
        )
    )
    soft = sa.select(BounceReport.id).where(
        BounceReport.contact_id == contact.id, BounceReport.type == SOFT
    )
    if worked is not None:
        soft = soft.where(BounceReport.occurred_at > worked)
    return db.session.scalar(soft.limit(1)) is not None


def note_address_works(
    contact: Contact,
    *,
    actor: Actor,
    source: str,
    note: str,
    at: datetime | None = None,
    source_ref: str | None = None,
) -> ConsentEvent | None:
    """The address is known to work again: record ``deliverable`` when it was
    undeliverable or soft bounces counted against it. Does not commit."""
    if not has_unsettled_bounces(contact):
        return None
    return ledger.record(
        contact,
        EventKind.DELIVERABLE,
        actor=actor,
        source=source,
        at=at,
        channel="email",
        note=note,
        source_ref=source_ref,
    )


def mark_address_fixed(actor: Actor, contact_id: int, note: str | None = None) -> ConsentEvent:
    """Staff's "address fixed": the address bounced, and staff know it works now
    (the person said so, a typo was corrected). Clears ``undeliverable`` and the
    soft count; commits. Conflict ``not_bouncing`` when nothing was bouncing."""
    contact = crm.get_contact(contact_id)
    text = ADDRESS_FIXED_NOTE + (f": {note}" if note else "")
    event = note_address_works(contact, actor=actor, source="staff", note=text[:1000])
    if event is None:
        db.session.rollback()
        raise Conflict(N_("This address is not bouncing."), code="not_bouncing")
    crm.audit(actor, "address.fixed", contact_id)
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind=EventKind.DELIVERABLE.value)
    return event


def reports_for(contact_id: int) -> list[BounceReport]:
    """A contact's bounce reports, newest first."""
    return list(
        db.session.scalars(
            sa.select(BounceReport)
            .where(BounceReport.contact_id == contact_id)
            .order_by(BounceReport.occurred_at.desc(), BounceReport.id.desc())
        )
    )
