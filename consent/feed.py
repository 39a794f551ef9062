"""The reader side of the change feed: pages of items in commit order, rendered
as the JSON a CRM mirrors (``GET /api/v1/changes``, docs/integration.md).

Items are written by ``crm.changes`` in the transaction of the change itself.
Here they are read in the feed's order and rendered from the contact as it is
now: a reader that applies an item overwrites what it holds with the current
state, so a slow reader converges instead of replaying history. An item about
a contact that no longer exists is rendered as a tombstone whatever its type:
the contact's id and the external ids its erasure or purge captured, no
personal data.

Gap-free under concurrent writers. Ids are handed out when a row is written,
not when its transaction commits, so a reader that paged by id alone could
pass id 11 (committed) while id 10 (still running) commits later, and miss it
for good. On PostgreSQL each item carries its transaction's id (``txid``), the
feed is ordered by (txid, id), and a read serves only the items of
transactions older than every transaction of this database still running
(``_SETTLED``), in the same statement: any transaction that could still add
an item ahead of the cursor has a txid at or above that bound. So the feed
lags behind the longest writing transaction of the database that is still
open (an import's batch, a retention batch), never loses an item to it. On
SQLite writers take one write lock in turn, so commit order is id order and
txid is 0.

The cursor is opaque to readers (``c1.`` and the position) and stable: it
names a position in that order, not a time or an offset.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from consent.models import WebhookEndpoint
from consent.schemas import DecisionSchema
from consent.services import decisions_for_contacts
from crm import changes as change_feed
from crm import external_ids
from crm import services as crm
from crm.models import Change, Company, Contact
from extensions import db
from kernel.access import Actor
from kernel.errors import BadRequest, Gone
from kernel.signals import collect_change_receivers

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_CURSOR_PREFIX = "c1."
# A cursor: the version, the transaction id and the item id, as decimal numbers
# without leading zeros (at most 18 digits, so every one fits a bigint). Readers
# treat it as opaque; the API's schema states the pattern it is checked against.
CURSOR_PATTERN = r"^c1\.(0|[1-9][0-9]{0,17})\.([1-9][0-9]{0,17})$"
CURSOR = re.compile(CURSOR_PATTERN)
RESYNC_HINT = (
    "Resync: read every contact with GET /api/v1/contacts?updated_after=<a time before "
    "your copy went stale> (keyset pages), then read this feed from its start "
    "(GET /api/v1/changes without 'after') and keep the cursor it returns."
)


@dataclass(frozen=True)
class Page:
    """One page of the feed: its rendered items, the cursor to continue after
    the last of them (the same cursor when nothing new was served), and
    whether more items were ready to serve."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool


def encode_cursor(txid: int, change_id: int) -> str:
    return f"{_CURSOR_PREFIX}{txid}.{change_id}"


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The feed position a cursor names; BadRequest (400) for anything else."""
    match = CURSOR.fullmatch(cursor)
    if match is None:
        raise BadRequest(
            "The cursor is malformed: pass back exactly the 'next_cursor' a page of this feed "
            "returned, or leave 'after' out to read from the start.",
            code="malformed_cursor",
            fields={"after": ["Not a cursor of this feed."]},
        )
    return int(match[1]), int(match[2])


def _is_postgresql() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _served(after: tuple[int, int] | None, limit: int) -> sa.Select[Any]:
    """The next ``limit`` items after ``after`` that no running transaction can
    still precede: one statement, so the bound and the rows share a snapshot."""
    table = Change.__table__
    statement = sa.select(table).order_by(*change_feed.order()).limit(limit)
    if after is not None:
        statement = statement.where(change_feed.after_position(after))
    if not _is_postgresql():
        return statement  # writers take turns: commit order is id order
    return statement.where(table.c.txid < _SETTLED)


# PostgreSQL: the txid below which every transaction that could still write an
# item has ended, as seen by the reading statement's own snapshot (a function
# of the active snapshot, so the same one the rows are read with). It is the
# lowest id among the snapshot's running transactions (pg_snapshot_xip), or
# its xmax when none runs. A running transaction is passed over only when it
# is known to belong to another database (its transactionid lock names a
# backend connected elsewhere; a backend never changes database), since such
# a transaction can never write this table: a long transaction of another
# database on the same server does not hold the feed back. One that cannot be
# placed (it ended since the snapshot, or is prepared) counts, so that a
# transaction that committed after the snapshot is never passed.
_SETTLED = sa.literal_column(
    """(
    SELECT coalesce(
        min(running.x::text::bigint),
        pg_snapshot_xmax(pg_current_snapshot())::text::bigint
    )
    FROM pg_snapshot_xip(pg_current_snapshot()) AS running(x)
    WHERE NOT EXISTS (
        SELECT 1
        FROM pg_locks AS held
        JOIN pg_stat_activity AS backend ON backend.pid = held.pid
        WHERE held.locktype = 'transactionid'
          AND held.mode = 'ExclusiveLock'
          AND held.transactionid::text = (running.x::text::bigint & 4294967295)::text
          AND backend.datname IS DISTINCT FROM current_database()
    )
)""",
    sa.BigInteger,
)


def read(after: str | None, limit: int = DEFAULT_LIMIT, *, actor: Actor | None = None) -> Page:
    """A page of the feed after the cursor ``after`` (from the oldest kept item
    when None), in commit order, rendered.

    Raises BadRequest (400) for a cursor this feed never returned, and Gone
    (410) for one older than the pruned horizon (``CHANGE_FEED_KEEP_DAYS``):
    items the reader never saw are gone, so it must resync (``RESYNC_HINT``).
    ``limit`` is 1..``MAX_LIMIT`` (the API's schema answers 422 beyond it).
    With an ``actor`` the read is audited (R25: one entry with the count).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    position = decode_cursor(after) if after is not None else None
    horizon = change_feed.horizon()
    if position is not None and horizon is not None and position < horizon:
        raise Gone(
            "This cursor is older than the change feed keeps items "
            f"({change_feed.keep_days()} days): items after it were pruned before you read them. "
            + RESYNC_HINT,
            code="cursor_expired",
        )
    rows = db.session.execute(_served(position, limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    items = render(rows)
    if actor is not None:
        crm.audit(actor, "changes.read", detail=f"items={len(items)}")
        db.session.commit()
    else:
        db.session.rollback()  # a read: nothing to keep, and no snapshot held open
    if rows:
        next_cursor: str | None = encode_cursor(int(rows[-1].txid), int(rows[-1].id))
    elif position is not None:
        next_cursor = after
    else:
        next_cursor = None
    return Page(items=items, next_cursor=next_cursor, has_more=has_more)


def connect_signals() -> None:
    """Receivers register at app start (``consent.init_app``)."""
    collect_change_receivers.connect(_webhook_receivers, weak=False)


def _webhook_receivers(app: Any, **_: object) -> list[str]:
    """For the retention preview: the active webhook endpoints that are posted
    a purge (subscribed to every type, or to ``contact.purged`` or
    ``activities.purged``), by host, never their full URL or secret."""
    rows = db.session.execute(
        sa.select(WebhookEndpoint.url, WebhookEndpoint.event_types).where(
            WebhookEndpoint.is_active.is_(True)
        )
    )
    purges = {change_feed.CONTACT_PURGED, change_feed.ACTIVITIES_PURGED}
    # The host alone: a URL may carry credentials or tokens in its other parts.
    return [
        f"webhook {urlsplit(url).hostname}"
        for url, event_types in rows
        if not event_types or purges & set(event_types.split(","))
    ]


def item_id(change_id: int) -> str:
    """The public id of an item, also the ``webhook-id`` of its deliveries."""
    return f"chg_{change_id}"


# A page's live contacts and their companies, as plain rows: no ORM objects to
# build for a thousand items.
_LIVE = (
    sa.select(
        Contact.id,
        Contact.email,
        Contact.name,
        Contact.phone,
        Contact.country,
        Contact.language,
        Contact.updated_at,
        Company.name.label("company_name"),
        Company.org_number.label("company_org_number"),
        Company.country.label("company_country"),
    )
    .outerjoin(Company, Company.id == Contact.company_id)
    .where(Contact.id.in_(sa.bindparam("ids", expanding=True)))
)


def _contact_json(contact: Any) -> dict[str, Any]:
    return {
        "email": contact.email,
        "name": contact.name,
        "phone": contact.phone,
        "country": contact.country,
        "language": contact.language,
        "company": None
        if contact.company_name is None
        else {
            "name": contact.company_name,
            "org_number": contact.company_org_number,
            "country": contact.company_country,
        },
        "updated_at": contact.updated_at.isoformat() if contact.updated_at else None,
    }


def render(changes: Sequence[Any]) -> list[dict[str, Any]]:
    """The public JSON item of each change (a ``crm.models.Change`` or a row of
    its table), in the order given.

    ``{"id", "type", "occurred_at", "contact_id", "external_ids", ...}``; a
    live contact's ``contact.created`` / ``contact.updated`` add ``contact``
    (its current fields; ``fields`` names what an update changed), a
    ``contact.decisions_changed`` adds ``decisions`` (the current decision
    per topic and channel, as ``GET /api/v1/contacts/<id>/permissions``);
    ``contact.purged`` and ``activities.purged`` name their ``rule``,
    ``activities.purged`` its ``action`` and ``count``. An item about a
    contact that no longer exists has ``"tombstone": true`` and nothing but
    ids, rule and counts.
    """
    contact_ids = list(dict.fromkeys(int(c.contact_id) for c in changes))
    live = {row.id: row for row in db.session.execute(_LIVE, {"ids": contact_ids})}
    held = external_ids.for_contacts([cid for cid in contact_ids if cid in live])
    # The external ids of a gone contact whose earlier items are on this page:
    # from its tombstone (a tombstone itself carries them).
    last_known = _tombstone_ids(
        sorted(
            {
                int(c.contact_id)
                for c in changes
                if int(c.contact_id) not in live and c.type not in change_feed.TOMBSTONES
            }
        )
    )
    # The current decisions of every live contact with such an item, in a
    # fixed number of queries for the page, dumped as the permissions API does.
    deciding = {
        int(c.contact_id)
        for c in changes
        if c.type == change_feed.DECISIONS_CHANGED and int(c.contact_id) in live
    }
    schema = DecisionSchema(many=True)
    decisions = {
        contact_id: schema.dump(found)
        for contact_id, found in decisions_for_contacts(sorted(deciding)).items()
    }
    items = []
    for change in changes:
        contact_id = int(change.contact_id)
        data = dict(change.data or {})
        contact = live.get(contact_id)
        item: dict[str, Any] = {
            "id": item_id(int(change.id)),
            "type": change.type,
            "occurred_at": change.occurred_at.isoformat(),
            "contact_id": contact_id,
        }
        if contact is None or change.type in change_feed.TOMBSTONES:
            item["tombstone"] = True
            item["external_ids"] = data.get("external_ids", last_known.get(contact_id, {}))
            for key in ("rule", "action", "count"):
                if key in data:
                    item[key] = data[key]
            items.append(item)
            continue
        item["tombstone"] = False
        item["external_ids"] = held.get(contact_id, {})
        if change.type in (change_feed.CONTACT_CREATED, change_feed.CONTACT_UPDATED):
            item["contact"] = _contact_json(contact)
            if change.type == change_feed.CONTACT_UPDATED:
                item["fields"] = list(data.get("fields", []))
        elif change.type == change_feed.DECISIONS_CHANGED:
            item["decisions"] = decisions.get(contact_id, [])
        elif change.type == change_feed.ACTIVITIES_PURGED:
            item.update({k: data[k] for k in ("rule", "action", "count") if k in data})
        items.append(item)
    return items


def _tombstone_ids(contact_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """For contacts that are gone: the external ids their erasure or purge item
    captured (the newest such item each), so that their earlier items can
    still be matched by the other system."""
    if not contact_ids:
        return {}
    table = Change.__table__
    newest = (
        sa.select(sa.func.max(table.c.id))
        .where(table.c.contact_id.in_(contact_ids), table.c.type.in_(change_feed.TOMBSTONES))
        .group_by(table.c.contact_id)
    )
    rows = db.session.execute(
        sa.select(table.c.contact_id, table.c.data).where(table.c.id.in_(newest))
    ).all()
    return {int(row.contact_id): dict((row.data or {}).get("external_ids", {})) for row in rows}
