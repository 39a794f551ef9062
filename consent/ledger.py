"""Appending to the consent ledger and folding each event into the projection.

``record`` is the only writer of ``PermissionState``: the event and its effect
are flushed together, in the caller's transaction, so the projection can never
disagree with the ledger.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from consent.models import ALL, ConsentEvent, EventKind, InterestKind, PermissionState
from consent.suppression import lift_suppression, suppress
from crm.models import Contact
from crm.services import hold_contact, note_interaction
from extensions import db
from kernel.access import Actor
from kernel.signals import ledger_written
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

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
    hold_contact(contact.id)
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
    if is_interaction(actor, received_via):
        note_interaction(contact, event.occurred_at)
    _fold(contact, event)
    ledger_written.send(signal_sender(), contact_ids=(contact.id,))
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
    noted; the event is inserted and folded by one upsert exactly as ``_fold``
    folds an objection (tests/consent/test_ledger_batch.py compares the two).
    Returns the event (not in the session) and the contact's address. Does
    not commit; raises NotFound for an unknown contact.
    """
    now = utcnow()
    email = hold_contact(contact_id, now if is_interaction(actor, received_via) else None)
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
        _fold_objection(),
        {"contact_id": contact_id, "channel": channel, "at": now, "event_id": event_id},
    )
    ledger_written.send(signal_sender(), contact_ids=(contact_id,))
    return ConsentEvent(id=event_id, contact_id=contact_id, **columns), email


_INSERT_EVENT = sa.insert(ConsentEvent.__table__).returning(ConsentEvent.__table__.c.id)
_FOLD_OBJECTION: dict[str, sa.Insert] = {}


def _fold_objection() -> sa.Insert:
    """The upsert that folds one objection, built once per dialect."""
    dialect = db.session.get_bind().dialect.name
    if dialect not in _FOLD_OBJECTION:
        states = PermissionState.__table__
        upsert = _insert_for_dialect(states)
        _FOLD_OBJECTION[dialect] = upsert.values(
            contact_id=sa.bindparam("contact_id"),
            topic=ALL,
            channel=sa.bindparam("channel"),
            objected_since=sa.bindparam("at", type_=states.c.objected_since.type),
            objection_event_id=sa.bindparam("event_id"),
        ).on_conflict_do_update(
            index_elements=["contact_id", "topic", "channel"],
            set_={
                "objected_since": upsert.excluded.objected_since,
                "objection_event_id": upsert.excluded.objection_event_id,
            },
            # As _fold: the first objection stands; a repeated one is only recorded.
            where=states.c.objected_since.is_(None),
        )
    return _FOLD_OBJECTION[dialect]


def _insert_for_dialect(table: sa.Table) -> Any:
    """INSERT with ON CONFLICT, which PostgreSQL and SQLite spell alike."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class _States:
    """The projection rows ``_fold`` reads and writes.

    ``record`` reads them from the database one at a time; ``record_many``
    preloads every row of its contacts with one SELECT and keeps new ones here,
    so that folding a batch costs no query per event.
    """

    def __init__(self, preloaded: Iterable[PermissionState] | None = None) -> None:
        self._cached = preloaded is not None
        self._rows: dict[tuple[int, str, str], PermissionState | _NewState] = {
            (r.contact_id, r.topic, r.channel): r for r in preloaded or ()
        }
        self._new: list[_NewState] = []

    @classmethod
    def of_contacts(cls, contact_ids: Collection[int]) -> _States:
        rows = (
            db.session.scalars(
                sa.select(PermissionState).where(PermissionState.contact_id.in_(contact_ids))
            )
            if contact_ids
            else ()
        )
        return cls(list(rows))

    def get(self, contact_id: int, topic: str, channel: str) -> PermissionState:
        key = (contact_id, topic, channel)
        row = self._rows.get(key)
        if row is None and not self._cached:
            row = db.session.get(PermissionState, key)
        if row is None:
            if self._cached:
                # New rows of a batch are inserted together by insert_new().
                row = _NewState(contact_id=contact_id, topic=topic, channel=channel)
                self._new.append(row)
            else:
                row = PermissionState(contact_id=contact_id, topic=topic, channel=channel)
                db.session.add(row)
        self._rows[key] = row
        return row  # type: ignore[return-value]

    def insert_new(self) -> None:
        # One executemany per shape of row, leaving out the NULL columns: fewer
        # parameters to process, and the same rows.
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in self._new:
            values = {k: v for k, v in vars(row).items() if v is not None}
            shapes.setdefault(tuple(values), []).append(values)
        for rows in shapes.values():
            db.session.execute(sa.insert(PermissionState.__table__), rows)
        self._new.clear()

    def blanket(self, contact_id: int) -> list[PermissionState]:
        if not self._cached:
            return list(
                db.session.scalars(
                    sa.select(PermissionState).where(
                        PermissionState.contact_id == contact_id, PermissionState.topic == ALL
                    )
                )
            )
        return [
            row  # type: ignore[misc]
            for (cid, topic, _), row in self._rows.items()
            if cid == contact_id and topic == ALL
        ]


class _NewState:
    """A projection row not yet in the database: the columns of PermissionState."""

    _EMPTY = dict.fromkeys(c.key for c in PermissionState.__table__.columns)

    def __init__(self, contact_id: int, topic: str, channel: str) -> None:
        self.__dict__.update(self._EMPTY)
        self.contact_id = contact_id
        self.topic = topic
        self.channel = channel


@dataclass(frozen=True)
class _BatchEvent:
    """What ``_fold`` reads of an event inserted by ``record_many``."""

    id: int
    kind: str
    topic: str
    channel: str
    occurred_at: datetime
    source: str
    interest_kind: str | None
    note: str | None


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
    states = _States.of_contacts(event_ids.keys())
    for contact, event_id in zip(contacts, ids, strict=True):
        event = _BatchEvent(
            id=event_id,
            kind=kind.value,
            topic=topic,
            channel=channel,
            occurred_at=occurred_at,
            source=source,
            interest_kind=interest_kind,
            note=note,
        )
        _fold(contact, event, states)  # type: ignore[arg-type]
    states.insert_new()
    ledger_written.send(signal_sender(), contact_ids=tuple(contact_ids))
    return ids


# Kinds ``record_set`` folds in SQL: their effect is one blanket projection row.
SET_KINDS = frozenset({EventKind.BASIS_GRANTED, EventKind.CREATED_WHILE_SUPPRESSED})
_BASIS_COLUMNS = {
    InterestKind.CUSTOMER.value: "customer_since",
    InterestKind.INDUSTRY_LIST.value: "industry_list_since",
}


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
) -> list[int]:
    """The same blanket event for every contact a query names, written and folded
    with a fixed number of statements, whatever the number of contacts: the
    ledger's path for imports of a million rows. Does not commit.

    ``contacts`` selects contact ids, each once. Only the kinds in
    ``SET_KINDS``; the projection ends up exactly as ``record`` leaves it
    (tests/consent/test_ledger_batch.py). Returns the contact ids.
    """
    if kind not in SET_KINDS:
        raise ValueError(f"{kind} is not folded in SQL; use record_many() or record().")
    column = _BASIS_COLUMNS.get(interest_kind or "")
    if kind is EventKind.BASIS_GRANTED and column is None:
        raise ValueError("record_set grants the customer or industry_list basis only.")
    contact_ids: list[int] = list(db.session.scalars(contacts))
    if not contact_ids:
        return []
    if len(set(contact_ids)) != len(contact_ids):
        raise ValueError("record_set takes each contact once.")
    now = utcnow()
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
    ledger_written.send(signal_sender(), contact_ids=tuple(contact_ids))
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
    states = PermissionState.__table__
    since = states.c[column]
    # As _fold: a blanket row is created or, if it lacks the basis, given it; a
    # contact that holds the basis keeps its date and event. One upsert, also
    # right when another transaction creates the row meanwhile.
    event_of = these.subquery()
    insert = _insert_for_dialect(states)
    db.session.execute(
        insert.from_select(
            ["contact_id", "topic", "channel", column, "basis_event_id"],
            sa.select(
                event_of.c.contact_id,
                sa.literal(ALL),
                sa.literal(ALL),
                sa.literal(occurred_at, since.type),
                event_of.c.id,
            ).where(sa.true()),  # SQLite reads "SELECT ... ON CONFLICT" only after a WHERE
        ).on_conflict_do_update(
            index_elements=["contact_id", "topic", "channel"],
            set_={
                column: insert.excluded[column],
                "basis_event_id": insert.excluded.basis_event_id,
            },
            where=since.is_(None),
        )
    )
    return contact_ids


def _fold(contact: Contact, event: ConsentEvent, states: _States | None = None) -> None:
    states = states or _States()
    kind = EventKind(event.kind)
    at = event.occurred_at
    if kind is EventKind.REQUESTED:
        row = states.get(contact.id, event.topic, event.channel)
        if row.consent_since is None:
            row.pending_since = at
    elif kind is EventKind.CONFIRMED:
        row = states.get(contact.id, event.topic, event.channel)
        verified = event.source in PERSON_VERIFIED_SOURCES
        blanket_blocks = any(
            r.unsubscribed_since or r.objected_since for r in states.blanket(contact.id)
        )
        if not verified and (row.unsubscribed_since is not None or blanket_blocks):
            # The ledger keeps the claim; the projection keeps the person's "no".
            return
        row.consent_since = at
        row.consent_event_id = event.id
        row.pending_since = None
        row.unsubscribed_since = None
    elif kind in (EventKind.WITHDRAWN, EventKind.UNSUBSCRIBED):
        row = states.get(contact.id, event.topic, event.channel)
        row.unsubscribed_since = at
        row.consent_since = None
        row.consent_event_id = None
        row.pending_since = None
    elif kind is EventKind.OBJECTED:
        row = states.get(contact.id, ALL, event.channel)
        if row.objected_since is None:
            row.objected_since = at
            row.objection_event_id = event.id
    elif kind is EventKind.OBJECTION_LIFTED:
        # The objection becomes an unsubscribe from everything: only topics the
        # person confirms afresh open again; legitimate interest stays closed.
        # It dates from the objection, so a confirmation recorded in the same
        # moment as the lift (a double opt-in) is newer and opens its topics.
        for row in states.blanket(contact.id):
            if row.objected_since is not None:
                row.unsubscribed_since = max(
                    row.unsubscribed_since or row.objected_since, row.objected_since
                )
                row.objected_since = None
                row.objection_event_id = None
    elif kind is EventKind.BASIS_GRANTED:
        row = states.get(contact.id, ALL, ALL)
        if event.interest_kind == InterestKind.CUSTOMER and row.customer_since is None:
            row.customer_since = at
            row.basis_event_id = event.id
        elif event.interest_kind == InterestKind.INDUSTRY_LIST and row.industry_list_since is None:
            row.industry_list_since = at
            row.basis_event_id = event.id
    elif kind is EventKind.BASIS_ENDED:
        row = states.get(contact.id, ALL, ALL)
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
