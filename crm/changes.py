"""The writer side of the change feed: one item per thing a CRM must mirror.

Every use case that changes what a connected system holds about a contact
writes an item here, inside its own transaction, so that the item commits or
rolls back with the change (docs/integration.md, "The change feed"). The
reader side, which renders items as JSON, is ``consent.feed``.

Items hold no personal data (``crm.models.Change``): a contact's fields and
decisions are rendered when the feed is read, from the contact as it is then.
The items of an erasure or a purge are *tombstones*: they carry the contact's
external ids, captured before the rows went, so that the other system can
find its own copy and delete it too.

After writing, ``kernel.signals.change_recorded`` is sent inside the
transaction with the new items' ids, so that the webhook deliveries owed for
them are written in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql

from crm.models import Change, ChangeFeedHorizon, Contact, ExternalId
from extensions import db
from kernel.database import id_in, insert_for_dialect
from kernel.signals import change_recorded, collect_change_receivers
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

# The item types, as the feed and the webhooks name them.
DECISIONS_CHANGED = "contact.decisions_changed"
CONTACT_CREATED = "contact.created"
CONTACT_UPDATED = "contact.updated"
CONTACT_ERASED = "contact.erased"
CONTACT_PURGED = "contact.purged"
ACTIVITIES_PURGED = "activities.purged"
CONTACT_UNDELIVERABLE = "contact.undeliverable"
TYPES = (
    DECISIONS_CHANGED,
    CONTACT_CREATED,
    CONTACT_UPDATED,
    CONTACT_ERASED,
    CONTACT_PURGED,
    ACTIVITIES_PURGED,
    CONTACT_UNDELIVERABLE,
)
# The items that say a contact is gone: rendered with no personal data, ever.
TOMBSTONES = frozenset({CONTACT_ERASED, CONTACT_PURGED})

# The contact's fields another system mirrors: a change to one of them is a
# ``contact.updated`` item naming the fields (never their values).
MIRRORED_FIELDS = (
    "email",
    "name",
    "phone",
    "country",
    "language",
    "company",
    "external_ids",
)
# The fields among them that the decision reads (the address's suppression, the
# country's rules, the company's customer relationship; consent.services
# announces the same fields after a rectification).
DECIDING_FIELDS = frozenset({"email", "country", "company"})

DEFAULT_KEEP_DAYS = 90
HORIZON = "change_feed"
# Multi-row INSERTs of at most this many items: one statement per thousand
# contacts of an import or a retention batch, never one per contact.
_ROWS_PER_STATEMENT = 1000
# session.info key: the items already recorded in the open transaction, by
# (type, contact): their ids.
_RECORDED = "changes_recorded"
# A company's columns that a contact's reads render (the feed's ``company``, and
# the contact reads' one, which also shows the customer relationship and the
# company's external ids): a change of one is a change of every contact of it.
COMPANY_MIRRORED = ("name", "org_number", "country", "customer_since", "relationship_ended_at")
# Those the decision reads (a contact without a country of its own takes the
# company's; the customer relationship is a basis).
COMPANY_DECIDING = frozenset({"country", "customer_since", "relationship_ended_at"})


def _insert() -> Any:
    """The INSERT of items, run as an executemany that returns each new id with
    its contact (SQLAlchemy's "insertmanyvalues":
    one multi-row statement per thousand rows, compiled once and cached, where
    a ``.values(rows)`` of a thousand rows was compiled anew every time)."""
    table = Change.__table__
    statement = sa.insert(table)
    if db.session.get_bind().dialect.name == "postgresql":
        # The writer's transaction id, assigned now if it has none yet; as
        # bigint, which orders like the xid8 it is.
        statement = statement.values(
            txid=sa.literal_column("pg_current_xact_id()::text::bigint", sa.BigInteger)
        )
    else:
        statement = statement.values(txid=sa.literal(0, sa.BigInteger))
    return statement.returning(table.c.id, table.c.contact_id)


def _insert_same(
    type: str, contact_ids: list[int], moment: datetime, data: Mapping[str, Any]
) -> Any:
    """INSERT ... SELECT of one item per contact id, all alike, the ids taken
    from one parameter (a PostgreSQL array, a JSON array on SQLite) in their
    order; returns the new ids and contacts."""
    table = Change.__table__
    if db.session.get_bind().dialect.name == "postgresql":
        each = (
            sa.func.unnest(sa.bindparam(None, contact_ids, type_=postgresql.ARRAY(sa.Integer)))
            .table_valued("value", with_ordinality="position")
            .render_derived()
        )
        txid: Any = sa.literal_column("pg_current_xact_id()::text::bigint", sa.BigInteger)
        position = each.c.position
    else:
        each = sa.func.json_each(sa.bindparam(None, json.dumps(contact_ids))).table_valued(
            "value", "key"
        )
        txid = sa.literal(0, sa.BigInteger)
        position = each.c.key
    rows = sa.select(
        txid,
        sa.literal(type, table.c.type.type),
        sa.cast(each.c.value, sa.Integer),
        sa.literal(moment, table.c.occurred_at.type),
        sa.bindparam(None, dict(data) or None, type_=table.c.data.type),
    ).order_by(position)
    return (
        sa.insert(table)
        .from_select(["txid", "type", "contact_id", "occurred_at", "data"], rows)
        .returning(table.c.id, table.c.contact_id)
    )


def _recorded_in_this_transaction() -> dict[tuple[str, int], int]:
    session = db.session()
    transaction = session.get_transaction()
    held = session.info.get(_RECORDED)
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        session.info[_RECORDED] = held
    return held[1]


def record(
    type: str,
    contact_ids: Sequence[int],
    *,
    per_contact: Mapping[int, Mapping[str, Any]] | None = None,
    at: datetime | None = None,
    **data: Any,
) -> list[int]:
    """Write one feed item of ``type`` for each contact. Does not commit.

    At most one item per (contact, type) per transaction: a use case that
    writes the ledger five times for a contact tells the CRM once. ``data``
    goes into every item, ``per_contact[contact_id]`` into that contact's
    (a tombstone's external ids, an update's field names). Neither may hold
    personal data: items outlive the contacts they name. Set-based: a
    multi-row INSERT per thousand contacts. Sends
    ``kernel.signals.change_recorded`` with the new ids; returns them.
    """
    if type not in TYPES:
        raise ValueError(f"Unknown change type {type!r}.")
    seen = _recorded_in_this_transaction()
    new = [cid for cid in dict.fromkeys(contact_ids) if (type, cid) not in seen]
    if not new:
        return []
    moment = at or utcnow()
    ids: list[int] = []
    connection = db.session.connection()
    if not per_contact:
        # The same item for every contact: one INSERT ... SELECT from the ids
        # passed as one parameter, however many contacts (an import batch).
        for change_id, contact_id in connection.execute(_insert_same(type, new, moment, data)):
            seen[(type, int(contact_id))] = int(change_id)
            ids.append(int(change_id))
        change_recorded.send(signal_sender(), change_ids=tuple(ids))
        return ids
    rows = []
    for contact_id in new:
        item = dict(data)
        if per_contact and contact_id in per_contact:
            item.update(per_contact[contact_id])
        rows.append(
            {"type": type, "contact_id": contact_id, "occurred_at": moment, "data": item or None}
        )
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        for change_id, contact_id in connection.execute(
            _insert(), rows[start : start + _ROWS_PER_STATEMENT]
        ):
            seen[(type, int(contact_id))] = int(change_id)
            ids.append(int(change_id))
    change_recorded.send(signal_sender(), change_ids=tuple(ids))
    return ids


def record_tombstones(
    type: str,
    contact_ids: Sequence[int],
    held: Mapping[int, Mapping[str, str]],
    **data: Any,
) -> list[int]:
    """The items saying these contacts are gone (``TOMBSTONES``), each with the
    external ids the contact held (``held``, read by the caller before they
    were deleted with the contact): the contact's id and those ids are all a
    tombstone carries, never personal data. Does not commit."""
    if type not in TOMBSTONES:
        raise ValueError(f"{type!r} is not a tombstone.")
    return record(
        type,
        contact_ids,
        per_contact={cid: {"external_ids": dict(held.get(cid, {}))} for cid in contact_ids},
        **data,
    )


def mirrored(fields: Iterable[str]) -> list[str]:
    """The names among ``fields`` (columns or input keys) that another system
    mirrors, sorted; ``company_id`` counts as ``company``."""
    names = {"company" if name == "company_id" else name for name in fields}
    return sorted(names.intersection(MIRRORED_FIELDS))


def record_updates(fields_by_contact: Mapping[int, Iterable[str]]) -> list[int]:
    """A ``contact.updated`` item for each contact whose mirrored fields changed,
    naming those fields; and a ``contact.decisions_changed`` item when one of
    them is a field the decision reads (``DECIDING_FIELDS``), since such a
    change writes nothing to the ledger. Does not commit.

    A contact that already has its ``contact.updated`` item in this
    transaction (a company it works for changed, then the contact itself)
    keeps that one item, which then names the fields of both changes."""
    named = {cid: mirrored(fields) for cid, fields in fields_by_contact.items()}
    named = {cid: fields for cid, fields in named.items() if fields}
    ids = _record_updated(named)
    deciding = [cid for cid, fields in named.items() if DECIDING_FIELDS.intersection(fields)]
    return ids + record(DECISIONS_CHANGED, deciding)


def _record_updated(named: Mapping[int, list[str]]) -> list[int]:
    """The ``contact.updated`` items naming these fields: new ones, or the
    contact's item of this transaction widened (``_widen_updates``)."""
    _widen_updates(named)
    return record(
        CONTACT_UPDATED,
        list(named),
        per_contact={cid: {"fields": fields} for cid, fields in named.items()},
    )


def _widen_updates(named: Mapping[int, list[str]]) -> None:
    """Add ``named``'s fields to the ``contact.updated`` items this transaction
    already wrote for those contacts: two statements whatever their number."""
    seen = _recorded_in_this_transaction()
    written = {seen[(CONTACT_UPDATED, cid)]: cid for cid in named if (CONTACT_UPDATED, cid) in seen}
    if not written:
        return
    table = Change.__table__
    connection = db.session.connection()
    widened = []
    for change_id, data in connection.execute(
        sa.select(table.c.id, table.c.data).where(table.c.id.in_(list(written)))
    ):
        item = dict(data or {})
        fields = sorted({*item.get("fields", []), *named[written[change_id]]})
        if fields != item.get("fields"):
            widened.append({"change_id": change_id, "new_data": {**item, "fields": fields}})
    if widened:
        connection.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("change_id"))
            .values(data=sa.bindparam("new_data")),
            widened,
        )


def record_company_updates(company_ids: Sequence[int], *, deciding: bool = False) -> list[int]:
    """A company's data that its contacts' reads render changed
    (``COMPANY_MIRRORED``, or its external ids): a ``contact.updated`` item
    naming ``company`` for every contact of these companies (added to the
    item a contact already has in this transaction), and their ``updated_at``
    moved, so that the feed and the changed-since read both tell a CRM; with
    ``deciding`` (``COMPANY_DECIDING`` changed) a ``contact.decisions_changed``
    item each too. A contact whose ``contact.created`` item this transaction
    wrote is told by that item alone. Set-based: one query for the contacts,
    one UPDATE, a multi-row INSERT per thousand items. Does not commit."""
    if not company_ids:
        return []
    of_them = id_in(Contact.company_id, list(dict.fromkeys(company_ids)))
    seen = _recorded_in_this_transaction()
    contact_ids = [
        cid
        for cid in db.session.scalars(sa.select(Contact.id).where(of_them).order_by(Contact.id))
        if (CONTACT_CREATED, cid) not in seen
    ]
    if not contact_ids:
        return []
    touch(of_them)
    ids = _record_updated({cid: ["company"] for cid in contact_ids})
    if not deciding:
        return ids
    return ids + record(DECISIONS_CHANGED, contact_ids)


def touch(contacts: sa.ColumnElement[bool], at: datetime | None = None) -> None:
    """Stamp ``updated_at`` of the contacts matching ``contacts`` now (or
    ``at``), in the caller's transaction, so that the changed-since read lists
    them: one statement whatever their number. Never backwards: a stamp at or
    later than that (a clock set back, a contact created at that moment) is
    left as it is."""
    now = at or utcnow()
    db.session.execute(
        sa.update(Contact)
        .where(contacts, Contact.updated_at < now)
        .values(updated_at=now)
        .execution_options(synchronize_session=False)
    )


def told_systems(contact_ids: Sequence[int]) -> dict[str, int]:
    """{system: how many of these contacts it holds an id of}: the external
    systems a purge or an erasure of these contacts tells, through the feed's
    tombstones (the retention preview lists them). One query."""
    if not contact_ids:
        return {}
    table = ExternalId.__table__
    rows = db.session.execute(
        sa.select(table.c.system, sa.func.count())
        .where(table.c.owner_type == "contact", id_in(table.c.owner_id, list(contact_ids)))
        .group_by(table.c.system)
    )
    return {str(system): int(count) for system, count in rows}


def receivers() -> list[str]:
    """Who else is told of a purge, as the packages above answer
    (``kernel.signals.collect_change_receivers``): the active webhook
    endpoints subscribed to purges or to every type."""
    found: list[str] = []
    for _receiver, answer in collect_change_receivers.send(signal_sender()):
        found.extend(answer)
    return sorted(set(found))


# Retention of the feed itself -----------------------------------------------------------


def keep_days() -> int:
    """How many days the feed keeps its items (``CHANGE_FEED_KEEP_DAYS``, 90 by default)."""
    return int(current_app.config.get("CHANGE_FEED_KEEP_DAYS", DEFAULT_KEEP_DAYS))


def horizon() -> tuple[int, int] | None:
    """The feed position (txid, id) of the newest item pruned, or None."""
    row = db.session.get(ChangeFeedHorizon, HORIZON)
    return None if row is None else (row.txid, row.change_id)


def order() -> tuple[sa.ColumnElement[Any], ...]:
    """The feed's order, for everything that reads the feed in it (its pages,
    ``consent.feed``; a webhook replay): (txid, id) on PostgreSQL.
    On SQLite, where txid is always 0 (writers take turns, so commit order is
    id order), the id alone: SQLite's planner seeks an index only on the
    first column of a row value."""
    table = Change.__table__
    if db.session.get_bind().dialect.name != "postgresql":
        return (table.c.id,)
    return (table.c.txid, table.c.id)


def after_position(position: tuple[int, int]) -> sa.ColumnElement[bool]:
    """The items after the feed position ``position`` (txid, id), in ``order()``."""
    columns = order()
    if len(columns) == 1:
        return columns[0] > position[1]
    return sa.tuple_(*columns) > sa.tuple_(
        sa.literal(position[0], sa.BigInteger), sa.literal(position[1], sa.BigInteger)
    )


def prune(at: datetime | None = None, batch: int = 10_000) -> int:
    """Delete the items older than ``CHANGE_FEED_KEEP_DAYS`` and remember how far
    that went, so that a reader whose cursor is before it is told to resync
    (410) instead of silently missing items. Commits per batch.

    The cut is a position in the feed's order, not a time: every item at or
    before the newest old item goes, so that what is left is one unbroken
    stretch of the feed after the horizon. Returns how many items went.
    """
    cutoff = (at or utcnow()) - timedelta(days=keep_days())
    table = Change.__table__
    last = db.session.execute(
        sa.select(table.c.txid, table.c.id)
        .where(table.c.occurred_at < cutoff)
        .order_by(table.c.txid.desc(), table.c.id.desc())
        .limit(1)
    ).first()
    if last is None:
        db.session.rollback()
        return 0
    through = (int(last.txid), int(last.id))
    # The horizon first, in its own commit: a reader between two batches is
    # already told to resync rather than served a stretch with a hole in it.
    # Only ever forward, and safe when two daily runs prune at once.
    horizon_table = ChangeFeedHorizon.__table__
    upsert = insert_for_dialect(horizon_table).values(
        name=HORIZON, txid=through[0], change_id=through[1], pruned_at=utcnow()
    )
    db.session.execute(
        upsert.on_conflict_do_update(
            index_elements=[horizon_table.c.name],
            set_={
                "txid": upsert.excluded.txid,
                "change_id": upsert.excluded.change_id,
                "pruned_at": upsert.excluded.pruned_at,
            },
            where=sa.tuple_(horizon_table.c.txid, horizon_table.c.change_id)
            < sa.tuple_(upsert.excluded.txid, upsert.excluded.change_id),
        )
    )
    db.session.commit()
    removed = 0
    while True:
        ids = list(
            db.session.scalars(
                sa.select(table.c.id)
                .where(
                    sa.tuple_(table.c.txid, table.c.id)
                    <= sa.tuple_(sa.literal(through[0]), sa.literal(through[1]))
                )
                .order_by(table.c.txid, table.c.id)
                .limit(batch)
            )
        )
        if not ids:
            break
        result = db.session.execute(sa.delete(table).where(table.c.id.in_(ids)))
        removed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        db.session.commit()
    return removed
