"""Applying one batch of valid rows in the current transaction, with a fixed
number of statements: contacts and companies through ``crm.bulk``, suppression
checked by keyed hash, the basis through ``consent.ledger.record_set``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateTable

from consent.imports.reading import Rejection, Row
from consent.ledger import record_set
from consent.models import (
    ALL,
    Basis,
    EventKind,
    InterestKind,
    PermissionState,
    Suppression,
)
from crm import bulk, external_ids
from crm import changes as change_feed
from crm import services as crm
from crm.models import Activity, Contact
from extensions import db
from kernel.access import Actor
from kernel.addresses import mailbox_of
from kernel.database import one_of
from kernel.timestamps import UTCDateTime, utcnow


@dataclass
class Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_suppressed: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    changed_ids: list[int] = field(default_factory=list)


INDUSTRY_LIST_INTERACTION = (
    "last interaction date: not accepted on an industry list, which cannot show that the "
    "person took part in an interaction; leave it empty, or import the contact as a customer "
    "if the interaction happened with you"
)


def _record_interactions(rows: list[Row], batch_id: int, actor: Actor) -> None:
    """The interactions an import states (a customer file's last interaction date
    and kind) as activities: the retention clock that the rows moved (X16) is
    backed by a record of what happened, who stated it and from which batch."""
    if not rows:
        return
    ids = dict(
        db.session.execute(
            sa.select(Contact.email, Contact.id).where(
                one_of(Contact.email, [r.email for r in rows])
            )
        ).all()
    )
    db.session.execute(
        sa.insert(Activity),
        [
            {
                "contact_id": ids[row.email],
                "kind": row.last_interaction_kind,
                "occurred_at": row.last_interaction_at,
                "author": actor.label,
                "note": f"Stated by import batch {batch_id} as the last interaction.",
                "created_at": utcnow(),
            }
            for row in rows
            if row.email in ids
        ],
    )


# Applying one batch ----------------------------------------------------------------------


def _companies(rows: list[Row], kind: InterestKind) -> dict[tuple[str, str], int]:
    """Company ids for the rows' company keys, creating the missing ones."""
    wanted: dict[tuple[str, str], str] = {}
    for row in rows:
        key = row.company_key
        if key is not None:
            wanted[key] = row.company or key[1]  # the last row's name wins
    # R1: contacts registered as customers make their company a customer.
    return bulk.ensure_companies(wanted, as_customers=kind is InterestKind.CUSTOMER)


# New contacts and the contacts that get the basis, staged in a temporary
# table so that the contacts, their ledger events and the projection are each
# written by one INSERT ... SELECT per batch instead of row by row.
_STAGED = sa.Table(
    "import_row",
    sa.MetaData(),
    sa.Column("line", sa.Integer, primary_key=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("address_hash", sa.String(64)),
    sa.Column("name", sa.String(200)),
    sa.Column("country", sa.String(2)),
    sa.Column("language", sa.String(8)),
    sa.Column("company_id", sa.Integer),
    sa.Column("last_interaction_at", UTCDateTime),
    prefixes=["TEMPORARY"],
    # PostgreSQL drops it with the batch's transaction; SQLite keeps it per
    # connection, so it is emptied before and after each use.
    postgresql_on_commit="DROP",
)
_NEW, _NEW_SUPPRESSED, _GRANT = "new", "new_suppressed", "grant"


def _stage(rows: list[tuple[Any, ...]]) -> None:
    """Load rows into the staging table: COPY on PostgreSQL, one executemany on SQLite."""
    conn = db.session.connection()
    conn.execute(CreateTable(_STAGED, if_not_exists=True))
    columns = [c.name for c in _STAGED.columns]
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY import_row ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # A temporary table has no statistics until asked; without them the
        # joins below are planned for an empty table.
        conn.exec_driver_sql("ANALYZE import_row")
        return
    conn.execute(sa.delete(_STAGED))
    stamp = _STAGED.c.last_interaction_at.type.bind_processor(conn.dialect)
    assert stamp is not None
    moment = len(columns) - 1
    # The compiled INSERT names every column, in order, as positional "?" markers;
    # executed on the driver, the rows skip SQLAlchemy's per-value processing.
    conn.exec_driver_sql(
        str(sa.insert(_STAGED).compile(dialect=conn.dialect)),
        [(*row[:moment], stamp(row[moment])) for row in rows],
    )


def _record_ids_taken(
    rows: list[Row], system: str | None, owners: dict[str, int]
) -> tuple[dict[int, str], dict[int, str]]:
    """The rows whose record id another contact holds ({row number: reason}),
    and the record id each known contact holds in ``system`` now. One query
    for the holders of the batch's record ids, one for the known contacts' ids."""
    with_ids = [r for r in rows if r.external_id is not None]
    if system is None or not with_ids:
        return {}, {}
    holders = external_ids.contacts_holding(
        system, [r.external_id for r in with_ids if r.external_id]
    )
    held_now = {
        contact_id: ids[system]
        for contact_id, ids in external_ids.for_contacts(list(owners.values())).items()
        if system in ids
    }
    refused: dict[int, str] = {}
    claimed: dict[str, int] = {}  # record id -> the row of this batch that holds it
    for row in with_ids:
        assert row.external_id is not None
        own = owners.get(row.email)
        holder = holders.get(row.external_id)
        if holder is not None and holder != own:
            # Issue 20: an id names one contact per system; this row would move it.
            refused[row.number] = (
                f"record id: this {system} id already belongs to contact {holder}; row not imported"
            )
        elif row.external_id in claimed:
            refused[row.number] = (
                f"record id: row {claimed[row.external_id]} has the same {system} id "
                "with another email; row not imported"
            )
        else:
            claimed[row.external_id] = row.number
    return refused, held_now


def _store_record_ids(rows: list[Row], system: str | None, known: dict[str, int]) -> None:
    """The rows' record ids as their contacts' external ids in ``system``: one
    SELECT for the new contacts' ids, then crm.external_ids.set_many_for_contacts."""
    if system is None or not rows:
        return
    missing = [r.email for r in rows if r.email not in known]
    ids = dict(known)
    if missing:
        ids.update(
            db.session.execute(
                sa.select(Contact.email, Contact.id).where(one_of(Contact.email, missing))
            ).all()
        )
    values = {ids[r.email]: r.external_id for r in rows if r.external_id and r.email in ids}
    external_ids.set_many_for_contacts(system, values)
    # A known contact's new id is a change the connected systems mirror; a new
    # contact's ids come with its contact.created item.
    change_feed.record_updates(
        {contact_id: ["external_ids"] for contact_id in known.values() if contact_id in values}
    )


def apply_batch(
    rows: list[Row],
    kind: InterestKind,
    batch_id: int,
    actor: Actor,
    hasher: Callable[[str], str],
    system: str | None = None,
) -> Outcome:
    """Apply valid rows (distinct addresses) in the current transaction; with
    ``system``, each row's record id becomes its contact's external id there."""
    outcome = Outcome()
    emails = [r.email for r in rows]
    attribute = "customer_since" if kind is InterestKind.CUSTOMER else "industry_list_since"
    holds = PermissionState.__table__.alias("holds")
    existing = {
        c.email: c
        for c in db.session.execute(
            sa.select(
                Contact.id,
                Contact.email,
                Contact.name,
                Contact.country,
                Contact.language,
                Contact.company_id,
                Contact.last_interaction_at,
                Contact.created_at,
                Contact.restricted_at,
                holds.c.contact_id.is_not(None).label("holds_basis"),
            )
            .outerjoin(
                holds,
                sa.and_(
                    holds.c.contact_id == Contact.id,
                    holds.c.topic == ALL,
                    holds.c.channel == ALL,
                    holds.c[attribute].is_not(None),
                ),
            )
            .where(one_of(Contact.email, emails))
        )
    }
    hashes = {email: hasher(email) for email in emails}
    # An address is suppressed by its own hash or, at a sub-address (anna+x@),
    # by its mailbox's (anna@): consent.suppression.find_suppression, per batch.
    keys = {email: [digest] for email, digest in hashes.items()}
    for email in emails:
        mailbox = mailbox_of(email)
        if mailbox != email:
            keys[email].append(hasher(mailbox))
    listed = set(
        db.session.scalars(
            sa.select(Suppression.address_hash).where(
                one_of(Suppression.address_hash, [k for ks in keys.values() for k in ks])
            )
        )
    )
    suppressed = {email for email, ks in keys.items() if listed.intersection(ks)}
    refused, held_now = _record_ids_taken(
        rows, system, {email: c.id for email, c in existing.items()}
    )

    # GDPR art. 21 / R22: an address on the suppression list from an industry
    # list is not stored at all; a customer contact is stored but never allowed.
    keep = []
    for row in rows:
        if row.number in refused:
            outcome.rejections.append(Rejection(row.number, refused[row.number]))
        elif row.email in suppressed and kind is InterestKind.INDUSTRY_LIST:
            outcome.skipped_suppressed += 1
        elif row.last_interaction_at is not None and kind is InterestKind.INDUSTRY_LIST:
            # X16: a list bought or collected elsewhere cannot show that the person
            # took part in anything, so it never starts their retention clock.
            outcome.rejections.append(Rejection(row.number, INDUSTRY_LIST_INTERACTION))
        else:
            keep.append(row)
    company_ids = _companies(keep, kind)
    now = utcnow()

    staged: list[tuple[Any, ...]] = []
    updates: list[dict[str, Any]] = []
    interactions: list[Row] = []
    record_ids: list[Row] = []  # rows whose record id is to be stored
    for row in keep:
        company_id = company_ids.get(row.company_key) if row.company_key else None
        current = existing.get(row.email)
        if current is None:
            staged.append(
                (
                    row.number,
                    _NEW_SUPPRESSED if row.email in suppressed else _NEW,
                    row.email,
                    hashes[row.email],
                    row.name,
                    row.country,
                    row.language or "en",
                    company_id,
                    row.last_interaction_at,
                )
            )
            if row.last_interaction_at is not None:
                interactions.append(row)
            if row.external_id is not None:
                record_ids.append(row)
            outcome.created += 1
            continue
        changes: dict[str, Any] = {}
        for column in ("name", "country", "language"):
            value = getattr(row, column)
            if value is not None and value != getattr(current, column):
                changes[column] = value
        if company_id is not None and company_id != current.company_id:
            changes["company_id"] = company_id
        if row.last_interaction_at is not None and crm.moves_last_interaction(
            current.last_interaction_at, current.created_at, row.last_interaction_at
        ):
            # Only ever forward from where retention counts, as
            # crm.services.note_interaction moves it: a file dated 1970 does not
            # bring a known contact's purge date closer.
            # ... and never on its own: the interaction is recorded as an activity.
            changes["last_interaction_at"] = row.last_interaction_at
        needs_basis = not current.holds_basis
        new_record_id = (
            system is not None
            and row.external_id is not None
            and held_now.get(current.id) != row.external_id
        )
        if not changes and not needs_basis and not new_record_id:
            outcome.unchanged += 1
            continue
        if current.restricted_at is not None:
            outcome.rejections.append(
                Rejection(row.number, "processing is restricted (GDPR art. 18); not changed")
            )
            continue
        if changes:
            updates.append({"id": current.id, **changes, "updated_at": now})
        if "last_interaction_at" in changes:
            interactions.append(row)
        if new_record_id:
            record_ids.append(row)
        if needs_basis:
            staged.append((row.number, _GRANT, row.email, None, None, None, None, None, None))
        outcome.updated += 1
        if changes or needs_basis:
            # A new record id changes no decision: no decisions_changed for it.
            outcome.changed_ids.append(current.id)

    bulk.update_contacts(updates)
    known = {email: c.id for email, c in existing.items()}
    if not staged:
        _record_interactions(interactions, batch_id, actor)
        _store_record_ids(record_ids, system, known)
        return outcome
    _stage(staged)
    if outcome.created:
        table = Contact.__table__
        fixed = {
            # GDPR art. 14: data not obtained from the person (a list, or the
            # customer company that gave us its contact person); notice owed.
            "art14_notice_owed_since": now,
            "created_at": now,
            "updated_at": now,
        }
        copied = [c for c in _STAGED.columns if c.name in table.c]
        bulk.insert_contacts(
            [*(c.name for c in copied), *fixed],
            sa.select(*copied, *(sa.literal(v, table.c[k].type) for k, v in fixed.items()))
            .where(_STAGED.c.action.in_([_NEW, _NEW_SUPPRESSED]))
            .order_by(_STAGED.c.line),
        )

    def contacts(*actions: str) -> sa.Select[Any]:
        return (
            sa.select(Contact.id)
            .join(_STAGED, _STAGED.c.email == Contact.email)
            .where(_STAGED.c.action.in_(actions))
        )

    source_ref = f"import-batch:{batch_id}"
    record_set(
        contacts(_NEW_SUPPRESSED),
        EventKind.CREATED_WHILE_SUPPRESSED,
        actor=actor,
        source="import",
        source_ref=source_ref,
        note="Address is on the suppression list; it will not be marketed to.",
        recorded_at=now,
    )
    granted = record_set(
        contacts(_NEW, _NEW_SUPPRESSED, _GRANT),
        EventKind.BASIS_GRANTED,
        actor=actor,
        source="import",
        source_ref=source_ref,
        basis=Basis.LEGITIMATE_INTEREST.value,
        interest_kind=kind.value,
        recorded_at=now,
    )
    changed = set(outcome.changed_ids)
    outcome.changed_ids.extend(i for i in granted if i not in changed)
    _record_interactions(interactions, batch_id, actor)
    _store_record_ids(record_ids, system, known)
    if db.session.get_bind().dialect.name != "postgresql":
        db.session.execute(sa.delete(_STAGED))
    return outcome
