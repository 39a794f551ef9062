"""Set-based writes of companies and contacts, for imports and syncs of many rows.

The same rules as ``crm.services`` (names, customer status), written with a
fixed number of statements per batch instead of one per row. Callers own the
transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from crm import external_ids, services
from crm.changes import CONTACT_CREATED, record, record_company_updates, record_updates
from crm.models import Activity, ActivityKind, Company, Contact
from crm.services import CompanyInput
from extensions import db
from kernel.access import Actor
from kernel.addresses import keyed_hash, normalise_email
from kernel.countries import normalise_country
from kernel.database import id_in, one_of
from kernel.errors import DomainError, NotFound
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
    _announce_created(ids)
    return ids


@dataclass(frozen=True)
class ContactInput:
    """What ``crm.services.upsert_contact`` takes for one contact."""

    email: str
    profile: Mapping[str, Any]
    company: CompanyInput | None = None
    external_ids: Mapping[str, str | None] | None = None


def create_contacts(entries: Sequence[ContactInput], actor: Actor) -> dict[int, int]:
    """Create, a page at a time, the contacts of ``entries`` that are new here,
    as ``crm.services.upsert_contact`` creates one: {entry's index: contact id}.

    A fixed number of statements for the page, plus one ``upsert_company``
    per distinct company it names: one query for the addresses known here,
    one per system for the external ids held, one INSERT of the contacts
    (announced and in the change feed as ``insert_contacts``), one per system
    for their external ids. Left out, for the caller to pass to
    ``upsert_contact`` one by one (which updates them, or says why it refuses
    them): an entry whose address or external id a contact here holds, whose
    address an earlier entry of the page has, or whose data does not
    validate. Does not commit."""
    chosen: dict[int, tuple[str, dict[str, Any], dict[str, str]]] = {}
    addresses: set[str] = set()
    for index, entry in enumerate(entries):
        try:
            address = normalise_email(entry.email)
            profile = services.clean_profile(dict(entry.profile))
            ids = {k: v for k, v in external_ids.check(entry.external_ids or {}).items() if v}
            if entry.company is not None:
                services.check_company(entry.company)
                external_ids.check(entry.company.external_ids or {}, "company")
                if entry.company.country is not None:
                    normalise_country(entry.company.country)
        except DomainError:
            continue
        if address in addresses:
            continue  # the person twice in the source: the first creates, the next updates
        addresses.add(address)
        chosen[index] = (address, profile, ids)
    if not chosen:
        return {}
    known = set(
        db.session.scalars(
            sa.select(Contact.email).where(
                one_of(Contact.email, [a for a, _, _ in chosen.values()])
            )
        )
    )
    systems = {system for _, _, ids in chosen.values() for system in ids}
    held = {
        system: external_ids.contacts_holding(
            system, [ids[system] for _, _, ids in chosen.values() if system in ids]
        )
        for system in systems
    }
    claimed: set[tuple[str, str]] = set()
    for index, (address, _, ids) in list(chosen.items()):
        pairs = set(ids.items())
        if address in known or any(v in held[s] for s, v in pairs) or pairs & claimed:
            del chosen[index]
        else:
            claimed |= pairs
    if not chosen:
        return {}
    # Each company once, in the order its last entry names it: the last data wins,
    # as when the entries are applied one by one.
    companies: dict[str, CompanyInput] = {}
    for index in chosen:
        company = entries[index].company
        if company is not None:
            companies.pop(_company_key(company), None)
            companies[_company_key(company)] = company
    company_ids = {key: services.upsert_company(c, actor).id for key, c in companies.items()}
    db.session.flush()
    now = utcnow()
    rows = []
    for index, (address, profile, _) in chosen.items():
        company = entries[index].company
        rows.append(
            {
                "email": address,
                "address_hash": keyed_hash(address),
                "name": profile.get("name"),
                "phone": profile.get("phone"),
                "country": profile.get("country"),
                "language": profile.get("language") or "en",
                "company_id": company_ids[_company_key(company)] if company else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    table = Contact.__table__
    # Matched by address, not by order: SQLite returns the ids of a many-row
    # INSERT in no promised order (SQLAlchemy would insert row by row instead).
    new_ids: dict[str, int] = dict(
        db.session.execute(sa.insert(table).returning(table.c.email, table.c.id), rows).all()
    )
    by_index = {index: new_ids[address] for index, (address, _, _) in chosen.items()}
    _announce_created(list(by_index.values()))
    for system in systems:
        external_ids.set_many_for_contacts(
            system,
            {
                by_index[i]: held_ids[system]
                for i, (_, _, held_ids) in chosen.items()
                if system in held_ids
            },
        )
    return by_index


def _announce_created(ids: list[int]) -> None:
    if ids:
        record(CONTACT_CREATED, ids)
        contacts_addressed.send(signal_sender(), contact_ids=tuple(ids))


def _company_key(company: CompanyInput) -> str:
    """What names one company among a page's entries (``_upsert_company`` finds
    it by org number, another system's id, or name)."""
    return repr((company.org_number, company.name, sorted((company.external_ids or {}).items())))


_ACTIVITY = Activity.__table__


@dataclass(frozen=True)
class ActivityInput:
    """What ``crm.services.log_activity`` takes for one activity."""

    contact_id: int
    kind: str
    occurred_at: datetime
    note: str | None = None
    from_source: bool = False


def log_activities(actor: Actor, entries: Sequence[ActivityInput]) -> list[int | DomainError]:
    """``crm.services.log_activity`` for a page of activities: each one checked
    by the same rules (``crm.services.new_activity``), the retention clock
    moved by the same rule (``note_interaction``: only forward, X16, and at a
    source's own date only with ``from_source``), each audited. One query for
    the contacts, one INSERT of the activities, one of their audit entries,
    and the UPDATE of the contacts whose last interaction moved. Returns, per
    entry, its activity's id or why it was refused; nothing is written for a
    refused one. Does not commit: the caller commits the page with what it
    keeps of it (a connector, its record of each activity)."""
    wanted = list(dict.fromkeys(e.contact_id for e in entries))
    contacts = {
        c.id: c
        for c in (
            db.session.scalars(sa.select(Contact).where(id_in(Contact.id, wanted)))
            if wanted
            else []
        )
    }
    results: list[int | DomainError] = []
    rows: list[dict[str, Any]] = []
    for entry in entries:
        contact = contacts.get(entry.contact_id)
        try:
            if contact is None:
                raise NotFound(f"No contact with id {entry.contact_id}.", code="contact_not_found")
            activity = services.new_activity(
                actor, contact, entry.kind, entry.occurred_at, entry.note
            )
        except DomainError as exc:
            results.append(exc)
            continue
        if ActivityKind(activity.kind).is_interaction:
            services.note_interaction(contact, entry.occurred_at, from_source=entry.from_source)
        results.append(-1)  # its id, below
        rows.append({c.key: getattr(activity, c.key) for c in _ACTIVITY.c if c.key != "id"})
    if not rows:
        return results
    now = utcnow()
    for row in rows:
        row["created_at"] = now
    # Matched by content, not by order (SQLite promises none): two activities
    # alike in contact, kind and time are interchangeable.
    ids: dict[tuple[Any, ...], list[int]] = {}
    for activity_id, *key in db.session.execute(
        sa.insert(_ACTIVITY).returning(
            _ACTIVITY.c.id, _ACTIVITY.c.contact_id, _ACTIVITY.c.kind, _ACTIVITY.c.occurred_at
        ),
        rows,
    ):
        ids.setdefault(tuple(key), []).append(activity_id)
    keys = iter(rows)
    for position, result in enumerate(results):
        if not isinstance(result, DomainError):
            row = next(keys)
            results[position] = ids[(row["contact_id"], row["kind"], row["occurred_at"])].pop()
    services.audit_many(actor, "activity.create", [(r["contact_id"], r["kind"]) for r in rows])
    db.session.flush()  # the contacts' last interactions
    return results
