"""THE decision: may we market to this contact, on this topic and channel, and why?

The only code that turns the ledger projection, the suppression list and the
customer relationship into a yes or no (docs/rules.md X1, X2). Its callers:
the permission API and staff pages, the campaign audience, and the mailing
actor right before each send.

``decide`` is a pure function of a ``Standing`` (the facts about one contact)
so that its whole table can be tested without a database; ``standing_of`` and
``standings_by_email`` read those facts with a fixed number of queries.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import sqlalchemy as sa

from consent.models import ALL, Basis, PermissionState, Suppression
from consent.suppression import address_hash, mailbox_suppressions, suppressed_hashes
from consent.topics import InterestGround, MarketingPolicy, Topic, months_after, months_before
from crm.models import Company, Contact
from extensions import db
from kernel.i18n import N_


class Reason(enum.StrEnum):
    UNKNOWN_CONTACT = "unknown_contact"
    SUPPRESSED = "suppressed"
    OBJECTION = "objection"
    RESTRICTED = "restricted"
    UNDELIVERABLE = "undeliverable"
    UNSUBSCRIBED = "unsubscribed"
    CONSENT = "consent"
    CUSTOMER = "customer"
    INDUSTRY_LIST = "industry_list"
    PENDING_CONFIRMATION = "pending_confirmation"
    NO_BASIS = "no_basis"


# The labels pages show for these codes ("reason." ~ code), declared for extraction.
REASON_LABELS = (
    N_("reason.unknown_contact"),
    N_("reason.suppressed"),
    N_("reason.objection"),
    N_("reason.restricted"),
    N_("reason.undeliverable"),
    N_("reason.unsubscribed"),
    N_("reason.consent"),
    N_("reason.customer"),
    N_("reason.industry_list"),
    N_("reason.pending_confirmation"),
    N_("reason.no_basis"),
)


@dataclass(frozen=True)
class StateRow:
    """One row of the projection, detached from the session."""

    topic: str
    channel: str
    pending_since: datetime | None = None
    consent_since: datetime | None = None
    consent_event_id: int | None = None
    unsubscribed_since: datetime | None = None
    objected_since: datetime | None = None
    objection_event_id: int | None = None
    customer_since: datetime | None = None
    industry_list_since: datetime | None = None
    customer_event_id: int | None = None
    industry_list_event_id: int | None = None

    @classmethod
    def of(cls, row: PermissionState) -> StateRow:
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Standing:
    """Everything the decision needs to know about one contact."""

    contact_id: int
    email: str
    country: str | None = None
    suppressed_since: datetime | None = None
    restricted_since: datetime | None = None
    hard_bounced_at: datetime | None = None
    company_customer_since: date | None = None
    company_relationship_ended_at: date | None = None
    # The contact's company (None: it has none) and its last interaction the
    # person took part in: what a basis that lapses counts from (R1, R3).
    company_id: int | None = None
    last_interaction_at: datetime | None = None
    states: tuple[StateRow, ...] = field(default_factory=tuple)

    @property
    def has_company(self) -> bool:
        return self.company_id is not None or self.company_customer_since is not None


@dataclass(frozen=True)
class Decision:
    email: str
    contact_id: int | None
    topic: str
    channel: str
    allowed: bool
    basis: Basis | None
    reason: Reason
    since: datetime | None
    explanation: str
    # The ledger event behind the decision, for the evidence (R5).
    event_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """What ``DecisionSchema`` dumps, built directly: the batch check answers
        10,000 of these at once (a test holds the two equal)."""
        return {
            "email": self.email,
            "contact_id": self.contact_id,
            "topic": self.topic,
            "channel": self.channel,
            "allowed": self.allowed,
            "basis": self.basis.value if self.basis is not None else None,
            "reason": self.reason.value,
            "since": self.since.isoformat() if self.since is not None else None,
            "explanation": self.explanation,
            "event_id": self.event_id,
        }


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _fmt(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "an unknown time"


def decide(
    standing: Standing | None,
    *,
    email: str,
    topic: Topic,
    channel: str,
    at: datetime,
    policy: MarketingPolicy,
) -> Decision:
    """Apply the nine ordered rules of docs/rules.md X1. First match wins."""

    def result(
        allowed: bool,
        reason: Reason,
        since: datetime | None,
        explanation: str,
        basis: Basis | None = None,
        event_id: int | None = None,
    ) -> Decision:
        return Decision(
            email=email,
            contact_id=standing.contact_id if standing else None,
            topic=topic.key,
            channel=channel,
            allowed=allowed,
            basis=basis,
            reason=reason,
            since=since,
            explanation=explanation,
            event_id=event_id,
        )

    # 1. Unknown address, or on the suppression list (R22).
    if standing is None:
        return result(
            False,
            Reason.UNKNOWN_CONTACT,
            None,
            "Not allowed: we hold no contact with this address, so there is no basis to market.",
        )
    rows = [r for r in standing.states if r.channel in (ALL, channel)]
    blanket = [r for r in rows if r.topic == ALL]
    own = [r for r in rows if r.topic == topic.key]

    objection = min(
        (r for r in blanket if r.objected_since is not None),
        key=lambda r: r.objected_since,  # type: ignore[arg-type, return-value]
        default=None,
    )
    # An address on the suppression list is never marketed to (R22). When the
    # contact's own ledger holds the objection, that is the reason we give.
    if standing.suppressed_since is not None and objection is None:
        return result(
            False,
            Reason.SUPPRESSED,
            standing.suppressed_since,
            "Not allowed: this address is on the suppression list since "
            f"{_fmt(standing.suppressed_since)} because the person unsubscribed from everything "
            "or objected. Do not market to it on any basis.",
        )

    # 2. GDPR art. 21(2)-(3): an objection to direct marketing ends it, whatever
    # the basis (R10-R12). Nothing below may override this.
    if objection is not None:
        scope = "all direct marketing" if objection.channel == ALL else f"marketing by {channel}"
        return result(
            False,
            Reason.OBJECTION,
            objection.objected_since,
            f"Not allowed: the person objected to {scope} on "
            f"{_fmt(objection.objected_since)}. This overrides consent and legitimate interest.",
            event_id=objection.objection_event_id,
        )

    # 3. GDPR art. 18: processing restricted.
    if standing.restricted_since is not None:
        return result(
            False,
            Reason.RESTRICTED,
            standing.restricted_since,
            f"Not allowed: processing of this person's data is restricted since "
            f"{_fmt(standing.restricted_since)} (GDPR art. 18), until the restriction is lifted.",
        )

    # 4. A hard bounce: the address does not receive mail.
    if channel == "email" and standing.hard_bounced_at is not None:
        return result(
            False,
            Reason.UNDELIVERABLE,
            standing.hard_bounced_at,
            f"Not allowed: mail to this address bounced permanently on "
            f"{_fmt(standing.hard_bounced_at)}.",
        )

    consent_row = max(
        (r for r in own if r.consent_since is not None and Basis.CONSENT in topic.bases),
        key=lambda r: r.consent_since,  # type: ignore[arg-type, return-value]
        default=None,
    )
    consent_since = consent_row.consent_since if consent_row else None

    # 5. Unsubscribed from this topic, or from all marketing. Only a consent to
    # this topic given after the unsubscribe-from-all (a fresh double opt-in)
    # re-opens the topic; legitimate interest never does.
    topic_unsub = max(
        (r for r in own if r.unsubscribed_since is not None),
        key=lambda r: r.unsubscribed_since,  # type: ignore[arg-type, return-value]
        default=None,
    )
    if topic_unsub is not None:
        return result(
            False,
            Reason.UNSUBSCRIBED,
            topic_unsub.unsubscribed_since,
            f"Not allowed: the person unsubscribed from {topic.label('en')} on "
            f"{_fmt(topic_unsub.unsubscribed_since)}.",
        )
    all_unsub = max(
        (r for r in blanket if r.unsubscribed_since is not None),
        key=lambda r: r.unsubscribed_since,  # type: ignore[arg-type, return-value]
        default=None,
    )
    if all_unsub is not None and not (
        consent_since is not None and consent_since > all_unsub.unsubscribed_since  # type: ignore[operator]
    ):
        return result(
            False,
            Reason.UNSUBSCRIBED,
            all_unsub.unsubscribed_since,
            f"Not allowed: the person unsubscribed from all marketing on "
            f"{_fmt(all_unsub.unsubscribed_since)}.",
        )

    # 6. Confirmed consent to this topic (R2, R7).
    if consent_row is not None:
        return result(
            True,
            Reason.CONSENT,
            consent_since,
            f"Allowed: the person consented to {topic.label('en')} on {_fmt(consent_since)} "
            "and confirmed it by double opt-in or an equivalent recorded act.",
            basis=Basis.CONSENT,
            event_id=consent_row.consent_event_id,
        )

    # 7. Legitimate interest, on one of two grounds, each where both the topic
    # and the contact's country admit it and while it has not lapsed: a
    # customer relationship (R1, R4) or an industry list (R3).
    country = (standing.country or "").upper()
    notes: list[str] = []
    for ground in (policy.customer, policy.industry_list):
        found = _interest_basis(standing, ground, at, blanket)
        if found is None:
            continue
        if topic.key not in ground.topics:
            if topic.admits_legitimate_interest:
                notes.append(
                    f" The {_GROUND_LABELS[ground.kind]} basis does not apply: the policy "
                    f"does not use it for {topic.label('en')}."
                )
        elif not ground.admits(topic.key, country):
            notes.append(
                f" Legitimate interest does not apply: the contact's country "
                f"({country or 'unknown'}) does not admit B2B marketing to "
                f"{_GROUND_NAMES[ground.kind]} without consent."
            )
        elif found.lapsed is not None:
            notes.append(f" {found.lapsed}")
        else:
            return result(
                True,
                Reason.CUSTOMER if ground.kind == "customer" else Reason.INDUSTRY_LIST,
                found.since,
                f"Allowed: legitimate interest (GDPR art. 6(1)(f)) {found.why}; B2B "
                f"marketing of {topic.label('en')} to {_GROUND_NAMES[ground.kind]} is "
                f"permitted in {country} without consent.",
                basis=Basis.LEGITIMATE_INTEREST,
                event_id=_basis_event(blanket, ground.kind),
            )
    country_note = "".join(notes)

    # 8. Double opt-in sent but not yet confirmed.
    pending = next((r for r in own if r.pending_since is not None), None)
    if pending is not None:
        return result(
            False,
            Reason.PENDING_CONFIRMATION,
            pending.pending_since,
            f"Not allowed yet: the person asked for {topic.label('en')} on "
            f"{_fmt(pending.pending_since)} but has not confirmed the email link.{country_note}",
        )

    # 9. Nothing else: no basis.
    return result(
        False,
        Reason.NO_BASIS,
        None,
        f"Not allowed: no consent to {topic.label('en')} and no legitimate interest "
        f"that admits it.{country_note}",
    )


_GROUND_NAMES = {
    "customer": "customers' contacts",
    "industry_list": "addresses from industry lists",
}
_GROUND_LABELS = {"customer": "customer", "industry_list": "industry-list"}
_BASIS_ATTRIBUTE = {"customer": "customer_since", "industry_list": "industry_list_since"}


@dataclass(frozen=True)
class InterestBasis:
    """A legitimate-interest basis a contact holds on one ground: since when, the
    sentence that says why it applies, and, once lapsed, the sentence that says
    why and when it lapsed."""

    since: datetime
    why: str
    lapsed: str | None = None


def _interest_basis(
    standing: Standing, ground: InterestGround, at: datetime, blanket: Sequence[StateRow]
) -> InterestBasis | None:
    """The basis ``standing`` holds on ``ground`` at ``at``, live or lapsed; None
    without one. The SQL audience (``consent.audience``) restates these rules."""
    attribute = _BASIS_ATTRIBUTE[ground.kind]
    starts = [getattr(r, attribute) for r in blanket if getattr(r, attribute) is not None]
    if ground.kind == "customer" and standing.has_company:
        # R1: a company's contact is a customer contact while the company is a
        # customer, and for the grace period after the relationship ended; a
        # basis registered on the contact hangs on the same relationship.
        if standing.company_customer_since is None:
            if not starts:
                return None
            return InterestBasis(
                min(starts),
                "",
                lapsed="The customer basis ended: the contact's company is not a customer "
                "(the contact moved to another company, or the company never was one).",
            )
        since = min([*starts, _day_start(standing.company_customer_since)])
        ended = standing.company_relationship_ended_at
        if ended is None:
            return InterestBasis(since, f"as the contact of a customer company since {_fmt(since)}")
        lapses = _day_start(ended) + ground.grace
        if at >= lapses:
            return InterestBasis(
                since,
                "",
                lapsed=f"The customer basis ended on {_fmt(lapses)}: the company's customer "
                f"relationship ended on {ended.isoformat()} and the "
                f"{ground.grace.days}-day grace period is over.",
            )
        return InterestBasis(
            since,
            f"as the contact of a customer company since {_fmt(since)}, whose relationship "
            f"ended on {ended.isoformat()}, within the {ground.grace.days}-day grace period "
            f"(until {_fmt(lapses)})",
        )
    if not starts:
        return None
    # Without a company (customer) and for a list: the basis lives for
    # ``lapse_months`` from its start or the person's last interaction, the later.
    since = min(starts)
    anchor = max(
        [*starts, *([standing.last_interaction_at] if standing.last_interaction_at else [])]
    )
    lapses = months_after(anchor, ground.lapse_months)
    counted = "the contact's last interaction" if anchor not in starts else "its start"
    if ground.kind == "customer":
        what = "a customer basis registered on a contact without a company"
    else:
        what = "the address from an industry list"
    if not anchor > months_before(at, ground.lapse_months):
        return InterestBasis(
            since,
            "",
            lapsed=f"The {_GROUND_LABELS[ground.kind]} basis "
            f"lapsed on {_fmt(lapses)}: {what} lapses {ground.lapse_months} months after "
            f"{counted} ({_fmt(anchor)}).",
        )
    label = (
        "as a customer contact"
        if ground.kind == "customer"
        else "for an address from an industry list"
    )
    return InterestBasis(
        since,
        f"{label} since {_fmt(since)}, until {_fmt(lapses)} "
        f"({ground.lapse_months} months after {counted}, unless the person interacts again)",
    )


_BASIS_EVENT_ATTRIBUTE = {
    "customer": "customer_event_id",
    "industry_list": "industry_list_event_id",
}


def _basis_event(blanket: Sequence[StateRow], ground_kind: str) -> int | None:
    """The grant this ground's date comes from: its own column, never the other ground's."""
    since, event_id = _BASIS_ATTRIBUTE[ground_kind], _BASIS_EVENT_ATTRIBUTE[ground_kind]
    return next((getattr(r, event_id) for r in blanket if getattr(r, since)), None)


# Reading the facts -------------------------------------------------------------

_CHUNK = 10_000

_STATE_COLUMNS = tuple(
    getattr(PermissionState, name).label(f"state_{name}") for name in StateRow.__dataclass_fields__
)


def _standings(contacts: Sequence[tuple[Contact, Company | None]]) -> dict[int, Standing]:
    """Standings of contacts already loaded as objects (a page showing one contact)."""
    if not contacts:
        return {}
    ids = [c.id for c, _ in contacts]
    states: dict[int, list[StateRow]] = defaultdict(list)
    for row in db.session.scalars(
        sa.select(PermissionState).where(PermissionState.contact_id.in_(ids))
    ):
        states[row.contact_id].append(StateRow.of(row))
    hashes = {c.id: c.address_hash or address_hash(c.email) for c, _ in contacts}
    suppressed = suppressed_hashes(hashes.values())
    by_mailbox = mailbox_suppressions({c.id: c.email for c, _ in contacts})
    out = {}
    for contact, company in contacts:
        entry = suppressed.get(hashes[contact.id])
        out[contact.id] = Standing(
            contact_id=contact.id,
            email=contact.email,
            country=contact.country or (company.country if company else None),
            suppressed_since=_earliest(
                entry.created_at if entry else None, by_mailbox.get(contact.id)
            ),
            restricted_since=contact.restricted_at,
            hard_bounced_at=contact.hard_bounced_at,
            company_customer_since=company.customer_since if company else None,
            company_relationship_ended_at=company.relationship_ended_at if company else None,
            company_id=company.id if company else None,
            last_interaction_at=contact.last_interaction_at,
            states=tuple(states.get(contact.id, ())),
        )
    return out


_STANDING_COLUMNS = (
    Contact.id,
    Contact.email,
    Contact.address_hash,
    Contact.country,
    Contact.restricted_at,
    Contact.hard_bounced_at,
    Contact.company_id,
    Contact.last_interaction_at,
    Company.country.label("company_country"),
    Company.customer_since,
    Company.relationship_ended_at,
    Suppression.created_at.label("suppressed_since"),
    *_STATE_COLUMNS,
)


def _with_facts(statement: sa.Select) -> sa.Select:
    """``statement`` (whose FROM ends with contact) joined to what decides for it."""
    return (
        statement.outerjoin(Company, Contact.company_id == Company.id)
        .outerjoin(Suppression, Suppression.address_hash == Contact.address_hash)
        .outerjoin(PermissionState, PermissionState.contact_id == Contact.id)
    )


_STANDING_QUERY = _with_facts(sa.select(*_STANDING_COLUMNS))
# Built once: the permission API runs these on every request, and building a
# statement costs more than running it on a warm database.
_STANDINGS_BY_EMAIL = _STANDING_QUERY.where(Contact.email.in_(sa.bindparam("keys", expanding=True)))
_STANDINGS_BY_ID = _STANDING_QUERY.where(Contact.id.in_(sa.bindparam("keys", expanding=True)))


def _read_standings(statement: sa.Select, keys: list[Any]) -> dict[int, Standing]:
    """Standings of the contacts whose email or id is in ``keys``, in one query
    without ORM objects.

    The hot path of the permission API and the campaign audience: contact,
    company, suppression and projection rows come back as one joined result
    (a contact appears once per projection row).
    """
    # The connection does not autoflush as the session would: changes this
    # transaction has made to the projection must count (a no-op when clean).
    db.session.flush()
    return standings_of_rows(db.session.connection().execute(statement, {"keys": keys}).all())


def standings_beside(
    head: sa.FromClause, on: sa.ColumnElement[bool], *columns: Any, outer: bool = True
) -> sa.Select:
    """A statement for the standings of the contacts that ``head`` joins to
    ``on``, each row led by ``columns`` of ``head``. The permission checks'
    audit INSERT is the head (``consent.services._read_and_audit``): with
    ``outer``, its one row comes back even when no contact matched (the
    contact's columns are then NULL). Read the rows with ``standings_of_rows``.

    Built once by the caller: the same facts and joins as every other
    standing read, so the decision reads the same thing whichever way."""
    statement = sa.select(*columns, *_STANDING_COLUMNS).select_from(head)
    joined = statement.outerjoin(Contact, on) if outer else statement.join(Contact, on)
    return _with_facts(joined)


def email_in_keys() -> sa.ColumnElement[bool]:
    """The contact's address is in the expanding parameter ``keys``."""
    return Contact.email.in_(sa.bindparam("keys", expanding=True))


def standings_of_rows(rows: Sequence[sa.Row[Any]]) -> dict[int, Standing]:
    """Standings from the rows of a standings statement, by contact id (rows
    without a contact, from ``standings_beside``, are skipped)."""
    facts: dict[int, sa.Row[Any]] = {}
    states: dict[int, list[StateRow]] = defaultdict(list)
    for row in rows:
        if row.id is None:
            continue
        facts.setdefault(row.id, row)
        if row.state_topic is not None:
            states[row.id].append(StateRow(*row[-len(_STATE_COLUMNS) :]))
    # An address hash is written with every address; a row without one would
    # miss its suppression in the join, so it is looked up by the computed hash.
    unhashed = {i: address_hash(r.email) for i, r in facts.items() if r.address_hash is None}
    late = suppressed_hashes(unhashed.values())
    # The join finds each address's own entry; a sub-address (anna+x@) is also
    # blocked by its mailbox's (anna@), which only the address in hand can name.
    by_mailbox = mailbox_suppressions({i: r.email for i, r in facts.items()})
    out = {}
    for contact_id, row in facts.items():
        entry = late.get(unhashed[contact_id]) if contact_id in unhashed else None
        out[contact_id] = Standing(
            contact_id=contact_id,
            email=row.email,
            country=row.country or row.company_country,
            suppressed_since=_earliest(
                entry.created_at if entry else row.suppressed_since, by_mailbox.get(contact_id)
            ),
            restricted_since=row.restricted_at,
            hard_bounced_at=row.hard_bounced_at,
            company_customer_since=row.customer_since,
            company_relationship_ended_at=row.relationship_ended_at,
            company_id=row.company_id,
            last_interaction_at=row.last_interaction_at,
            states=tuple(states.get(contact_id, ())),
        )
    return out


def _earliest(own: datetime | None, mailbox: Suppression | None) -> datetime | None:
    """Since when an address is blocked: its own entry or its mailbox's, the older."""
    if mailbox is None:
        return own
    return mailbox.created_at if own is None else min(own, mailbox.created_at)


def standing_of(contact: Contact) -> Standing:
    return _standings([(contact, contact.company)])[contact.id]


def standings_by_email(emails: Iterable[str]) -> dict[str, Standing]:
    """Standings for normalised addresses, one query per 10,000 addresses."""
    wanted = list(dict.fromkeys(emails))
    out: dict[str, Standing] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        for standing in _read_standings(_STANDINGS_BY_EMAIL, chunk).values():
            out[standing.email] = standing
    return out


def standings_by_id(contact_ids: Iterable[int]) -> dict[int, Standing]:
    wanted = list(dict.fromkeys(contact_ids))
    out: dict[int, Standing] = {}
    for start in range(0, len(wanted), _CHUNK):
        out.update(_read_standings(_STANDINGS_BY_ID, wanted[start : start + _CHUNK]))
    return out
