"""Set-based writes of companies and contacts, for imports and syncs of many rows.

The same rules as ``crm.services`` (names, customer status), written with a
fixed number of statements per batch instead of one per row. Callers own the
transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from crm.changes import CONTACT_CREATED, record, record_company_updates, record_updates
from crm.models import Company, Contact
from extensions import db
from kernel.database import one_of
from kernel.signals import contacts_addressed
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow


def ensure_companies(
    wanted: Mapping[tuple[str, str], str], *, as_customers: bool
) -> dict[tuple[str, str], int]:
    """Company ids for company keys (``("org", number)`` or ``("name", name)``),
    each with the name to give it, in a fixed number of statements: the
    missing ones are created, an org number's company takes the new name, and
    ``as_customers`` makes each a customer from today unless it already is.
    The contacts of a known company renamed or made a customer are changed
    too: ``contact.updated`` items naming ``company`` (and
    ``contact.decisions_changed`` for a new customer), ``updated_at`` moved
    (``crm.changes.record_company_updates``). Does not commit."""
    if not wanted:
        return {}
    orgs = [k[1] for k in wanted if k[0] == "org"]
    names = [k[1] for k in wanted if k[0] == "name"]
    found: dict[tuple[str, str], tuple[int, str, Any]] = {}
    if orgs:
        for cid, name, org, since in db.session.execute(
            sa.select(Company.id, Company.name, Company.org_number, Company.customer_since).where(
                one_of(Company.org_number, orgs)
            )
        ):
            found[("org", str(org))] = (cid, name, since)
    if names:
        for cid, name, since in db.session.execute(
            sa.select(Company.id, Company.name, Company.customer_since)
            .where(Company.org_number.is_(None), one_of(Company.name, names))
            .order_by(Company.id.desc())
        ):
            found[("name", name)] = (cid, name, since)  # the oldest wins (last written)
    today = utcnow().date()
    missing = [k for k in wanted if k not in found]
    ids = {k: v[0] for k, v in found.items()}
    if missing:
        table = Company.__table__
        created = db.session.execute(
            sa.insert(table).returning(table.c.id, table.c.name, table.c.org_number),
            [
                {
                    "name": wanted[k],
                    "org_number": k[1] if k[0] == "org" else None,
                    "customer_since": today if as_customers else None,
                    "created_at": utcnow(),
                }
                for k in missing
            ],
        ).all()
        for cid, name, org in created:
            ids[("org", org) if org else ("name", name)] = cid
    renamed: list[dict[str, Any]] = [
        {"id": v[0], "name": wanted[k]}
        for k, v in found.items()
        if k[0] == "org" and v[1] != wanted[k]
    ]
    if renamed:
        db.session.execute(sa.update(Company), renamed)
    became: list[int] = []
    if as_customers:
        not_yet = [v[0] for v in found.values() if v[2] is None]
        if not_yet:
            became = list(
                db.session.scalars(
                    sa.update(Company)
                    .where(Company.id.in_(not_yet), Company.customer_since.is_(None))
                    .values(customer_since=today)
                    .returning(Company.id)
                )
            )
    record_company_updates(became, deciding=True)
    record_company_updates([row["id"] for row in renamed])
    return ids


def update_contacts(changes: Sequence[Mapping[str, Any]]) -> None:
    """Apply ``{"id": ..., column: value, ...}`` rows to their contacts: one
    executemany per batch. Each contact whose mirrored fields changed gets a
    ``contact.updated`` item in the change feed (one multi-row INSERT)."""
    if changes:
        db.session.execute(sa.update(Contact), list(changes))
        record_updates({row["id"]: row.keys() for row in changes})


def insert_contacts(columns: Sequence[str], rows: sa.Select[Any]) -> list[int]:
    """Create contacts from a SELECT whose columns are ``columns``, in order: one
    INSERT ... SELECT per batch. Returns the new ids, and announces them
    (``kernel.signals.contacts_addressed``) in the same transaction, so that
    the consent layer restates what was refused at these addresses (R22), and
    writes their ``contact.created`` items to the change feed."""
    table = Contact.__table__
    ids = list(
        db.session.scalars(sa.insert(table).from_select(list(columns), rows).returning(table.c.id))
    )
    if ids:
        record(CONTACT_CREATED, ids)
        contacts_addressed.send(signal_sender(), contact_ids=tuple(ids))
    return ids
