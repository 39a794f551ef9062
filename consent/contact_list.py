"""The contact list: a page of the contacts a filter names, and the same list as
CSV (docs/staff-pages.md).

Both walk contacts in id order from a cursor (keyset paging): a page is one
range read from the last id shown, never OFFSET, so the thousandth page costs
what the first does; the export reads the same way a chunk at a time and
writes each line as it goes, so a million rows take constant memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent.contact_filters import ContactFilter, filter_args, matching_contacts, time_ranges
from consent.policy import Decision, decide, standings_by_id
from consent.topics import current_policy
from crm import services as crm
from crm.models import Company, Contact
from extensions import db
from kernel.access import Actor
from kernel.errors import N_, BadRequest, InvalidInput
from kernel.inputs import MAX_ROW_ID
from kernel.spreadsheet import DELIMITERS, csv_line

PAGE_SIZE = 50
EXPORT_CHUNK = 1_000
HEADER = (
    "id",
    "email",
    "name",
    "company",
    "country",
    "language",
    "created_at",
    "last_interaction_at",
    "hard_bounced_at",
    "legal_hold",
)


def parse_cursor(value: str | None) -> int:
    """The last contact id of the previous page; 0 for the first page."""
    if not value:
        return 0
    if not value.isascii() or not value.isdigit() or int(value) > MAX_ROW_ID:
        raise BadRequest(
            N_("The page cursor is not valid; go back to the first page of the list."),
            code="invalid_cursor",
            fields={"after": ["Not a page of this list."]},
        )
    return int(value)


@dataclass(frozen=True)
class ListRow:
    contact: Contact
    company: str | None
    # The decision for the filter's topic and channel, when it names both.
    decision: Decision | None


@dataclass(frozen=True)
class ListPage:
    rows: list[ListRow]
    # The cursor of the next page, or None on the last.
    next_after: int | None


# A time range with at most this many contacts is read from its column's index
# and sorted, rather than found by walking ids (``_rare_range``).
RARE_RANGE = 10_000


def _after(f: ContactFilter, after: int, at: datetime) -> sa.Select[Any]:
    return matching_contacts(f, at=at).where(Contact.id > after).order_by(Contact.id)


def _rare_range(f: ContactFilter, after: int, at: datetime) -> bool:
    """Whether one of the filter's time ranges holds few contacts after the cursor.

    A page walks ids and stops after fifty matches, which is right when
    matches are spread over the ids. A time range is not: ids follow creation,
    so "active within 90 days" matches only the last few percent of the ids,
    and the walk read 950,000 contacts to reach them (230 ms at 1,000,000).
    The database cannot know that; this asks, with a count that stops at
    ``RARE_RANGE`` (read in the range's own index order, so that it stops
    early however wide the range), and then the page reads the range from its
    index and sorts what it found: 3 ms for that filter.
    """
    for column, condition in time_ranges(f, at=at):
        bounded = (
            sa.select(sa.literal(1))
            .where(condition, column.is_not(None), Contact.id > after)
            .order_by(column)
            .limit(RARE_RANGE + 1)
            .subquery()
        )
        if (db.session.scalar(sa.select(sa.func.count()).select_from(bounded)) or 0) <= RARE_RANGE:
            return True
    return False


def _page_ids(f: ContactFilter, after: int, at: datetime) -> list[int]:
    """The ids of the page after ``after`` (one more than a page: is there a next?)."""
    statement = _after(f, after, at).limit(PAGE_SIZE + 1)
    if _rare_range(f, after, at):
        # The same rows in the same order; ``id + 0`` is an order no index
        # gives, so the database reads the range's index and sorts.
        statement = statement.order_by(None).order_by(Contact.id + 0)
    with _walking_by_id(f):
        return list(db.session.scalars(statement))


# For a page's own SELECT on PostgreSQL (see _walking_by_id): each setting
# and what it cost a first page of 50 at 1,000,000 contacts when left on.
_PAGE_SETTINGS = {
    # JIT-compiling the decision's plan: 55 ms, for a query that reads 2,000 rows.
    "jit": "off",
    # Parallel workers for a LIMIT 51: starting them took 60-70 ms.
    "max_parallel_workers_per_gather": "0",
}
_DECISION_SETTINGS = {"enable_mergejoin": "off", "enable_hashjoin": "off"}
_SET = sa.text("SELECT set_config(key, value, true) FROM json_each_text(CAST(:settings AS json))")
_RESET = sa.text(
    "SELECT set_config(name, reset_val, true) FROM pg_settings WHERE name = ANY(:names)"
)


@contextmanager
def _walking_by_id(f: ContactFilter) -> Iterator[None]:
    """Let PostgreSQL answer a keyset page by walking contacts in id order and
    stopping after a page, with neither JIT nor parallel workers (their start
    cost more than the page: ``_PAGE_SETTINGS``).

    For the decision filter also no merge or hash joins: left to itself it
    merge-joins the projection from its first row, not from the cursor, so
    page n costs what reading n pages costs: at 1,000,000 contacts a page
    after id 500,000 took 230 ms that way and 16-54 ms this way
    (docs/staff-pages.md). Only for the page's own SELECT: one statement sets
    them (local to the transaction), one sets them back.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        yield
        return
    settings = _PAGE_SETTINGS | (_DECISION_SETTINGS if f.decision is not None else {})
    db.session.execute(_SET, {"settings": json.dumps(settings)})
    try:
        yield
    finally:
        db.session.execute(_RESET, {"names": list(settings)})


def _decisions(f: ContactFilter, ids: Sequence[int], at: datetime) -> dict[int, Decision]:
    if f.topic is None or f.channel is None:
        return {}
    policy = current_policy()
    topic = policy.topic(f.topic)
    return {
        contact_id: decide(
            standing, email=standing.email, topic=topic, channel=f.channel, at=at, policy=policy
        )
        for contact_id, standing in standings_by_id(ids).items()
    }


def list_page(actor: Actor, f: ContactFilter, after: int, at: datetime) -> ListPage:
    """One page of the contacts ``f`` names after the id ``after``, each with its
    decision for the filter's topic and channel (from ``decide`` itself). The
    read is audited with its filter (R25): a list shows many people at once."""
    ids = _page_ids(f, after, at)
    more = len(ids) > PAGE_SIZE
    ids = ids[:PAGE_SIZE]
    crm.audit(actor, "contact.list", detail=_describe(f, f"after={after} rows={len(ids)}"))
    db.session.commit()
    # Read after the audit's commit: a commit expires every loaded object, and
    # the template touching fifty expired contacts reloaded each with its own
    # SELECT (51 queries, a third of a page's time at 1,000,000 contacts).
    rows = db.session.execute(
        sa.select(Contact, Company.name)
        .outerjoin(Company, Contact.company_id == Company.id)
        .where(Contact.id.in_(ids))
        .order_by(Contact.id)
    ).all()
    decisions = _decisions(f, ids, at)
    return ListPage(
        rows=[ListRow(c, name, decisions.get(c.id)) for c, name in rows],
        next_after=ids[-1] if more and ids else None,
    )


def _describe(f: ContactFilter, tail: str) -> str:
    """The filter and a note, within the audit log's 500 characters."""
    text = " ".join(f"{k}={v}" for k, v in filter_args(f).items()) or "no filter"
    return f"{text[: 480 - len(tail)]} {tail}"


def export_lines(
    actor: Actor, f: ContactFilter, at: datetime, *, delimiter: str = ",", bom: bool = False
) -> Iterator[str]:
    """The contacts ``f`` names as CSV lines, written as they are read: a chunk
    of ids at a time in id order, so memory stays flat at any size. Every
    cell passes ``kernel.spreadsheet`` (no cell runs as a formula).

    The export is audited twice (R25: who took which data): once, committed,
    before the first line leaves, so that a worker killed mid-download cannot
    leak rows unaudited; and when it ends, with the rows actually written,
    also when the download is cut off.
    """
    if delimiter not in DELIMITERS:
        raise InvalidInput(
            N_("The separator must be a comma or a semicolon."), fields={"separator": ["Unknown."]}
        )
    crm.audit(actor, "contact.list_export", detail=_describe(f, "(started)"))
    db.session.commit()
    written = 0
    finished = False
    try:
        # Excel reads a CSV without a byte-order mark in the machine's ANSI code
        # page, which breaks å, ä and ö; the mark is the one sign it reads.
        yield ("\ufeff" if bom else "") + csv_line(HEADER, delimiter)
        after = 0
        while True:
            with _walking_by_id(f):
                chunk = _chunk(f, after, at)
            if not chunk:
                break
            for row in chunk:
                # Counted when handed to the download, before the pause at yield.
                written += 1
                yield csv_line(row, delimiter)
            after = chunk[-1][0]
            # Nothing of the chunk stays in the session: the next starts clean.
            db.session.expunge_all()
        finished = True
    finally:
        state = "complete" if finished else "cut off"
        crm.audit(actor, "contact.list_export", detail=_describe(f, f"rows={written} ({state})"))
        db.session.commit()


def _chunk(f: ContactFilter, after: int, at: datetime) -> list[Any]:
    return list(
        db.session.execute(
            sa.select(
                Contact.id,
                Contact.email,
                Contact.name,
                Company.name,
                Contact.country,
                Contact.language,
                Contact.created_at,
                Contact.last_interaction_at,
                Contact.hard_bounced_at,
                Contact.legal_hold_reason.is_not(None),
            )
            .outerjoin(Company, Contact.company_id == Company.id)
            .where(Contact.id.in_(_after(f, after, at).limit(EXPORT_CHUNK).scalar_subquery()))
            .order_by(Contact.id)
        ).all()
    )
