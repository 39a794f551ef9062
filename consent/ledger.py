"""Appending to the consent ledger and folding each event into the projection.

``record`` is the only writer of ``PermissionState``: the event and its effect
are flushed together, in the caller's transaction, so the projection can never
disagree with the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from consent.evidence import Evidence
from consent.models import ALL, ConsentEvent, EventKind, PermissionState
from consent.projection import (
    BASIS_COLUMNS,
    BatchEvent,
    States,
    fold,
    fold_granted_basis,
    objection_upsert,
)
from consent.suppression import (
    address_hash,
    keep_scoped_refusal,
    own_suppression,
    suppressed_hashes,
)
from crm import changes as change_feed
from crm.models import Contact
from crm.services import get_contact, hold_contact, note_interaction, refusal_while_restricted
from extensions import db
from kernel.access import Actor
from kernel.database import take_turns
from kernel.signals import ledger_written
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

# GDPR art. 18: what the ledger takes for a contact whose processing is
# restricted. The person's "no" always (an objection, an unsubscribe, the
# suppression that goes with them), what only narrows processing (a bounce, a
# basis ending) and the restriction's own events; never a yes, a new basis or
# the lift of a "no" (docs/rules.md R20).
TAKEN_WHILE_RESTRICTED = frozenset(
    {
        EventKind.RESTRICTED,
        EventKind.UNRESTRICTED,
        EventKind.OBJECTED,
        EventKind.UNSUBSCRIBED,
        EventKind.WITHDRAWN,
        EventKind.SUPPRESSED,
        EventKind.UNDELIVERABLE,
        EventKind.BOUNCED,
        EventKind.BASIS_ENDED,
    }
)


def refuses_everything(kind: EventKind, topic: str, channel: str) -> bool:
    """Whether an event is the person's "no" to all marketing: an unsubscribe or
    withdrawal from every topic on every channel, or an objection on every
    channel. It puts the address on the suppression list (R22)."""
    if kind is EventKind.OBJECTED:
        return channel == ALL
    return kind in (EventKind.UNSUBSCRIBED, EventKind.WITHDRAWN) and topic == channel == ALL


# The suppression entry's reason when an objection put the address on the list.
OBJECTION_NOTE = "objection"


def _suppression_note(kind: EventKind) -> str:
    return OBJECTION_NOTE if kind is EventKind.OBJECTED else "unsubscribed"


# X16: a "no" is honoured by the suppression entry alone (R22), never by keeping
# the rest of the person's data longer; and the address coming back while
# suppressed is nothing the person did.
NOT_INTERACTIONS = frozenset(
    {
        EventKind.OBJECTED,
        EventKind.UNSUBSCRIBED,
        EventKind.WITHDRAWN,
        EventKind.SUPPRESSED,
        EventKind.CREATED_WHILE_SUPPRESSED,
    }
)
# Sources whose "person" is not shown to be the person: a form post, which anyone
# can make with any address until its confirmation, and a one-click POST
# (RFC 8058), which a mailbox provider's machine makes on its own.
UNPROVEN_SOURCES = frozenset({"form", "one_click"})


def is_interaction(actor: Actor, received_via: str | None, kind: EventKind, source: str) -> bool:
    """Whether a consent event is an interaction of the contact, which keeps its
    data (retention counts from the last one, R13, R14, X16): the person acted
    through something the service verified (a confirmation of the emailed
    link, the preference centre, a link in an email) or told staff (received
    by phone, letter, ...). A "no" (``NOT_INTERACTIONS``), an unconfirmed form
    post, a one-click POST, imports, CRM syncs and staff entries on their own
    are not."""
    if kind in NOT_INTERACTIONS:
        return False
    if received_via is not None:
        return True
    return actor.kind == "person" and source not in UNPROVEN_SOURCES


def _written(contact_ids: tuple[int, ...], kind: EventKind, at: datetime | None = None) -> None:
    """What every write to the ledger tells, inside its transaction: the change
    feed gets a ``contact.decisions_changed`` item per contact (one per
    transaction, ``crm.changes.record``) and, for a bounce, a
    ``contact.undeliverable`` one; then ``ledger_written`` is sent."""
    change_feed.record(change_feed.DECISIONS_CHANGED, contact_ids)
    if kind is EventKind.UNDELIVERABLE:
        change_feed.record(change_feed.CONTACT_UNDELIVERABLE, contact_ids)
    ledger_written.send(signal_sender(), contact_ids=contact_ids, at=at)


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
    """Append one event and fold it into the projection. Does not commit.

    Raises Conflict ``restricted`` for an event a restricted contact may not
    get (``TAKEN_WHILE_RESTRICTED``): the use cases answer before they get
    here, and this is the line none of them can forget.
    """
    # R11: a marketing send holds this row lock from its last policy check until
    # SMTP accepted the message (mailing.delivery.deliver); a consent change
    # waits for it, so no email leaves after an objection has committed.
    # (SQLite has no row locks; there every writer already waits for the one
    # write lock a send holds.)
    held = hold_contact(contact.id)
    # The lock's read sees a restriction committed meanwhile; the object, one
    # this transaction made and has not flushed yet.
    restricted = held.restricted_at is not None or contact.restricted_at is not None
    if restricted and kind not in TAKEN_WHILE_RESTRICTED:
        raise refusal_while_restricted()
    now = utcnow()
    event = ConsentEvent(
        contact_id=contact.id,
        **_event_columns(
            kind,
            actor=actor,
            source=source,
            recorded_at=now,
            occurred_at=at or now,
            topic=topic,
            channel=channel,
            basis=basis,
            interest_kind=interest_kind,
            evidence=evidence,
            source_ref=source_ref,
            received_via=received_via,
            note=note,
        ),
    )
    db.session.add(event)
    db.session.flush()
    if is_interaction(actor, received_via, kind, source):
        note_interaction(contact, event.occurred_at)
    fold(contact, event)
    _written((contact.id,), kind)
    if refuses_everything(kind, topic, channel) and own_suppression(contact.email) is None:
        # R22: whichever use case records a "no" to everything, the address's
        # keyed hash goes on the suppression list in the same transaction, so
        # that it outlives erasure and purges. Its own entry, even when its
        # mailbox's blocks it already: it must outlive a lift of the mailbox's.
        record(
            contact,
            EventKind.SUPPRESSED,
            actor=actor,
            source=source,
            at=event.occurred_at,
            evidence=evidence,
            received_via=received_via,
            note=_suppression_note(kind),
        )
    return event


def record_objection(
    contact_id: int,
    *,
    actor: Actor,
    source: str,
    channel: str = ALL,
    received_via: str | None = None,
    note: str | None = None,
) -> tuple[ConsentEvent, str]:
    """``record`` for an objection, in three statements and no ORM flush.

    Objections are the write that must never be slow or fail under load
    (R11). The contact is held with the send's lock while the interaction is
    noted; the event is inserted and folded by one upsert exactly as ``consent.projection.fold``
    folds an objection (tests/consent/test_ledger_batch.py compares the two).
    Returns the event (not in the session) and the contact's address. Does
    not commit; raises NotFound for an unknown contact.
    """
    now = utcnow()
    email = hold_contact(
        contact_id, now if is_interaction(actor, received_via, EventKind.OBJECTED, source) else None
    ).email
    columns = _event_columns(
        EventKind.OBJECTED,
        actor=actor,
        source=source,
        recorded_at=now,
        occurred_at=now,
        channel=channel,
        received_via=received_via,
        note=note,
    )
    # Core statements on the session's connection: the ORM's execution layer
    # was a third of an objection's CPU, and there is nothing of it to flush.
    connection = db.session.connection()
    event_id = connection.execute(_INSERT_EVENT, {"contact_id": contact_id, **columns}).scalar_one()
    connection.execute(
        objection_upsert(),
        {"contact_id": contact_id, "channel": channel, "at": now, "event_id": event_id},
    )
    _written((contact_id,), EventKind.OBJECTED)
    keep_objection_refusal(
        contact_id,
        email,
        channel=channel,
        actor=actor,
        source=source,
        at=now,
        received_via=received_via,
    )
    return ConsentEvent(id=event_id, contact_id=contact_id, **columns), email


def keep_objection_refusal(
    contact_id: int,
    email: str,
    *,
    channel: str,
    actor: Actor,
    source: str,
    at: datetime,
    received_via: str | None = None,
) -> None:
    """R22: the objection outlives the contact, as ``fold`` and ``record`` keep
    it: the "do not contact" entry of a channel's objection, or the address on
    the suppression list for an objection to every channel (recorded as a
    ``suppressed`` event), unless it is there already. Does not commit."""
    if channel != ALL:
        keep_scoped_refusal(email, EventKind.OBJECTED.value, ALL, channel, at)
    elif own_suppression(email) is None:
        record(
            get_contact(contact_id),
            EventKind.SUPPRESSED,
            actor=actor,
            source=source,
            at=at,
            received_via=received_via,
            note=_suppression_note(EventKind.OBJECTED),
        )


def objection_in_force(contact_id: int, channel: str) -> tuple[ConsentEvent, str] | None:
    """The event of the objection on ``channel`` (``ALL``: to every channel)
    already in force for the contact, with its address; None when there is none.

    The contact is held first (the lock every consent change and every send
    takes), so two identical objections at once find each other: the second
    waits for the first's commit and then sees it. Exactly this channel: an
    objection to every channel does not make one to phone "already so" (the
    emailed double opt-in may lift the first and never the second, X6).
    Raises NotFound for an unknown contact. Does not commit.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        # SQLite ignores FOR UPDATE: take its one write lock now, so that the
        # read below sees what an objection sent at the same moment committed.
        take_turns(f"objection:{contact_id}", Contact.__table__)
    email = hold_contact(contact_id).email
    event_id = db.session.scalar(
        sa.select(PermissionState.objection_event_id).where(
            PermissionState.contact_id == contact_id,
            PermissionState.topic == ALL,
            PermissionState.channel == channel,
            PermissionState.objected_since.is_not(None),
        )
    )
    event = db.session.get(ConsentEvent, event_id) if event_id is not None else None
    return (event, email) if event is not None else None


_INSERT_EVENT = sa.insert(ConsentEvent.__table__).returning(ConsentEvent.__table__.c.id)


class _ContactRef(Protocol):
    id: int
    email: str


# Kinds whose effect is on the projection alone, so that a batch of them can
# be folded without loading each contact (imports, syncs).
BATCH_KINDS = frozenset(
    {
        EventKind.REQUESTED,
        EventKind.CONFIRMED,
        EventKind.WITHDRAWN,
        EventKind.UNSUBSCRIBED,
        EventKind.OBJECTED,
        EventKind.BASIS_GRANTED,
        EventKind.BASIS_ENDED,
        EventKind.CREATED_WHILE_SUPPRESSED,
        # Its effect is on the suppression list, by the address alone.
        EventKind.SUPPRESSED,
    }
)


def _event_columns(
    kind: EventKind,
    *,
    actor: Actor,
    source: str,
    recorded_at: datetime,
    occurred_at: datetime,
    topic: str = ALL,
    channel: str = ALL,
    basis: str | None = None,
    interest_kind: str | None = None,
    evidence: Evidence | None = None,
    source_ref: str | None = None,
    received_via: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """The columns of one consent_event row but its contact, leaving out the
    empty ones: shared by ``record``, ``record_many`` and ``record_set``."""
    evidence = evidence or Evidence()
    columns = {
        "kind": kind.value,
        "topic": topic,
        "channel": channel,
        "basis": basis,
        "interest_kind": interest_kind,
        "occurred_at": occurred_at,
        "recorded_at": recorded_at,
        "source": source,
        "source_ref": source_ref,
        "recorded_by": actor.label,
        "received_via": received_via,
        "ip_address": evidence.ip_address,
        "user_agent": evidence.user_agent,
        "policy_version": evidence.policy_version,
        "wording_hash": evidence.wording_hash,
        "form_id": evidence.form_id,
        "page_url": evidence.page_url,
        "language": evidence.language,
        "outbox_id": evidence.outbox_id,
        "campaign_id": evidence.campaign_id,
        "note": note,
    }
    return {name: value for name, value in columns.items() if value is not None}


def record_many(
    contacts: Sequence[_ContactRef],
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
    note: str | None = None,
) -> list[int]:
    """The same event for many contacts: one multi-row INSERT, one SELECT of the
    projection, folded exactly as ``record`` folds. Does not commit.

    For the kinds in ``BATCH_KINDS`` only; returns the new event ids in order.
    """
    if kind not in BATCH_KINDS:
        raise ValueError(f"{kind} changes the contact itself; use record() one by one.")
    if not contacts:
        return []
    now = utcnow()
    occurred_at = at or now
    values = _event_columns(
        kind,
        actor=actor,
        source=source,
        recorded_at=now,
        occurred_at=occurred_at,
        topic=topic,
        channel=channel,
        basis=basis,
        interest_kind=interest_kind,
        evidence=evidence,
        source_ref=source_ref,
        note=note,
    )
    if len({c.id for c in contacts}) != len(contacts):
        raise ValueError("record_many takes each contact once.")
    table = ConsentEvent.__table__
    # A plain executemany (no RETURNING) is the fast path on both databases;
    # the ids are read back by contact, which appears once per call.
    contact_ids = [c.id for c in contacts]
    db.session.execute(sa.insert(table), [{"contact_id": cid, **values} for cid in contact_ids])
    event_ids: dict[int, int] = {}
    for start in range(0, len(contact_ids), 5_000):
        chunk = contact_ids[start : start + 5_000]
        event_ids.update(
            db.session.execute(
                sa.select(table.c.contact_id, sa.func.max(table.c.id))
                .where(
                    table.c.contact_id.in_(chunk),
                    table.c.kind == kind.value,
                    table.c.recorded_at == now,
                    table.c.recorded_by == actor.label,
                )
                .group_by(table.c.contact_id)
            ).all()
        )
    ids = [event_ids[c.id] for c in contacts]
    states = States.of_contacts(event_ids.keys())
    for contact, event_id in zip(contacts, ids, strict=True):
        event = BatchEvent(
            id=event_id,
            kind=kind.value,
            topic=topic,
            channel=channel,
            occurred_at=occurred_at,
            source=source,
            interest_kind=interest_kind,
            note=note,
            recorded_by=actor.label,
            source_ref=source_ref,
        )
        fold(contact, event, states)  # type: ignore[arg-type]
    states.insert_new()
    _written(tuple(contact_ids), kind)
    if refuses_everything(kind, topic, channel):
        # As ``record``: each address not yet on the suppression list goes on it.
        listed = suppressed_hashes(address_hash(c.email) for c in contacts)
        unlisted = [c for c in contacts if address_hash(c.email) not in listed]
        record_many(
            unlisted,
            EventKind.SUPPRESSED,
            actor=actor,
            source=source,
            at=occurred_at,
            evidence=evidence,
            note=_suppression_note(kind),
        )
    return ids


# Kinds ``record_set`` folds in SQL: their effect is one blanket projection row.
SET_KINDS = frozenset({EventKind.BASIS_GRANTED, EventKind.CREATED_WHILE_SUPPRESSED})


def record_set(
    contacts: sa.Select[Any],
    kind: EventKind,
    *,
    actor: Actor,
    source: str,
    at: datetime | None = None,
    interest_kind: str | None = None,
    basis: str | None = None,
    source_ref: str | None = None,
    note: str | None = None,
    recorded_at: datetime | None = None,
) -> list[int]:
    """The same blanket event for every contact a query names, written and folded
    with a fixed number of statements, whatever the number of contacts: the
    ledger's path for imports of a million rows. Does not commit.

    ``contacts`` selects contact ids, each once. Only the kinds in
    ``SET_KINDS``; the projection ends up exactly as ``record`` leaves it
    (tests/consent/test_ledger_batch.py). Returns the contact ids.
    ``recorded_at`` (default now) is the moment of the caller's transaction:
    contacts it created at that moment are not stamped ``updated_at`` again.
    """
    if kind not in SET_KINDS:
        raise ValueError(f"{kind} is not folded in SQL; use record_many() or record().")
    column = BASIS_COLUMNS.get(interest_kind or "")
    if kind is EventKind.BASIS_GRANTED and column is None:
        raise ValueError("record_set grants the customer or industry_list basis only.")
    contact_ids: list[int] = list(db.session.scalars(contacts))
    if not contact_ids:
        return []
    if len(set(contact_ids)) != len(contact_ids):
        raise ValueError("record_set takes each contact once.")
    now = recorded_at or utcnow()
    occurred_at = at or now
    events = ConsentEvent.__table__
    chosen = contacts.subquery()
    # Every id this call inserts is above the highest one already written, so
    # the fold below finds its events by a range of the primary key.
    before = db.session.scalar(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0)))
    fixed = _event_columns(
        kind,
        actor=actor,
        source=source,
        recorded_at=now,
        occurred_at=occurred_at,
        basis=basis,
        interest_kind=interest_kind,
        source_ref=source_ref,
        note=note,
    )
    db.session.execute(
        sa.insert(events).from_select(
            ["contact_id", *fixed],
            sa.select(
                chosen.c[0],
                *(sa.literal(value, events.c[key].type) for key, value in fixed.items()),
            ),
        )
    )
    _written(tuple(contact_ids), kind, now)
    if kind is not EventKind.BASIS_GRANTED:
        return contact_ids  # CREATED_WHILE_SUPPRESSED only documents.
    assert column is not None
    # This call's events, one per contact: above ``before``, with its stamp.
    these = sa.select(events.c.contact_id, events.c.id).where(
        events.c.id > before,
        events.c.kind == kind.value,
        events.c.recorded_at == now,
        events.c.recorded_by == actor.label,
    )
    fold_granted_basis(these, column, occurred_at)
    return contact_ids
