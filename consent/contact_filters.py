"""Which contacts a filter names: the contact list's filters, a segment's rule.

One frozen ``ContactFilter`` travels through URLs and storage as plain
strings (``parse_filter`` and its inverse ``filter_args``) and becomes one
``SELECT contact.id`` (``matching_contacts``) that the list pages by id, the
export streams and a segment narrows a campaign's audience with.

The decision filter names what ``consent.policy.decide`` answers for a topic
and channel: "allowed", or the reason code of a contact's decision. It is not
a second decision: "allowed" is the campaign audience
(``consent.audience.audience_query``) and a reason code is the same rules
read in the policy's order (``consent.audience.contacts_with_reason``), both in the
table of copies in ``consent.projection`` with their agreement tests.

The basis filters name what the ledger recorded (a consent, a customer or
industry-list basis), live or lapsed; whether it still allows marketing is
the decision filter's question.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from consent.audience import audience_query, contacts_with_reason
from consent.deliverability import COMPLAINT
from consent.models import ALL, Basis, BounceReport, ConsentEvent, InterestKind, PermissionState
from consent.policy import Reason
from consent.topics import current_policy
from crm.models import Company, Contact, ExternalId, external_system_problem
from kernel.countries import COUNTRY_CODES, LANGUAGE_CODES
from kernel.errors import N_, InvalidInput
from kernel.inputs import MAX_ROW_ID

ALLOWED = "allowed"
# Every answer the decision filter takes: allowed, or why not (or why yes).
DECISIONS = (ALLOWED, *(r.value for r in Reason))
BOUNCED, COMPLAINED, DELIVERABLE = "bounced", "complained", "ok"
DELIVERABILITY = (DELIVERABLE, BOUNCED, COMPLAINED)


def filter_choices() -> dict[str, Any]:
    """What a filter form offers (the contact list's, a segment's): the policy's
    topics and channels, the reason codes, the bases and deliverability states."""
    policy = current_policy()
    return {
        "topics": list(policy.marketing_topics.values()),
        "channels": policy.channels,
        "decisions": [ALLOWED, *(r.value for r in Reason if r is not Reason.UNKNOWN_CONTACT)],
        "bases": [b.value for b in Basis],
        "basis_kinds": [k.value for k in InterestKind],
        "deliverability": DELIVERABILITY,
    }


YES, NO = "yes", "no"
# A person inactive for longer than a century is not a filter anyone means.
MAX_DAYS = 36_500
MAX_TEXT = 200
# The prefix ``consent.imports.applying`` writes on every event of an import batch.
IMPORT_REF = "import-batch:"
_SOURCE = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,31}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ContactFilter:
    """Every field optional: None filters nothing. Dates are whole days, both ends
    included."""

    topic: str | None = None
    channel: str | None = None
    decision: str | None = None
    basis: str | None = None
    basis_kind: str | None = None
    country: str | None = None
    language: str | None = None
    company: str | None = None
    is_customer: bool | None = None
    source: str | None = None
    import_batch_id: int | None = None
    created_from: date | None = None
    created_to: date | None = None
    last_interaction_from: date | None = None
    last_interaction_to: date | None = None
    deliverability: str | None = None
    active_within_days: int | None = None
    external_system: str | None = None

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


FIELDS = tuple(f.name for f in fields(ContactFilter))


def _refuse(name: str, message: str, **values: object) -> InvalidInput:
    """The refusal of filter field ``name``: ``message`` is a catalog text
    (``N_``) with its ``values`` apart, so that the list page shows it in the
    reader's language; the field's name is the form's, as in the query string."""
    refusal = InvalidInput(message, code="invalid_filter", values=values)
    refusal.fields = {name: [refusal.message]}
    return refusal


def _label(name: str) -> str:
    return name.replace("_", " ")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _refuse(
            name,
            N_("Unknown %(field)s %(value)r; use one of: %(choices)s."),
            field=_label(name),
            value=value,
            choices=", ".join(choices),
        )
    return value


def _day(name: str, value: str) -> date:
    try:
        if not _DAY.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise _refuse(
            name,
            N_("%(field)s %(value)r is not a date; write it as YYYY-MM-DD."),
            field=_label(name).capitalize(),
            value=value,
        ) from None


def _number(name: str, value: str, highest: int) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= highest:
        raise _refuse(
            name,
            N_("%(field)s must be a whole number from 1 to %(highest)s."),
            field=_label(name).capitalize(),
            highest=highest,
        )
    return int(value)


def _text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise _refuse(
            name,
            N_("%(field)s is longer than %(most)s characters."),
            field=_label(name).capitalize(),
            most=MAX_TEXT,
        )
    return value


def parse_filter(args: Mapping[str, str]) -> ContactFilter:
    """The filter named by ``args`` (a query string, a stored segment); keys it does
    not know are left for the caller (the page's cursor), empty values filter
    nothing. A value that names nothing real (an unknown topic, reason code,
    country, a date that is not one) raises ``InvalidInput`` saying which and
    why, rather than quietly listing everyone."""
    given = {k: args[k].strip() for k in FIELDS if k in args and args[k].strip()}
    policy = current_policy()
    values: dict[str, Any] = {}
    if "topic" in given:
        values["topic"] = policy.topic(given["topic"]).key
    if "channel" in given:
        values["channel"] = policy.check_channel(given["channel"])
    if "decision" in given:
        values["decision"] = _choice("decision", given["decision"], DECISIONS)
        if "topic" not in values or "channel" not in values:
            raise _refuse(
                "decision",
                N_(
                    "A decision filter needs a topic and a channel: "
                    "the decision is per topic and channel."
                ),
            )
    if "basis" in given:
        values["basis"] = _choice("basis", given["basis"], tuple(b.value for b in Basis))
    if "basis_kind" in given:
        values["basis_kind"] = _choice(
            "basis_kind", given["basis_kind"], tuple(k.value for k in InterestKind)
        )
    if "country" in given:
        country = given["country"].upper()
        if country not in COUNTRY_CODES:
            raise _refuse(
                "country",
                N_("Unknown country %(value)r; use a two-letter ISO 3166 code such as SE."),
                value=given["country"],
            )
        values["country"] = country
    if "language" in given:
        language = given["language"].lower()
        if language not in LANGUAGE_CODES:
            raise _refuse(
                "language",
                N_("Unknown language %(value)r; use a two-letter ISO 639-1 code such as sv."),
                value=given["language"],
            )
        values["language"] = language
    if "company" in given:
        values["company"] = _text("company", given["company"])
    if "is_customer" in given:
        values["is_customer"] = _choice("is_customer", given["is_customer"], (YES, NO)) == YES
    if "source" in given:
        if not _SOURCE.fullmatch(given["source"]):
            raise _refuse(
                "source",
                N_(
                    "A source is 1-32 lower-case letters, digits or '_.:-', e.g. 'api' or 'import'."
                ),
            )
        values["source"] = given["source"]
    if "import_batch_id" in given:
        values["import_batch_id"] = _number("import_batch_id", given["import_batch_id"], MAX_ROW_ID)
    for name in ("created_from", "created_to", "last_interaction_from", "last_interaction_to"):
        if name in given:
            values[name] = _day(name, given[name])
    for start, end in (
        ("created_from", "created_to"),
        ("last_interaction_from", "last_interaction_to"),
    ):
        if start in values and end in values and values[start] > values[end]:
            raise _refuse(
                end,
                N_("%(field)s is before %(start)s."),
                field=_label(end).capitalize(),
                start=_label(start),
            )
    if "deliverability" in given:
        values["deliverability"] = _choice(
            "deliverability", given["deliverability"], DELIVERABILITY
        )
    if "active_within_days" in given:
        values["active_within_days"] = _number(
            "active_within_days", given["active_within_days"], MAX_DAYS
        )
    if "external_system" in given:
        problem = external_system_problem(given["external_system"])
        if problem:
            raise _refuse("external_system", problem)
        values["external_system"] = given["external_system"]
    return ContactFilter(**values)


def filter_args(f: ContactFilter) -> dict[str, str]:
    """The strings ``parse_filter`` reads back as ``f``: for links and storage."""
    out: dict[str, str] = {}
    for name in FIELDS:
        value = getattr(f, name)
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = YES if value else NO
        elif isinstance(value, date):
            out[name] = value.isoformat()
        else:
            out[name] = str(value)
    return out


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _between(column: Any, start: date | None, end: date | None) -> list[sa.ColumnElement[bool]]:
    """Both days included: from the start of ``start`` to the end of ``end``."""
    conditions = []
    if start is not None:
        conditions.append(column >= _day_start(start))
    if end is not None:
        conditions.append(column < _day_start(end + timedelta(days=1)))
    return conditions


def _event(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return sa.exists().where(ConsentEvent.contact_id == Contact.id, *conditions)


def _state(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return sa.exists().where(PermissionState.contact_id == Contact.id, *conditions)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _basis(f: ContactFilter) -> list[sa.ColumnElement[bool]]:
    """Contacts whose ledger holds the basis, live or lapsed. A consent is per
    topic (the filter's, when it names one); a legitimate-interest basis sits
    on the blanket row (``consent.projection.fold``), and a company's contacts
    hold a customer basis through the company's relationship (R1)."""
    conditions = []
    if f.basis == Basis.CONSENT:
        topic = [PermissionState.topic == f.topic] if f.topic else []
        conditions.append(_state(PermissionState.consent_since.is_not(None), *topic))
    # Scalar subqueries, not EXISTS or IN: PostgreSQL turns an EXISTS or IN
    # under an OR into a "hashed SubPlan" that reads every matching row of the
    # table before the first contact (280 ms at 1,000,000 contacts), because
    # it costs the OR for every contact and not for the page's LIMIT. A scalar
    # subquery stays a primary-key lookup per contact walked in id order. Both
    # bases sit only on the blanket row of all channels (fold), so one row.
    customer_here = _blanket(PermissionState.customer_since).is_not(None)
    company_customer = (
        sa.select(Company.customer_since)
        .where(Company.id == Contact.company_id)
        .scalar_subquery()
        .is_not(None)
    )
    customer = sa.or_(customer_here, company_customer)
    listed = _blanket(PermissionState.industry_list_since).is_not(None)
    if f.basis == Basis.LEGITIMATE_INTEREST:
        conditions.append(
            sa.or_(
                _blanket(
                    sa.func.coalesce(
                        PermissionState.customer_since, PermissionState.industry_list_since
                    )
                ).is_not(None),
                company_customer,
            )
        )
    if f.basis_kind == InterestKind.CUSTOMER:
        conditions.append(customer)
    elif f.basis_kind == InterestKind.INDUSTRY_LIST:
        conditions.append(listed)
    return conditions


def _blanket(column: Any) -> sa.ScalarSelect[Any]:
    """``column`` of the contact's blanket row of all channels (``*``, ``*``), NULL
    when there is none: where ``consent.projection.fold`` keeps both
    legitimate-interest bases."""
    return (
        sa.select(column)
        .where(
            PermissionState.contact_id == Contact.id,
            PermissionState.topic == ALL,
            PermissionState.channel == ALL,
        )
        .scalar_subquery()
    )


def _decision(f: ContactFilter, at: datetime) -> sa.Select[Any]:
    """The contacts of the decision filter, as a SELECT of ``Contact.id`` that the
    other filters' conditions, a cursor and an order can join: the campaign
    audience for "allowed", the audience's rules read in order for a reason."""
    if f.decision is None or f.topic is None or f.channel is None:
        return sa.select(Contact.id)
    policy = current_policy()
    topic = policy.topic(f.topic)
    if f.decision == ALLOWED:
        return audience_query(topic, f.channel, at, policy)
    return contacts_with_reason(topic, f.channel, at, policy, Reason(f.decision))


def _deliverability(f: ContactFilter) -> list[sa.ColumnElement[bool]]:
    complained = sa.exists().where(
        BounceReport.contact_id == Contact.id, BounceReport.type == COMPLAINT
    )
    if f.deliverability == BOUNCED:
        return [Contact.hard_bounced_at.is_not(None)]
    if f.deliverability == COMPLAINED:
        return [complained]
    if f.deliverability == DELIVERABLE:
        return [Contact.hard_bounced_at.is_(None), ~complained]
    return []


def filter_conditions(f: ContactFilter, *, at: datetime) -> list[sa.ColumnElement[bool]]:
    """The WHERE conditions of ``f`` but the decision, on ``Contact`` alone (no join)."""
    conditions = [*_basis(f), *_deliverability(f)]
    if f.country is not None:
        conditions.append(Contact.country == f.country)
    if f.language is not None:
        conditions.append(Contact.language == f.language)
    if f.company is not None:
        prefix = _escape_like(f.company.lower()) + "%"
        conditions.append(
            Contact.company_id.in_(
                sa.select(Company.id).where(sa.func.lower(Company.name).like(prefix, escape="\\"))
            )
        )
    if f.is_customer is not None:
        # As ``Company.is_customer``: a customer whose relationship has not ended.
        customers = sa.select(Company.id).where(
            Company.customer_since.is_not(None), Company.relationship_ended_at.is_(None)
        )
        if f.is_customer:
            conditions.append(Contact.company_id.in_(customers))
        else:
            conditions.append(
                sa.or_(Contact.company_id.is_(None), Contact.company_id.not_in(customers))
            )
    if f.source is not None:
        conditions.append(_event(ConsentEvent.source == f.source))
    if f.import_batch_id is not None:
        conditions.append(_event(ConsentEvent.source_ref == f"{IMPORT_REF}{f.import_batch_id}"))
    conditions += [condition for _column, condition in time_ranges(f, at=at)]
    if f.external_system is not None:
        conditions.append(
            sa.exists().where(
                ExternalId.owner_type == "contact",
                ExternalId.owner_id == Contact.id,
                ExternalId.system == f.external_system,
            )
        )
    return conditions


def time_ranges(f: ContactFilter, *, at: datetime) -> list[tuple[Any, sa.ColumnElement[bool]]]:
    """The filter's conditions on a moment of the contact (created, last
    interaction, recency), each with its column: the list reads a rare range
    from the column's index instead of walking ids (``consent.contact_list``)."""
    ranges: list[tuple[Any, sa.ColumnElement[bool]]] = [
        (Contact.created_at, c) for c in _between(Contact.created_at, f.created_from, f.created_to)
    ]
    ranges += [
        (Contact.last_interaction_at, c)
        for c in _between(
            Contact.last_interaction_at, f.last_interaction_from, f.last_interaction_to
        )
    ]
    if f.active_within_days is not None:
        ranges.append(
            (
                Contact.last_interaction_at,
                Contact.last_interaction_at >= at - timedelta(days=f.active_within_days),
            )
        )
    return ranges


def matching_contacts(f: ContactFilter, *, at: datetime) -> sa.Select[Any]:
    """SELECT the ids (``Contact.id``) of the contacts ``f`` names at ``at``.

    One SELECT, no subquery of ids: a page adds ``Contact.id > cursor``, the
    order by id and its limit, so that the database walks contacts in id order
    and stops at a page's worth instead of building the whole set first."""
    return _decision(f, at).where(*filter_conditions(f, at=at))
