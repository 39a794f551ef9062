"""The audit log as the DPO reads it: filtered, paged by a signed cursor, exported.

A page is the entries older than the cursor's id, newest first (keyset paging:
the thousandth page costs what the first does, ``audit_entry``'s primary key
is the index). The cursor is the last id shown, signed with the app's secret:
a hand-edited cursor is refused (400) rather than read as some other page, so
a link always shows what the page that made it said comes next.

Reading a page and exporting the log are themselves audited (R25): who looked
at whose traces is part of the trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from crm.models import AuditEntry
from crm.services import audit
from extensions import db
from kernel.access import Actor
from kernel.errors import N_, BadRequest
from kernel.inputs import MAX_ROW_ID
from kernel.spreadsheet import csv_line

PAGE_SIZE = 100
# Rows fetched per round trip while a file is written: small enough that the
# export's memory stays flat, large enough that round trips do not dominate.
EXPORT_BATCH = 2000
EXPORT_HEADER = ("id", "at", "actor", "action", "contact_id", "detail")


class InvalidCursor(BadRequest):
    """A cursor this page did not give out."""

    code = "invalid_cursor"


@dataclass(frozen=True)
class AuditFilter:
    """Every field optional; None: no filter on it."""

    who: str | None = None  # part of the actor: an email, "cli:", a token's name
    action: str | None = None  # an action, or its start ("contact." for every contact action)
    contact_id: int | None = None
    on_or_after: date | None = None  # UTC days, both ends included
    on_or_before: date | None = None

    def describe(self) -> str:
        """The filter as the export's audit entry keeps it (no personal data
        beyond what the log itself holds: actors' labels and a contact's id)."""
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)]
        return " ".join(p for p in parts if not p.endswith("=None"))[:450]


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key or "", salt="audit-log-cursor")


def encode_cursor(entry_id: int) -> str:
    return _serializer().dumps(entry_id)


def decode_cursor(cursor: str) -> int:
    """The id a cursor stands for; InvalidCursor (400) for anything not made here."""
    try:
        value = _serializer().loads(cursor)
    except BadSignature:
        value = None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_ROW_ID:
        raise InvalidCursor(
            N_(
                "This page link was changed or is not from this log; "
                "start again from the audit log's first page."
            ),
            fields={"before": ["Not a cursor of this log."]},
        )
    return value


def start_of_utc_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _filtered(query: AuditFilter) -> sa.Select:
    statement = sa.select(AuditEntry).order_by(AuditEntry.id.desc())
    if query.who:
        statement = statement.where(AuditEntry.actor.contains(query.who, autoescape=True))
    if query.action:
        statement = statement.where(AuditEntry.action.startswith(query.action, autoescape=True))
    if query.contact_id is not None:
        statement = statement.where(AuditEntry.contact_id == query.contact_id)
    if query.on_or_after is not None:
        statement = statement.where(AuditEntry.at >= start_of_utc_day(query.on_or_after))
    if query.on_or_before is not None:
        end = start_of_utc_day(query.on_or_before + timedelta(days=1))
        statement = statement.where(AuditEntry.at < end)
    return statement


def audit_page(actor: Actor, query: AuditFilter, cursor: str | None = None) -> AuditPage:
    """One page of the filtered log, newest first; the read is logged."""
    statement = _filtered(query).limit(PAGE_SIZE + 1)
    if cursor is not None:
        statement = statement.where(AuditEntry.id < decode_cursor(cursor))
    rows = list(db.session.scalars(statement))
    entries = rows[:PAGE_SIZE]
    more = len(rows) > PAGE_SIZE
    detail = " ".join(filter(None, (query.describe(), f"entries={len(entries)}")))
    audit(actor, "audit.read", query.contact_id, detail=detail)
    db.session.commit()
    return AuditPage(entries, encode_cursor(entries[-1].id) if more else None)


def export_audit(actor: Actor, query: AuditFilter, delimiter: str = ",") -> Iterator[str]:
    """The filtered log as CSV lines, written while they are read.

    The export is logged (and committed) before the first line leaves, so a
    file that exists was always recorded, even if the download breaks off.
    Read in keyset batches by id: memory stays flat however long the log.
    """
    # The log as it was when asked: not the export's own entry, nor what is
    # written while the file streams (a file that never ends is no answer).
    newest = db.session.scalar(sa.select(sa.func.max(AuditEntry.id))) or 0
    audit(actor, "audit.export", query.contact_id, detail=query.describe() or None)
    db.session.commit()
    yield csv_line(EXPORT_HEADER, delimiter)
    statement = _filtered(query).limit(EXPORT_BATCH)
    last = newest + 1
    while True:
        batch = statement.where(AuditEntry.id < last)
        rows = db.session.execute(
            batch.with_only_columns(
                AuditEntry.id,
                AuditEntry.at,
                AuditEntry.actor,
                AuditEntry.action,
                AuditEntry.contact_id,
                AuditEntry.detail,
            )
        ).all()
        for row in rows:
            yield csv_line(tuple(row), delimiter)
        if len(rows) < EXPORT_BATCH:
            return
        last = rows[-1].id


def export_filename(today: datetime) -> str:
    return f"audit-log-{today:%Y-%m-%d}.csv"
