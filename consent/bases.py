"""The ledger's story of legitimate-interest bases: granted when a relationship
begins, ended when it ends (docs/rules.md R1, R3).

The decision (``consent.policy.decide``) applies every time limit itself, at
any moment asked; this module writes the ledger events that tell the story,
so that the evidence of a customer basis that comes from the company is an
event like every other basis's, and the end of a basis says who and why:

- a company becomes a customer, or returns as one: ``basis_granted`` for its
  contacts (``company_relationship_changed``, from crm);
- a company's relationship ends: ``basis_ended`` for its contacts, naming the
  grace period the policy still gives them;
- a contact moves to another company: ``basis_ended``, and ``basis_granted``
  if the new company is a customer (``contact_moved_company``, from crm);
- the daily run (``reconcile_bases``): ``basis_ended`` for every basis that
  lapsed by time (a grace period over, a customer contact without a company
  or an industry-list address without an interaction for the policy's
  months) and ``basis_granted`` for contacts of customer companies whose
  ledger holds no grant yet.

Every first grant of the customer basis owes the contact the art. 14 notice
(the employer gave us the data), unless it is owed or was given already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent.ledger import record, record_many, record_set
from consent.models import ALL, Basis, EventKind, InterestKind, PermissionState
from consent.topics import current_policy, months_before
from crm import services as crm
from crm.models import Company, Contact
from extensions import db
from kernel.access import Actor
from kernel.jobs import send_job
from kernel.signals import company_relationship_changed, contact_moved_company, day_started
from kernel.timestamps import utcnow

# The job of the daily run (declared in consent.tasks).
BASES_JOB = "reconcile_bases"
# The actor of the daily run's events.
DAILY_ACTOR = Actor(kind="system", name="daily-bases")
_CUSTOMER = InterestKind.CUSTOMER.value
_LIST = InterestKind.INDUSTRY_LIST.value
_STATE = PermissionState.__table__


def _held(column: str) -> sa.ColumnElement[bool]:
    """The contact's blanket row holds the basis ``column``."""
    return sa.exists().where(
        _STATE.c.contact_id == Contact.id,
        _STATE.c.topic == ALL,
        _STATE.c.channel == ALL,
        _STATE.c[column].is_not(None),
    )


def grant_company_basis(contacts: sa.Select[Any], actor: Actor, note: str, ref: str) -> int:
    """``basis_granted`` (customer) for the contacts ``contacts`` selects that do
    not hold it and are not restricted; set-based. Does not commit."""
    chosen = contacts.where(~_held("customer_since"), Contact.restricted_at.is_(None))
    granted = record_set(
        chosen,
        EventKind.BASIS_GRANTED,
        actor=actor,
        source="company",
        basis=Basis.LEGITIMATE_INTEREST.value,
        interest_kind=_CUSTOMER,
        source_ref=ref,
        note=note,
    )
    # GDPR art. 14: the customer company gave us its contact person.
    crm.owe_art14_notice(granted)
    return len(granted)


def _end(contacts: sa.Select[int, str], kind: str, actor: Actor, note: str, **more: Any) -> int:
    """``basis_ended`` of ``kind`` for the contacts ``contacts`` selects (id and
    email) that hold it. Does not commit."""
    column = "customer_since" if kind == _CUSTOMER else "industry_list_since"
    rows = db.session.execute(contacts.where(_held(column))).all()
    return len(
        record_many(
            rows,  # type: ignore[arg-type]
            EventKind.BASIS_ENDED,
            actor=actor,
            source=more.pop("source", "company"),
            basis=Basis.LEGITIMATE_INTEREST.value,
            interest_kind=kind,
            note=note,
            **more,
        )
    )


def end_industry_list(contact_ids: Sequence[int], actor: Actor, note: str, ref: str) -> int:
    """``basis_ended`` (industry list) for those of ``contact_ids`` that hold it,
    taken by staff (a bulk action on the contact list): the list's contacts
    are no longer to be marketed on that ground. Does not commit."""
    return _end(
        sa.select(Contact.id, Contact.email).where(Contact.id.in_(list(contact_ids))),
        _LIST,
        actor,
        note,
        source="staff",
        source_ref=ref,
    )


def _contacts_of(company_id: int) -> sa.Select[Any]:
    return sa.select(Contact.id).where(Contact.company_id == company_id)


def _on_company_changed(sender: Any, company_id: int, change: str, actor: Actor) -> None:
    company = db.session.get(Company, company_id)
    if company is None:
        return
    ref = f"company:{company_id}"
    if change in ("became_customer", "returned"):
        verb = "became a customer" if change == "became_customer" else "returned as a customer"
        grant_company_basis(
            _contacts_of(company_id),
            actor,
            f"The contact's company {verb} on {company.customer_since}.",
            ref,
        )
    elif change == "ended" and company.relationship_ended_at is not None:
        grace = current_policy().customer.grace
        until = company.relationship_ended_at + grace
        _end(
            sa.select(Contact.id, Contact.email).where(Contact.company_id == company_id),
            _CUSTOMER,
            actor,
            f"The company's customer relationship ended on {company.relationship_ended_at}; "
            f"the policy's {grace.days}-day grace period lets its contacts be marketed "
            f"on this basis until {until}.",
            source_ref=ref,
        )


def _on_contact_moved(
    sender: Any,
    contact_id: int,
    from_company_id: int | None,
    to_company_id: int | None,
    actor: Actor,
) -> None:
    contact = db.session.get(Contact, contact_id)
    if contact is None:
        return
    new = db.session.get(Company, to_company_id) if to_company_id is not None else None
    state = db.session.get(PermissionState, (contact_id, ALL, ALL))
    if state is not None and state.customer_since is not None:
        where = f"to company #{to_company_id}" if to_company_id is not None else "to no company"
        record(
            contact,
            EventKind.BASIS_ENDED,
            actor=actor,
            source="company",
            basis=Basis.LEGITIMATE_INTEREST.value,
            interest_kind=_CUSTOMER,
            source_ref=f"company:{from_company_id}" if from_company_id else None,
            note=f"The contact moved from company #{from_company_id or '-'} {where}: the "
            "customer relationship the basis hung on is no longer the contact's.",
        )
    if new is not None and new.is_customer and contact.restricted_at is None:
        record(
            contact,
            EventKind.BASIS_GRANTED,
            actor=actor,
            source="company",
            basis=Basis.LEGITIMATE_INTEREST.value,
            interest_kind=_CUSTOMER,
            source_ref=f"company:{new.id}",
            note=f"The contact joined company #{new.id}, a customer since {new.customer_since}.",
        )
        crm.owe_art14_notice([contact.id])


def _on_day_started(sender: Any, at: datetime, **_: object) -> None:
    send_job(BASES_JOB, at.isoformat())


def connect_signals() -> None:
    company_relationship_changed.connect(_on_company_changed)
    contact_moved_company.connect(_on_contact_moved)
    day_started.connect(_on_day_started)


@dataclass(frozen=True)
class BasesReport:
    granted: int = 0
    ended_company: int = 0
    ended_grace: int = 0
    ended_no_company: int = 0
    expired_lists: int = 0


def reconcile_bases(at: datetime | None = None, actor: Actor = DAILY_ACTOR) -> BasesReport:
    """The daily run: write the ledger events of every basis that began or lapsed
    without anyone recording it (R1, R3). Safe to run twice: a contact that
    holds a basis is granted nothing, one that does not is ended nothing.
    Commits."""
    at = at or utcnow()
    policy = current_policy()
    customer, listed = policy.customer, policy.industry_list
    who = sa.select(Contact.id, Contact.email).outerjoin(Company, Contact.company_id == Company.id)
    granted = grant_company_basis(
        sa.select(Contact.id)
        .join(Company, Contact.company_id == Company.id)
        .where(Company.customer_since.is_not(None), Company.relationship_ended_at.is_(None)),
        actor,
        "The contact's company is a customer (found by the daily run).",
        "company",
    )
    ended_company = _end(
        who.where(Contact.company_id.is_not(None), Company.customer_since.is_(None)),
        _CUSTOMER,
        actor,
        "The contact's company is not a customer: the customer basis ended.",
    )
    last_day = (at - customer.grace).date()
    ended_grace = _end(
        who.where(Company.relationship_ended_at <= last_day),
        _CUSTOMER,
        actor,
        f"The company's customer relationship ended and the {customer.grace.days}-day "
        "grace period is over.",
    )
    ended_no_company = _end(
        _lapsed(
            who.where(Contact.company_id.is_(None)), "customer_since", at, customer.lapse_months
        ),
        _CUSTOMER,
        actor,
        f"A customer contact without a company: no interaction for "
        f"{customer.lapse_months} months since the basis began or the last interaction.",
        source="policy",
    )
    expired = _end(
        _lapsed(who, "industry_list_since", at, listed.lapse_months),
        _LIST,
        actor,
        f"The industry list's basis expired: {listed.lapse_months} months since the import "
        "and no interaction of the person since.",
        source="policy",
    )
    db.session.commit()
    return BasesReport(granted, ended_company, ended_grace, ended_no_company, expired)


def _lapsed(
    contacts: sa.Select[int, str], column: str, at: datetime, months: int
) -> sa.Select[int, str]:
    """Those of ``contacts`` whose basis ``column`` began, and who last
    interacted, no later than ``months`` before ``at`` (consent.policy)."""
    cutoff = months_before(at, months)
    return contacts.where(
        sa.exists().where(
            _STATE.c.contact_id == Contact.id,
            _STATE.c.topic == ALL,
            _STATE.c.channel == ALL,
            _STATE.c[column] <= cutoff,
        ),
        sa.or_(Contact.last_interaction_at.is_(None), Contact.last_interaction_at <= cutoff),
    )
