"""Use cases on companies, contacts and activities."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from crm import changes as change_feed
from crm import erasure_journal, external_ids
from crm.models import (
    EARLIEST_ACTIVITY,
    SUPPORT_FIELDS,
    Activity,
    ActivityKind,
    AuditEntry,
    Company,
    Contact,
    activity_time_problem,
    support_code_problem,
)
from extensions import db
from kernel import idempotency
from kernel.access import SYSTEM_ACTOR, Actor
from kernel.addresses import normalise_email
from kernel.countries import normalise_country, normalise_language
from kernel.database import id_in
from kernel.errors import N_, Conflict, InvalidInput, NotFound
from kernel.inputs import check_stored_text
from kernel.signals import (
    company_relationship_changed,
    contact_moved_company,
    contact_rectified,
    contacts_addressed,
)
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

_INSERT_AUDIT = AuditEntry.__table__.insert()


def audit(
    actor: Actor, action: str, contact_id: int | None = None, detail: str | None = None
) -> None:
    """Note who did what to whose data (R25). Part of the caller's transaction."""
    # A prepared INSERT, not an object to flush: every audited read pays for this.
    db.session.connection().execute(
        _INSERT_AUDIT,
        {
            "at": utcnow(),
            "actor": actor.label,
            "action": action,
            "contact_id": contact_id,
            "detail": detail,
        },
    )


def audit_many(actor: Actor, action: str, entries: Sequence[tuple[int | None, str | None]]) -> None:
    """``audit`` for each (contact id, detail) of ``entries`` (R25): one entry
    each, written by one executemany. Part of the caller's transaction."""
    if entries:
        at = utcnow()
        db.session.connection().execute(
            _INSERT_AUDIT,
            [
                {"at": at, "actor": actor.label, "action": action, "contact_id": cid, "detail": d}
                for cid, d in entries
            ],
        )


@dataclass(frozen=True)
class AuditQuery:
    contact_id: int | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


def list_audit(actor: Actor, query: AuditQuery) -> list[AuditEntry]:
    """Audit entries, newest first (R25). Reading the log is itself logged."""
    statement = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(query.limit)
    if query.contact_id is not None:
        statement = statement.where(AuditEntry.contact_id == query.contact_id)
    if query.actor:
        statement = statement.where(AuditEntry.actor == query.actor)
    if query.action:
        statement = statement.where(AuditEntry.action == query.action)
    if query.since is not None:
        statement = statement.where(AuditEntry.at >= query.since)
    if query.until is not None:
        statement = statement.where(AuditEntry.at < query.until)
    if query.before_id is not None:
        statement = statement.where(AuditEntry.id < query.before_id)
    entries = list(db.session.scalars(statement))
    audit(actor, "audit.read", query.contact_id, detail=f"entries={len(entries)}")
    db.session.commit()
    return entries


# Ids are 32-bit integers on PostgreSQL; a larger number cannot name a contact.
# The largest id a contact can have (PostgreSQL's integer): a larger one is not
# looked up, it is not found.
MAX_CONTACT_ID = _MAX_ID = 2**31 - 1


def get_contact(contact_id: int) -> Contact:
    contact = db.session.get(Contact, contact_id) if 0 < contact_id <= _MAX_ID else None
    if contact is None:
        raise NotFound(f"No contact with id {contact_id}.", code="contact_not_found")
    return contact


_CONTACT = Contact.__table__
_LAST_INTERACTION = _CONTACT.c.last_interaction_at
_AT = sa.bindparam("at", type_=_LAST_INTERACTION.type)
# The row lock a marketing send takes from its last policy check until SMTP
# accepted the message (mailing.delivery._hold_and_check): FOR NO KEY UPDATE.
_HOLD = (
    sa.select(_CONTACT.c.email, _CONTACT.c.restricted_at)
    .where(_CONTACT.c.id == sa.bindparam("contact_id"))
    .with_for_update(key_share=True)
)
# The same lock, taken by the UPDATE itself, while it notes an interaction as
# note_interaction does: only a moment after the retention anchor (the last
# interaction, or the creation for a contact that never interacted) moves it.
_HOLD_AND_NOTE = (
    sa.update(_CONTACT)
    .where(_CONTACT.c.id == sa.bindparam("contact_id"))
    .values(
        last_interaction_at=sa.case(
            (
                sa.or_(
                    _LAST_INTERACTION < _AT,
                    sa.and_(_LAST_INTERACTION.is_(None), _CONTACT.c.created_at <= _AT),
                ),
                _AT,
            ),
            else_=_LAST_INTERACTION,
        )
    )
    .returning(_CONTACT.c.email, _CONTACT.c.restricted_at)
)


class HeldContact(NamedTuple):
    email: str
    # As committed when the lock was granted: a restriction that committed
    # while this change waited for the lock is seen here (GDPR art. 18).
    restricted_at: datetime | None


def hold_contact(contact_id: int, interaction_at: datetime | None = None) -> HeldContact:
    """Lock a contact's row for a consent change; return its address and restriction.

    The lock is the one a marketing send holds (R11), so the change waits for
    a send in progress; one statement instead of a load and a flush, for the
    objection's hot path. ``interaction_at`` notes an interaction in the same
    statement. Raises NotFound for an unknown id.
    """
    row = None
    if not 0 < contact_id <= _MAX_ID:
        pass
    elif interaction_at is None:
        row = db.session.connection().execute(_HOLD, {"contact_id": contact_id}).first()
    else:
        row = (
            db.session.connection()
            .execute(_HOLD_AND_NOTE, {"contact_id": contact_id, "at": interaction_at})
            .first()
        )
    if row is None:
        raise NotFound(f"No contact with id {contact_id}.", code="contact_not_found")
    return HeldContact(email=row.email, restricted_at=row.restricted_at)


def refusal_while_restricted() -> Conflict:
    """The answer to a change of a restricted contact (GDPR art. 18), in every
    use case's words alike: only lifting the restriction, an objection or an
    unsubscribe are taken until then."""
    return Conflict(
        N_(
            "Processing of this contact is restricted (GDPR art. 18); nothing about it can be "
            "changed until the restriction is lifted, except the person's objection or "
            "unsubscribe."
        ),
        code="restricted",
    )


def contact_ids_at_mailbox(mailbox: str) -> list[int]:
    """Ids of the contacts whose address delivers to ``mailbox`` (its
    ``kernel.addresses.mailbox_of``): the mailbox itself and every
    ``local+tag@domain`` of it. An index range on the address, then the domain."""
    local, _, domain = mailbox.rpartition("@")
    return list(
        db.session.scalars(
            sa.select(Contact.id).where(
                sa.or_(
                    Contact.email == mailbox,
                    sa.and_(
                        _starts_with(Contact.email, f"{local}+"),
                        Contact.email.endswith(f"@{domain}", autoescape=True),
                    ),
                )
            )
        )
    )


def find_contact(email: str) -> Contact | None:
    return db.session.scalar(sa.select(Contact).where(Contact.email == normalise_email(email)))


def read_contact(
    actor: Actor,
    *,
    contact_id: int | None = None,
    email: str | None = None,
    external_id: str | None = None,
) -> Contact:
    """A contact for a staff lookup, which is audited (R25): by id, by address,
    or by another system's id (``"hubspot:1234"``, ``crm.external_ids``)."""
    if contact_id is not None:
        contact: Contact | None = get_contact(contact_id)
    elif external_id is not None:
        system, value = external_ids.parse_reference(external_id)
        found = external_ids.find_contact(system, value)
        contact = db.session.get(Contact, found) if found is not None else None
        if contact is None:
            raise NotFound(f"No contact has that {system} id.", code="contact_not_found")
    else:
        contact = find_contact(email or "")
    if contact is None:
        raise NotFound(N_("No contact with that address."), code="contact_not_found")
    audit(actor, "contact.read", contact.id)
    db.session.commit()
    return contact


SEARCH_LIMIT = 50


def _starts_with(expression: Any, prefix: str) -> Any:
    """``expression`` begins with ``prefix``, in a form the search indexes serve.

    PostgreSQL: ``LIKE 'prefix%'`` on a text_pattern_ops index, right under any
    collation. SQLite compares bytes (BINARY), so the prefix is a range on a
    plain index (its LIKE is case-insensitive and would not use one).
    """
    if db.session.get_bind().dialect.name == "postgresql":
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return expression.like(escaped + "%", escape="\\")
    return sa.and_(expression >= prefix, expression < prefix + "\U0010ffff")


def search_contacts(actor: Actor, text: str, limit: int = SEARCH_LIMIT) -> list[Contact]:
    """Contacts whose email, name or company name begins with ``text``
    (case-insensitive), at most ``limit``, exact address first; and first of
    all the contact another system knows as ``text`` ("hubspot:1234",
    ``crm.external_ids``). Audited (R25).

    Three index range scans, each stopping at ``limit`` rows, so the cost does
    not grow with the number of contacts (docs/staff-pages.md has the plans).
    """
    term = " ".join(text.split()).lower()
    if not term:
        return []
    found: dict[int, Contact] = {}
    # Another system's id, "hubspot:1234" (case kept: ids are case-sensitive):
    # one lookup on its unique index, shown first.
    known_as = external_ids.find_contact_by_reference(text.strip())

    def take(condition: Any) -> None:
        statement = (
            sa.select(Contact).options(selectinload(Contact.company)).where(condition).limit(limit)
        )
        for contact in db.session.scalars(statement):
            found.setdefault(contact.id, contact)

    if known_as is not None:
        take(Contact.id == known_as)
    take(_starts_with(Contact.email, term))
    if "@" not in term:
        take(_starts_with(sa.func.lower(Contact.name), term))
        companies = sa.select(Company.id).where(_starts_with(sa.func.lower(Company.name), term))
        take(Contact.company_id.in_(companies.limit(limit).scalar_subquery()))
    results = sorted(
        found.values(),
        key=lambda c: (c.id != known_as, c.email != term, (c.name or c.email).lower(), c.id),
    )[:limit]
    audit(actor, "contact.search", detail=f"{len(results)} results")
    db.session.commit()
    return results


def set_legal_hold(actor: Actor, contact_id: int, reason: str) -> Contact:
    """A legal obligation to keep the contact's data: erasure and retention skip it
    until the hold is lifted (GDPR art. 17(3)(b), (e))."""
    contact = get_contact(contact_id)
    reason = " ".join((reason or "").split())
    if not reason:
        raise InvalidInput(N_("A legal hold needs its reason."), fields={"reason": ["Required."]})
    if len(reason) > 500:
        raise InvalidInput("The reason is too long.", fields={"reason": ["At most 500."]})
    contact.legal_hold_reason = reason
    audit(actor, "contact.legal_hold.set", contact.id)
    db.session.commit()
    return contact


def lift_legal_hold(actor: Actor, contact_id: int) -> Contact:
    contact = get_contact(contact_id)
    if contact.legal_hold_reason is None:
        raise Conflict(N_("This contact has no legal hold."), code="no_legal_hold")
    contact.legal_hold_reason = None
    audit(actor, "contact.legal_hold.lift", contact.id)
    db.session.commit()
    return contact


@dataclass(frozen=True)
class CompanyInput:
    name: str
    org_number: str | None = None
    country: str | None = None
    customer_since: date | None = None
    relationship_ended_at: date | None = None
    # Other systems' ids of the company: {system: id, or None to remove}.
    external_ids: Mapping[str, str | None] | None = None


@dataclass(frozen=True)
class CompanyUpserted:
    company: Company
    # How its customer relationship changed: "became_customer", "returned",
    # "ended" or None.
    change: str | None
    # What changed of a company that existed before, among what its contacts'
    # reads render (``crm.changes.COMPANY_MIRRORED`` and "external_ids").
    altered: frozenset[str]


_PROFILE_FIELDS = ("name", "phone", "country", "language")


def _limits(model: type[db.Model], names: Iterable[str]) -> dict[str, int | None]:  # type: ignore[name-defined]
    """The most characters each column of ``names`` holds (None: no limit)."""
    return {name: getattr(model.__table__.c[name].type, "length", None) for name in names}


# Country and language are read into codes (spaces around them trimmed), so
# only their characters are checked, not their length.
_CONTACT_LIMITS = _limits(Contact, ("name", "phone"))
_COMPANY_LIMITS = _limits(Company, ("name", "org_number"))


def check_company(data: CompanyInput) -> None:
    """InvalidInput when the company's text cannot be stored (a control
    character, or longer than its column), before anything is written."""
    check_stored_text(
        {"name": data.name, "org_number": data.org_number, "country": data.country},
        _COMPANY_LIMITS,
        within="company",
    )


def _upsert_company(data: CompanyInput) -> CompanyUpserted:
    """The company ``data`` names, created or updated; how its customer
    relationship changed; and what of it changed.

    A ``customer_since`` later than the day the relationship ended is a
    returning customer: the end is cleared (R1)."""
    # An empty org number is none: stored as "" it would be a second company
    # claiming the same (empty) number, and the unique index refused it (a 500).
    if data.org_number is not None and not data.org_number.strip():
        data = replace(data, org_number=None)
    check_company(data)
    company = None
    if data.org_number:
        company = db.session.scalar(sa.select(Company).where(Company.org_number == data.org_number))
    if company is None and not data.org_number and data.external_ids:
        # Without an org number another system's id names the company best.
        for system, value in external_ids.check(data.external_ids, "company").items():
            found = external_ids.find_company(system, value) if value is not None else None
            if found is not None:
                company = db.session.get(Company, found)
                break
    if company is None:
        company = (
            db.session.scalar(
                sa.select(Company).where(Company.name == data.name, Company.org_number.is_(None))
            )
            if not data.org_number
            else None
        )
    before = None
    if company is None:
        company = Company(name=data.name, org_number=data.org_number)
        db.session.add(company)
    else:
        before = {column: getattr(company, column) for column in change_feed.COMPANY_MIRRORED}
    company.name = data.name
    was_customer = company.is_customer
    had_ended = company.relationship_ended_at
    if data.country is not None:
        company.country = normalise_country(data.country)
    if data.customer_since is not None:
        company.customer_since = data.customer_since
        if (
            data.relationship_ended_at is None
            and company.relationship_ended_at is not None
            and data.customer_since > company.relationship_ended_at
        ):
            company.relationship_ended_at = None
    if data.relationship_ended_at is not None:
        company.relationship_ended_at = data.relationship_ended_at
    if (
        company.customer_since
        and company.relationship_ended_at
        and company.relationship_ended_at < company.customer_since
    ):
        raise InvalidInput(
            N_("The customer relationship cannot end before it started."),
            code="invalid_relationship",
            fields={"company": {"relationship_ended_at": ["Before customer_since."]}},
        )
    change = None
    if company.is_customer and not was_customer:
        change = "returned" if had_ended is not None else "became_customer"
    elif was_customer and company.relationship_ended_at is not None:
        change = "ended"
    altered: set[str] = set()
    if before is not None:
        altered = {c for c, value in before.items() if getattr(company, c) != value}
    if data.external_ids:
        db.session.flush()
        if before is not None and external_ids.changes_for_company(company.id, data.external_ids):
            altered.add("external_ids")
        external_ids.set_for_company(company.id, data.external_ids)
    return CompanyUpserted(company, change, frozenset(altered))


def _tell_company_contacts(upserted: CompanyUpserted | None) -> None:
    """Every contact of a company whose rendered data changed is changed too:
    a ``contact.updated`` item naming ``company`` each, and ``updated_at``
    moved (``crm.changes.record_company_updates``; set-based). After the
    caller's own items, so that a contact created in this transaction is
    told once, by its ``contact.created``."""
    if upserted is None or not upserted.altered:
        return
    change_feed.record_company_updates(
        [upserted.company.id],
        deciding=bool(change_feed.COMPANY_DECIDING.intersection(upserted.altered)),
    )


def upsert_company(data: CompanyInput, actor: Actor) -> Company:
    """The company ``data`` names, created or updated as ``upsert_contact``
    does it for a contact's company: its contacts told of what changed, a
    change of its customer relationship announced. Does not commit."""
    upserted = _upsert_company(data)
    _tell_company_contacts(upserted)
    _announce_company(actor, upserted.company, upserted.change)
    return upserted.company


def _announce_company(actor: Actor, company: Company, change: str | None) -> None:
    """Tell consent (inside the transaction) that a company's relationship changed."""
    if change is not None:
        company_relationship_changed.send(
            signal_sender(), company_id=company.id, change=change, actor=actor
        )


def _announce_move(actor: Actor, contact: Contact, from_company_id: int | None) -> None:
    if contact.company_id != from_company_id:
        contact_moved_company.send(
            signal_sender(),
            contact_id=contact.id,
            from_company_id=from_company_id,
            to_company_id=contact.company_id,
            actor=actor,
        )


def upsert_contact(
    email: str,
    profile: dict[str, Any],
    company: CompanyInput | None = None,
    actor: Actor | None = None,
    ids: Mapping[str, str | None] | None = None,
) -> tuple[Contact, bool]:
    """Create or update a contact by address. Returns (contact, created). Does not commit.

    ``ids`` sets the contact's external ids (``crm.external_ids.set_for_contact``:
    Conflict ``external_id_taken`` when another contact holds one).
    A restricted contact (GDPR art. 18) is not edited. A change of a company's
    customer relationship, and a known contact's move to another company, are
    announced inside the transaction (``kernel.signals``), on behalf of
    ``actor``.
    """
    address = normalise_email(email)
    values = clean_profile(profile)
    contact = db.session.scalar(sa.select(Contact).where(Contact.email == address))
    created = contact is None
    wanted_ids = external_ids.check(ids) if ids else {}
    if contact is None:
        contact = Contact(email=address, language=values.pop("language", None) or "en")
        db.session.add(contact)
    elif contact.is_restricted and (
        values or company or external_ids.changes_for_contact(contact.id, wanted_ids)
    ):
        raise refusal_while_restricted()
    changed = [key for key, value in values.items() if getattr(contact, key) != value]
    for key, value in values.items():
        setattr(contact, key, value)
    moved_from = contact.company_id
    upserted = _upsert_company(company) if company is not None else None
    if upserted is not None:
        contact.company = upserted.company
    db.session.flush()
    if wanted_ids:
        if not created and external_ids.changes_for_contact(contact.id, wanted_ids):
            changed.append("external_ids")
        external_ids.set_for_contact(contact.id, wanted_ids)
    if created:
        change_feed.record(change_feed.CONTACT_CREATED, [contact.id])
        contacts_addressed.send(signal_sender(), contact_ids=(contact.id,))
    else:
        if contact.company_id != moved_from:
            changed.append("company")
        change_feed.record_updates({contact.id: changed})
    _tell_company_contacts(upserted)
    who = actor or SYSTEM_ACTOR
    if upserted is not None:
        _announce_company(who, upserted.company, upserted.change)
    if not created:
        _announce_move(who, contact, moved_from)
    return contact, created


def clean_profile(profile: dict[str, Any]) -> dict[str, Any]:
    """The profile fields a contact takes, country and language normalised
    (InvalidInput when one cannot be read, or cannot be stored: a control
    character, or longer than its column)."""
    values = {k: v for k, v in profile.items() if k in _PROFILE_FIELDS}
    check_stored_text(values, _CONTACT_LIMITS)
    if "country" in values:
        values["country"] = normalise_country(values["country"])
    if "language" in values:
        values["language"] = normalise_language(values["language"])
    return values


def rectify_contact(actor: Actor, contact_id: int, changes: dict[str, Any]) -> Contact:
    """GDPR art. 16: correct a contact's data, and its external ids
    (``changes["external_ids"]``). Refused while processing is restricted."""
    contact = get_contact(contact_id)
    if contact.is_restricted:
        raise refusal_while_restricted()
    ids_changed = bool(changes.get("external_ids")) and bool(
        external_ids.changes_for_contact(contact.id, changes["external_ids"])
    )
    if changes.get("external_ids"):
        external_ids.set_for_contact(contact.id, changes["external_ids"])
    values = clean_profile(changes)
    if "email" in changes:
        address = normalise_email(changes["email"])
        if address != contact.email:
            clash = db.session.scalar(sa.select(Contact.id).where(Contact.email == address))
            if clash is not None:
                raise Conflict(N_("Another contact has that address."), code="email_taken")
            values["email"] = address
    changes_made = [key for key, value in values.items() if getattr(contact, key) != value]
    if ids_changed:
        changes_made.append("external_ids")
    moved_from = contact.company_id
    upserted = None
    if "company" in changes:
        changes_made.append("company")
        company = changes["company"]
        upserted = _upsert_company(company) if company is not None else None
        contact.company = upserted.company if upserted is not None else None
    for key, value in values.items():
        setattr(contact, key, value)
    db.session.flush()
    change_feed.record_updates({contact.id: changes_made})
    _tell_company_contacts(upserted)
    if "email" in values:
        contacts_addressed.send(signal_sender(), contact_ids=(contact.id,))
    if upserted is not None:
        _announce_company(actor, upserted.company, upserted.change)
    _announce_move(actor, contact, moved_from)
    audit(actor, "contact.rectify", contact.id, detail=",".join(sorted(changes)))
    db.session.commit()
    contact_rectified.send(signal_sender(), contact_id=contact.id, fields=tuple(sorted(changes)))
    return contact


def log_activity(
    actor: Actor,
    contact_id: int,
    kind: str,
    occurred_at: datetime,
    note: str | None,
    support: Mapping[str, str | None] | None = None,
    *,
    from_source: bool = False,
) -> Activity:
    """Record a CRM interaction. Only kinds the contact took part in move
    ``last_interaction_at``, which the retention rules count from (R13, R14),
    and only forward (``note_interaction``): a back-dated activity never brings
    the day a contact is purged closer (X16).

    Refused while processing is restricted (GDPR art. 18): an activity is new
    data about the person, and it would keep their data longer. An objection
    made in that call is recorded as an objection (consent), which is taken.

    ``support`` holds the general support information of the case (product,
    problem_category, resolution_code) as codes (``crm.models.SUPPORT_CODE``):
    they survive the case's anonymisation (R15), so they may never carry free
    text.

    ``from_source``: the activity is the contact's own history, read with its
    own timestamp from the system that brought the contact here (a CRM
    connector's sync created the contact). It then counts at its real date,
    bounded by now, also before the contact's creation here
    (``moves_last_interaction``; docs/retention.md, "History from a CRM")."""
    contact = get_contact(contact_id)
    activity = new_activity(actor, contact, kind, occurred_at, note, support)
    db.session.add(activity)
    if ActivityKind(activity.kind).is_interaction:
        note_interaction(contact, occurred_at, from_source=from_source)
    audit(actor, "activity.create", contact.id, detail=activity.kind)
    db.session.commit()
    return activity


def new_activity(
    actor: Actor,
    contact: Contact,
    kind: str,
    occurred_at: datetime,
    note: str | None,
    support: Mapping[str, str | None] | None = None,
) -> Activity:
    """The activity ``log_activity`` records, checked and not added: refused
    for a restricted contact (GDPR art. 18), an unknown kind, a time without
    a zone, before ``EARLIEST_ACTIVITY`` or in the future."""
    codes = _support_codes(support or {})
    if contact.is_restricted:
        raise refusal_while_restricted()
    try:
        activity_kind = ActivityKind(kind)
    except ValueError:
        raise InvalidInput(
            f"Unknown activity kind {kind!r}; use one of: {', '.join(k.value for k in ActivityKind)}.",
            code="unknown_activity_kind",
            fields={"kind": ["Unknown activity kind."]},
        ) from None
    if occurred_at.tzinfo is None:
        raise InvalidInput(
            N_("occurred_at needs a time zone."), fields={"occurred_at": ["No zone."]}
        )
    problem = activity_time_problem(occurred_at, utcnow())
    if problem:
        raise InvalidInput(
            problem,
            code="activity_too_early" if occurred_at < EARLIEST_ACTIVITY else "future_activity",
            fields={"occurred_at": [problem]},
        )
    return Activity(
        contact_id=contact.id,
        kind=activity_kind.value,
        occurred_at=occurred_at,
        author=actor.label,
        note=note,
        **codes,
    )


def _support_codes(support: Mapping[str, str | None]) -> dict[str, str | None]:
    unknown = sorted(set(support) - set(SUPPORT_FIELDS))
    if unknown:
        raise InvalidInput(f"Unknown support fields: {', '.join(unknown)}.")
    codes: dict[str, str | None] = {}
    for name in SUPPORT_FIELDS:
        value = support.get(name)
        if value is None:
            continue
        problem = support_code_problem(value)
        if problem:
            raise InvalidInput(problem, code="invalid_support_code", fields={name: [problem]})
        codes[name] = value
    return codes


def moves_last_interaction(
    last_interaction_at: datetime | None,
    created_at: datetime | None,
    at: datetime,
    *,
    from_source: bool = False,
) -> bool:
    """Whether an interaction at ``at`` moves a contact's ``last_interaction_at``.

    Only forward from the moment retention counts from: the last interaction,
    or the creation of a contact that never interacted. An interaction dated
    before the contact was created here leaves a contact without one as it
    is, counting from its creation: otherwise an activity dated 1900 on a
    contact created today made the next retention run delete it (X16).

    ``from_source``: the contact's history from the system that brought it
    here (``log_activity``). Its creation here is only the moment of the
    copy, so the history's own dates count, also before it: the clock then
    says when the person last took part, as the policy means. Still only
    forward from an interaction already noted.
    """
    if last_interaction_at is not None:
        return at > last_interaction_at
    if from_source:
        return True
    # Created in this transaction and not flushed yet: it is created now.
    return at >= (created_at or utcnow())


def note_interaction(contact: Contact, at: datetime, *, from_source: bool = False) -> None:
    """The one place ``last_interaction_at`` moves: an interaction the contact took part in.
    History from a source counts at its own date, but never later than now."""
    if from_source:
        at = min(at, utcnow())
    if moves_last_interaction(
        contact.last_interaction_at, contact.created_at, at, from_source=from_source
    ):
        contact.last_interaction_at = at


def read_activities(actor: Actor, contact_id: int) -> list[Activity]:
    """A contact's activities for a staff lookup, which is audited (R25)."""
    contact = get_contact(contact_id)
    activities = list_activities(contact.id)
    audit(actor, "activities.read", contact.id)
    db.session.commit()
    return activities


def list_activities(contact_id: int) -> list[Activity]:
    return list(
        db.session.scalars(
            sa.select(Activity)
            .where(Activity.contact_id == contact_id)
            .order_by(Activity.occurred_at.desc(), Activity.id.desc())
        )
    )


def owe_art14_notice(contact_ids: Iterable[int]) -> None:
    """GDPR art. 14: these contacts' data came from someone else (their employer,
    our customer, or a list): the notice is owed from now, unless it already
    is or was given (one notice per contact, ever). Set-based; part of the
    caller's transaction."""
    ids = list(contact_ids)
    if not ids:
        return
    db.session.execute(
        sa.update(Contact)
        .where(
            id_in(Contact.id, ids),
            Contact.art14_notice_owed_since.is_(None),
            Contact.art14_notice_given_at.is_(None),
        )
        .values(art14_notice_owed_since=utcnow())
        .execution_options(synchronize_session="fetch")
    )


def note_art14_notice_given(contact_ids: Iterable[int], via: str) -> list[int]:
    """A GDPR art. 14 notice reached these contacts (``via``: the template of the
    email that carried it, its own notice or a campaign's first email): it is
    no longer owed, the date it was given is kept and the audit log says so.
    Part of the caller's transaction (the send). Returns the contacts that
    were still owed one."""
    ids = list(contact_ids)
    if not ids:
        return []
    given = list(
        db.session.scalars(
            sa.update(Contact)
            .where(id_in(Contact.id, ids), Contact.art14_notice_owed_since.is_not(None))
            .values(art14_notice_owed_since=None, art14_notice_given_at=utcnow())
            .returning(Contact.id)
            .execution_options(synchronize_session=False)
        )
    )
    for contact_id in given:
        audit(SYSTEM_ACTOR, "contact.art14_notice_given", contact_id, detail=via)
    return given


def remove_contact(
    contact_id: int,
    *,
    tombstone: str = change_feed.CONTACT_ERASED,
    journal: bool = True,
    **tombstone_data: Any,
) -> None:
    """Delete a contact and everything that hangs on it. Does not commit.

    Activities, ledger events, the permission projection and any other row
    that references the contact go with it through ``ON DELETE CASCADE``
    (every foreign key to ``contact.id`` must declare it), except a rights
    request's record, which loses the id (``ON DELETE SET NULL``) and stays as
    the proof it was answered; audit entries keep what was done but lose the
    id, so nothing links back to the person.
    The suppression list holds no id and is untouched (R22).
    Used by erasure (GDPR art. 17) and by retention purges alike. The change
    feed gets a ``tombstone`` item (``contact.erased`` by default) with the
    contact's external ids, so that every connected system deletes its copy.
    """
    remove_contacts([contact_id], tombstone=tombstone, journal=journal, **tombstone_data)


def remove_contacts(
    contact_ids: Sequence[int],
    *,
    tombstone: str = change_feed.CONTACT_PURGED,
    journal: bool = True,
    **tombstone_data: Any,
) -> int:
    """``remove_contact`` for a batch: a fixed number of statements whatever the batch size,
    so a retention run stays a short transaction per batch. Does not commit.
    Returns how many contacts were deleted.

    The contacts' external ids (``crm.external_ids``) go too: kept, they would
    link another system's record back to an erased person. The change feed's
    tombstones (``tombstone``: ``contact.purged`` by default, with
    ``tombstone_data`` such as the rule) read them first, in the same
    transaction, one multi-row INSERT per thousand contacts. The API answers
    kept for an ``Idempotency-Key`` that name them become a 410 without
    personal data (``kernel.idempotency.answer_contacts_gone``).

    Each contact deleted gets a line in the erasure journal
    (``crm.erasure_journal``), synced before the caller commits, so that
    restoring an older backup cannot bring it back for good; ``journal=False``
    only for the re-application of that journal itself (``consent.restore``).
    """
    if not contact_ids:
        return 0
    ids = list(contact_ids)
    held = external_ids.for_contacts(ids)
    external_ids.delete_for_contacts(ids)
    # The answers kept for a repeat of a write about them lose their personal
    # data but keep answering (410), so that a retried create cannot bring an
    # erased person back (kernel.idempotency).
    idempotency.answer_contacts_gone(
        ids,
        code="contact_erased" if tombstone == change_feed.CONTACT_ERASED else "contact_purged",
    )
    db.session.execute(
        sa.update(AuditEntry)
        .where(id_in(AuditEntry.contact_id, ids))
        .values(contact_id=None)
        .execution_options(synchronize_session=False)
    )
    deleted = db.session.execute(
        sa.delete(Contact)
        .where(id_in(Contact.id, ids))
        .returning(Contact.id, Contact.address_hash)
        .execution_options(synchronize_session=False)
    ).all()
    gone = [row.id for row in deleted]
    if journal:
        kind = (
            erasure_journal.ERASURE
            if tombstone == change_feed.CONTACT_ERASED
            else erasure_journal.PURGE
        )
        erasure_journal.append(
            erasure_journal.entries_for(
                kind, [(row.id, row.address_hash) for row in deleted], utcnow(), **tombstone_data
            )
        )
    # Only the contacts really deleted here get a tombstone.
    change_feed.record_tombstones(tombstone, gone, held, **tombstone_data)
    db.session.expire_all()
    return len(gone)
