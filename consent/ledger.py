"""Appending to the consent ledger and folding each event into the projection.

``record`` is the only writer of ``PermissionState``: the event and its effect
are flushed together, in the caller's transaction, so the projection can never
disagree with the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from consent.models import ALL, ConsentEvent, EventKind, InterestKind, PermissionState
from consent.suppression import lift_suppression, suppress
from consent.webhooks import note_decision_change
from crm.access import Actor
from crm.models import Contact, utcnow
from crm.services import note_interaction
from extensions import db

# Only the person, proving the address through a double opt-in link, may undo
# an unsubscribe or an objection (GDPR art. 21; DESIGN.md section 5). Consents
# synced by a CRM, imported or entered by staff never do.
PERSON_VERIFIED_SOURCES = frozenset({"double_opt_in"})


@dataclass(frozen=True)
class Evidence:
    """How a consent event was given (R5, R23)."""

    ip_address: str | None = None
    user_agent: str | None = None
    policy_version: str | None = None
    wording_hash: str | None = None
    form_id: str | None = None
    page_url: str | None = None
    language: str | None = None


def is_interaction(actor: Actor, received_via: str | None) -> bool:
    """Whether a consent event is an interaction of the contact, which keeps its
    data (retention counts from the last one, R13, R14): the person acted
    (a form, a confirmation, the preference centre, an unsubscribe or
    objection link) or told staff (received by phone, letter, ...). Imports,
    CRM syncs and staff entries on their own are not."""
    return actor.kind == "person" or received_via is not None


def record(
    contact: Contact,
    kind: EventKind,
    *,
    actor: Actor,
    source: str,
    at: datetime | None = None,
    topic: str = ALL,
    channel: str = ALL,
    basis: str | None = None,
    interest_kind: str | None = None,
    evidence: Evidence | None = None,
    source_ref: str | None = None,
    received_via: str | None = None,
    note: str | None = None,
) -> ConsentEvent:
    """Append one event and fold it into the projection. Does not commit."""
    # R11: a marketing send holds this row lock from its last policy check until
    # SMTP accepted the message (mailing.services.deliver); a consent change
    # waits for it, so no email leaves after an objection has committed.
    # (SQLite has no row locks; there every writer already waits for the one
    # write lock a send holds.)
    db.session.execute(
        sa.select(Contact.id).where(Contact.id == contact.id).with_for_update(key_share=True)
    )
    now = utcnow()
    evidence = evidence or Evidence()
    event = ConsentEvent(
        contact_id=contact.id,
        kind=kind.value,
        topic=topic,
        channel=channel,
        basis=basis,
        interest_kind=interest_kind,
        occurred_at=at or now,
        recorded_at=now,
        source=source,
        source_ref=source_ref,
        recorded_by=actor.label,
        received_via=received_via,
        ip_address=evidence.ip_address,
        user_agent=evidence.user_agent,
        policy_version=evidence.policy_version,
        wording_hash=evidence.wording_hash,
        form_id=evidence.form_id,
        page_url=evidence.page_url,
        language=evidence.language,
        note=note,
    )
    db.session.add(event)
    db.session.flush()
    if is_interaction(actor, received_via):
        note_interaction(contact, event.occurred_at)
    _fold(contact, event)
    note_decision_change(db.session(), contact.id)
    return event


def _state(contact_id: int, topic: str, channel: str) -> PermissionState:
    row = db.session.get(PermissionState, (contact_id, topic, channel))
    if row is None:
        row = PermissionState(contact_id=contact_id, topic=topic, channel=channel)
        db.session.add(row)
    return row


def _blanket_rows(contact_id: int) -> list[PermissionState]:
    return list(
        db.session.scalars(
            sa.select(PermissionState).where(
                PermissionState.contact_id == contact_id, PermissionState.topic == ALL
            )
        )
    )


def _fold(contact: Contact, event: ConsentEvent) -> None:
    kind = EventKind(event.kind)
    at = event.occurred_at
    if kind is EventKind.REQUESTED:
        row = _state(contact.id, event.topic, event.channel)
        if row.consent_since is None:
            row.pending_since = at
    elif kind is EventKind.CONFIRMED:
        row = _state(contact.id, event.topic, event.channel)
        verified = event.source in PERSON_VERIFIED_SOURCES
        blanket_blocks = any(
            r.unsubscribed_since or r.objected_since for r in _blanket_rows(contact.id)
        )
        if not verified and (row.unsubscribed_since is not None or blanket_blocks):
            # The ledger keeps the claim; the projection keeps the person's "no".
            return
        row.consent_since = at
        row.consent_event_id = event.id
        row.pending_since = None
        row.unsubscribed_since = None
    elif kind in (EventKind.WITHDRAWN, EventKind.UNSUBSCRIBED):
        row = _state(contact.id, event.topic, event.channel)
        row.unsubscribed_since = at
        row.consent_since = None
        row.consent_event_id = None
        row.pending_since = None
    elif kind is EventKind.OBJECTED:
        row = _state(contact.id, ALL, event.channel)
        if row.objected_since is None:
            row.objected_since = at
            row.objection_event_id = event.id
    elif kind is EventKind.OBJECTION_LIFTED:
        # The objection becomes an unsubscribe from everything: only topics the
        # person confirms afresh open again; legitimate interest stays closed.
        # It dates from the objection, so a confirmation recorded in the same
        # moment as the lift (a double opt-in) is newer and opens its topics.
        for row in _blanket_rows(contact.id):
            if row.objected_since is not None:
                row.unsubscribed_since = max(
                    row.unsubscribed_since or row.objected_since, row.objected_since
                )
                row.objected_since = None
                row.objection_event_id = None
    elif kind is EventKind.BASIS_GRANTED:
        row = _state(contact.id, ALL, ALL)
        if event.interest_kind == InterestKind.CUSTOMER and row.customer_since is None:
            row.customer_since = at
            row.basis_event_id = event.id
        elif event.interest_kind == InterestKind.INDUSTRY_LIST and row.industry_list_since is None:
            row.industry_list_since = at
            row.basis_event_id = event.id
    elif kind is EventKind.BASIS_ENDED:
        row = _state(contact.id, ALL, ALL)
        if event.interest_kind == InterestKind.CUSTOMER:
            row.customer_since = None
        elif event.interest_kind == InterestKind.INDUSTRY_LIST:
            row.industry_list_since = None
    elif kind is EventKind.RESTRICTED:
        contact.restricted_at = contact.restricted_at or at
    elif kind is EventKind.UNRESTRICTED:
        contact.restricted_at = None
    elif kind is EventKind.UNDELIVERABLE:
        contact.hard_bounced_at = contact.hard_bounced_at or at
    elif kind is EventKind.SUPPRESSED:
        suppress(contact.email, reason=event.note or "suppressed")
    elif kind is EventKind.UNSUPPRESSED:
        lift_suppression(contact.email)
    # CREATED_WHILE_SUPPRESSED only documents; the suppression entry already blocks.
