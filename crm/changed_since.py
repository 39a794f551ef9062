"""The changed-since read: every contact changed after a time, in pages, so
that a connector can compare its copy with ours (issue 20, item 6;
docs/integration.md, "Reading what changed since").

Pages follow the index on ``(updated_at, id)`` (keyset pagination): each page
starts strictly after the last contact of the previous one, named by an
opaque cursor, so a page costs the same at the start and at the end of a
million contacts, and a contact whose ``updated_at`` ties with others is
neither skipped nor repeated at a page boundary. A contact changed while a
reader pages moves to the end of the order and is read again there.

``updated_at`` moves with every change of the contact's data, of its external
ids, of its company's data (``crm.changes.record_company_updates``), and of
its decisions: every ledger write stamps its contacts (``touch_contacts``,
the receiver of ``kernel.signals.ledger_written``), so "changed" here means
what a connector mirrors.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from crm import changes
from crm.models import Contact
from crm.retention import current_retention_policy
from crm.services import audit
from extensions import db
from kernel.access import Actor, may
from kernel.database import id_in
from kernel.errors import DomainError, NotPermitted
from kernel.inputs import MAX_ROW_ID
from kernel.signals import ledger_written

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"(\d{1,17})\.(\d{1,10})")


class InvalidCursor(DomainError):
    """A cursor this read did not give out: 400, the request itself is wrong."""

    code = "invalid_cursor"


@dataclass(frozen=True)
class Page:
    contacts: list[Contact]
    # More contacts follow this page now (read ``next_cursor`` at once).
    has_more: bool
    # Where the next page starts: after this page's last contact. None for an
    # empty page (start again from the same cursor or time later).
    next_cursor: str | None


def encode_cursor(updated_at: datetime, contact_id: int) -> str:
    """The opaque cursor after ``(updated_at, contact_id)``."""
    micros = (updated_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}.{contact_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """``(updated_at, contact_id)`` of a cursor; InvalidCursor (400) otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    found = _CURSOR.fullmatch(raw)
    if found is None or not 0 < int(found.group(2)) <= MAX_ROW_ID:
        raise InvalidCursor(
            "Not a cursor of this read: pass next_cursor exactly as the previous page gave it.",
            fields={"after": ["Not a cursor of this read."]},
        )
    moment = _EPOCH + timedelta(microseconds=int(found.group(1)))
    return moment, int(found.group(2))


def contacts_changed_since(
    actor: Actor, updated_after: datetime, *, after: str | None = None, limit: int = 100
) -> Page:
    """The contacts changed after ``updated_after`` (and after the cursor
    ``after``), oldest change first, at most ``limit``. Audited once per page
    (R25), and only for roles that may ``contacts.sync`` (NotPermitted
    otherwise): the route's guard lets every reader look one contact up. A
    fixed number of queries for the contacts and their companies; the caller
    reads external ids and purge dates in a fixed number more
    (``ContactRead.many``)."""
    if not may(actor.role, "contacts.sync"):
        raise NotPermitted(
            f"The role {actor.role!r} may not do this (contacts.sync).", code="forbidden"
        )
    # Only the keys first: the page's rows are loaded after the audit's commit.
    statement = (
        sa.select(Contact.id, Contact.updated_at)
        .where(_after(updated_after, decode_cursor(after) if after is not None else None))
        .order_by(Contact.updated_at, Contact.id)
        .limit(limit + 1)
    )
    rows = db.session.execute(statement).all()
    page, has_more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    next_cursor = encode_cursor(last.updated_at, last.id) if last else None
    ids = [row.id for row in page]
    audit(actor, "contact.list_changed", detail=f"{len(page)} contacts")
    db.session.commit()
    return Page(contacts=_load(ids), has_more=has_more, next_cursor=next_cursor)


def _after(updated_after: datetime, cursor: tuple[datetime, int] | None) -> sa.ColumnElement[bool]:
    """Where the page starts, as one range on ``ix_contact_updated_at_id``.

    Only the later of the two bounds is written: the other follows from it,
    and given both SQLite starts its index range at ``updated_after`` and
    walks every row up to the cursor (40 ms a page at the end of a million
    contacts instead of 0.03 ms). The cursor's bound is spelt with a plain
    ``>=`` on the time, which both databases use as the range's start.
    """
    if cursor is None or cursor[0] <= updated_after:
        # Every row after updated_after is after the cursor too.
        return Contact.updated_at > updated_after
    moment, contact_id = cursor
    return sa.and_(
        Contact.updated_at >= moment,
        sa.or_(Contact.updated_at > moment, Contact.id > contact_id),
    )


def _load(ids: list[int]) -> list[Contact]:
    """The contacts of ``ids`` in that order, with what their reads need, in a
    fixed number of queries (the commit of the audit entry expired them)."""
    if not ids:
        return []
    statement = (
        sa.select(Contact)
        .where(id_in(Contact.id, ids))
        .options(selectinload(Contact.company))
        .execution_options(populate_existing=True)
    )
    if any(
        rule.with_activity_kinds or rule.without_activity_kinds
        for rule in current_retention_policy().held_rules
    ):
        # The purge date of such a rule depends on the contact's activities.
        statement = statement.options(selectinload(Contact.activities))
    found = {contact.id: contact for contact in db.session.scalars(statement)}
    return [found[i] for i in ids if i in found]


def touch_contacts(contact_ids: Sequence[int], at: datetime | None = None) -> None:
    """Stamp ``updated_at`` of these contacts now (or ``at``, the writer's
    moment), in the caller's transaction: their decisions changed. One
    statement whatever their number. Never backwards: a stamp already at or
    after that moment (a contact created by the same write, a clock set back)
    is left as it is."""
    if contact_ids:
        changes.touch(id_in(Contact.id, list(contact_ids)), at)


def _on_ledger_written(
    sender: Any, *, contact_ids: Sequence[int], at: datetime | None = None, **_: object
) -> None:
    touch_contacts(contact_ids, at)


def connect_signals() -> None:
    """Every ledger write stamps its contacts (``crm.init_app``)."""
    ledger_written.connect(_on_ledger_written, weak=False)
