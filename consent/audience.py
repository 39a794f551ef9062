"""Who may receive marketing on a topic and channel, as one set-based query.

The query mirrors ``consent.policy.decide`` rule for rule so that a campaign
of a million contacts is one SELECT, not a million decisions. It is a
pre-filter: the last word before each send is still the policy's, and
``tests/consent/test_audience.py`` proves the two agree on a population that
covers every reason code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import Alias, CompoundSelect, _CompoundSelectKeyword

from consent.models import ALL, Basis, PermissionState, Suppression
from consent.policy import Reason
from consent.suppression import suppressed_sub_addresses
from consent.topics import MarketingPolicy, Topic, months_before
from crm.models import HARD_BOUNCED, RESTRICTED, Company, Contact


@dataclass(frozen=True)
class _Rules:
    """The decision's rules for one topic and channel as SQL conditions over one
    query: the contacts, their company and the four projection rows the policy
    reads. Each field is one rule of ``consent.policy.decide``, in its order;
    ``audience_query`` keeps the contacts no block stops and some basis allows,
    ``contacts_with_reason`` names the first rule each contact meets."""

    query: sa.Select[Any]
    suppressed: sa.ColumnElement[bool]
    objection: sa.ColumnElement[bool]
    restricted: sa.ColumnElement[bool]
    undeliverable: sa.ColumnElement[bool] | None
    # Rule 5: unsubscribed from the topic, or from all marketing without a newer consent.
    own_unsubscribed: sa.ColumnElement[bool]
    all_unsubscribed: sa.ColumnElement[bool]
    consent: list[sa.ColumnElement[bool]]
    customer: sa.ColumnElement[bool] | None
    industry_list: sa.ColumnElement[bool] | None
    pending: sa.ColumnElement[bool]
    blocks: list[sa.ColumnElement[bool]]


def _rules(topic: Topic, channel: str, at: datetime, policy: MarketingPolicy) -> _Rules:
    """One pass over the contacts. The policy reads at most four projection rows
    of a contact for one topic and channel: the topic's and the blanket
    (``*``) row, each for the channel and for all channels. They are unique by
    the projection's primary key, so each is one LEFT JOIN (a hash join over
    the table on PostgreSQL, a primary-key lookup on SQLite) and every rule
    is a condition on the joined row. The earlier UNION of one join per basis
    re-ran the blocks for each basis (4.1x the raw count; docs/benchmarks.md).

    Building it reads the database once: the contacts at a sub-address whose
    mailbox is suppressed (``consent.suppression.suppressed_sub_addresses``).
    """

    query = sa.select(Contact.id).outerjoin(Company, Contact.company_id == Company.id)

    def slot(topic_key: str, slot_channel: str) -> type[PermissionState]:
        nonlocal query
        state = aliased(PermissionState)
        query = query.outerjoin(
            state,
            sa.and_(
                state.contact_id == Contact.id,
                state.topic == topic_key,
                state.channel == slot_channel,
            ),
        )
        return state

    own = [slot(topic.key, ALL), slot(topic.key, channel)]
    blanket = [slot(ALL, ALL), slot(ALL, channel)]

    # Rules 1-5: nothing blocks. A contact's own suppression entry is joined by
    # its hash; a sub-address whose mailbox is suppressed (anna+x@ of anna@)
    # has no hash SQL could compute, so those contacts are named by id.
    own_entry = sa.exists().where(Suppression.address_hash == Contact.address_hash)
    blocks = [
        ~own_entry,
        *(b.objected_since.is_(None) for b in blanket),
        Contact.restricted_at.is_(None),
        *(o.unsubscribed_since.is_(None) for o in own),
    ]
    undeliverable = None
    if channel == "email":
        blocks.append(Contact.hard_bounced_at.is_(None))
        undeliverable = Contact.hard_bounced_at.is_not(None)
    suppressed: sa.ColumnElement[bool] = own_entry
    blocked_by_mailbox = suppressed_sub_addresses()
    if blocked_by_mailbox:
        blocks.append(Contact.id.not_in(blocked_by_mailbox))
        suppressed = sa.or_(own_entry, Contact.id.in_(blocked_by_mailbox))

    consent: list[sa.ColumnElement[bool]] = []
    # Rule 6: a consent newer than any unsubscribe from all marketing.
    if Basis.CONSENT in topic.bases:
        consent = [
            sa.and_(
                o.consent_since.is_not(None),
                *(
                    sa.or_(b.unsubscribed_since.is_(None), b.unsubscribed_since < o.consent_since)
                    for b in blanket
                ),
            )
            for o in own
        ]
    # Rule 7: legitimate interest on either ground, where the ground admits the
    # topic and the country, no unsubscribe from all marketing stands, and the
    # basis has not lapsed (consent.policy._interest_basis). The ledger folds a
    # legitimate-interest basis into the blanket row of all channels only
    # (consent.projection.fold), so the two blanket rows hold every basis.
    country = sa.func.coalesce(Contact.country, Company.country)
    no_blanket_unsubscribe = [b.unsubscribed_since.is_(None) for b in blanket]
    customer, listed = policy.customer, policy.industry_list
    customer_basis = listed_basis = None
    if topic.key in customer.topics and customer.countries:
        ended_before = (at - customer.grace).date()
        relationship_live = sa.or_(
            Company.relationship_ended_at.is_(None), Company.relationship_ended_at > ended_before
        )
        cutoff = months_before(at, customer.lapse_months)
        customer_basis = sa.and_(
            country.in_(sorted(customer.countries)),
            *no_blanket_unsubscribe,
            sa.or_(
                # R1: a company's contacts, while it is a customer (and the grace).
                sa.and_(
                    Contact.company_id.is_not(None),
                    Company.customer_since.is_not(None),
                    relationship_live,
                ),
                # A customer basis on a contact without a company lapses
                # lapse_months after its start or the last interaction.
                sa.and_(
                    Contact.company_id.is_(None),
                    sa.or_(
                        *(
                            sa.and_(
                                b.customer_since.is_not(None),
                                sa.or_(
                                    b.customer_since > cutoff,
                                    Contact.last_interaction_at > cutoff,
                                ),
                            )
                            for b in blanket
                        )
                    ),
                ),
            ),
        )
    if topic.key in listed.topics and listed.countries:
        cutoff = months_before(at, listed.lapse_months)
        listed_basis = sa.and_(
            country.in_(sorted(listed.countries)),
            *no_blanket_unsubscribe,
            sa.or_(
                *(
                    sa.and_(
                        b.industry_list_since.is_not(None),
                        # R3: expires expiry_months after the import or the
                        # person's last interaction, the later.
                        sa.or_(
                            b.industry_list_since > cutoff,
                            Contact.last_interaction_at > cutoff,
                        ),
                    )
                    for b in blanket
                )
            ),
        )
    return _Rules(
        query=query,
        suppressed=suppressed,
        objection=sa.or_(*(b.objected_since.is_not(None) for b in blanket)),
        restricted=Contact.restricted_at.is_not(None),
        undeliverable=undeliverable,
        own_unsubscribed=sa.or_(*(o.unsubscribed_since.is_not(None) for o in own)),
        all_unsubscribed=sa.and_(
            sa.or_(*(b.unsubscribed_since.is_not(None) for b in blanket)),
            # Only a consent to the topic newer than the unsubscribe re-opens it.
            sa.not_(sa.or_(*consent)) if consent else sa.true(),
        ),
        consent=consent,
        customer=customer_basis,
        industry_list=listed_basis,
        pending=sa.or_(*(o.pending_since.is_not(None) for o in own)),
        blocks=blocks,
    )


def audience_query(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy
) -> sa.Select[Any]:
    """SELECT the ids of every contact the policy allows for ``topic`` by ``channel`` at ``at``."""
    rules = _rules(topic, channel, at, policy)
    bases = [*rules.consent, *(b for b in (rules.customer, rules.industry_list) if b is not None)]
    if not bases:
        return sa.select(Contact.id).where(sa.false())
    return rules.query.where(*rules.blocks, sa.or_(*bases))


class _Chain(CompoundSelect):
    """A compound SELECT written without parentheses inside its parent: SQLite
    reads no parenthesised compound, and ``A UNION B EXCEPT C`` is read left to
    right by SQLite and PostgreSQL alike, as ``(A UNION B) EXCEPT C``."""

    inherit_cache = True

    def self_group(self, against: Any = None) -> Any:
        return self


def _chain(keyword: _CompoundSelectKeyword, *selects: Any) -> Any:
    return selects[0] if len(selects) == 1 else _Chain(keyword, *selects)


class _ContactsByCompany(Alias):
    """The contact table read by its company (``INDEXED BY ix_contact_company_id``
    on SQLite): the customers' term of ``audience_merged`` starts from the
    customer companies. Without it SQLite read all contacts whenever its
    statistics called the index useless (every contact without a company, as
    in the benchmark), 0.17 s of CPU at 1,000,000 contacts for an empty term."""

    inherit_cache = True


@compiles(_ContactsByCompany)
def _contacts_by_company(element: _ContactsByCompany, compiler: Any, **kw: Any) -> str:
    return str(compiler.visit_alias(element, **kw))


@compiles(_ContactsByCompany, "sqlite")
def _contacts_by_company_sqlite(element: _ContactsByCompany, compiler: Any, **kw: Any) -> str:
    text = str(compiler.visit_alias(element, **kw))
    return f"{text} INDEXED BY ix_contact_company_id" if kw.get("asfrom") else text


def audience_merged(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy
) -> sa.Select[Any] | CompoundSelect:
    """SELECT the audience's ids, merged (``_merged_parts``), in id order."""
    merged, decided_one_by_one = _merged_parts(topic, channel, at, policy)
    return CompoundSelect(_CompoundSelectKeyword.UNION, merged, decided_one_by_one).order_by(
        sa.literal_column("1")
    )


def _merged_parts(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy
) -> tuple[Any, sa.Select[Any]]:
    """The same audience as ``audience_query``, as sets of contact ids merged in
    id order: the shape ``audience_size`` and the campaign's queue use on
    SQLite, which has no hash join (``audience_query`` there looks up four
    projection rows, the suppression entry and the company of every contact,
    8.2x a raw count at 1,000,000 contacts; docs/benchmarks.md).

    ``(basis_1 UNION basis_2 ...) EXCEPT blocks UNION (audience_query over U)
    ORDER BY id``, where each term walks one index of one rule in id order
    (migration 0040), so that SQLite merges sorted streams instead of looking
    rows up. It is ``decide``, rule for rule, by this argument (the agreement
    test is tests/consent/test_audience.py, the same as ``audience_query``'s):

    - U is the contacts with an unsubscribe from all marketing in a blanket
      row of the channel (``*`` or its own). Only there do the rules compare
      two rows (a consent newer than the unsubscribe; no legitimate interest
      under it). U is blocked in the merged part and decided by
      ``audience_query`` itself, contact by contact (the last term).
    - Outside U, the bases lose their clause on the blanket unsubscribe (it
      holds), and each is a set of ids: a consent in an own row; a customer's
      contact (company a customer, within the grace after the relationship
      ended, which depends on ``at``: the same ``relationship_ended_at >
      (at - grace)`` as ``audience_query``) or a customer ground on a contact
      without a company, not lapsed; an industry-list ground, not lapsed;
      each ground only in its countries and topics.
    - The blocks (rules 1-5) are a union of ids: an own suppression entry, a
      sub-address whose mailbox is suppressed, an objection in a blanket row,
      restricted, hard-bounced (email), an unsubscribe in an own row, and U.
    """
    slot_channels = [ALL] if channel == ALL else [ALL, channel]
    at_country = sa.func.coalesce(Contact.country, Company.country)

    def rows(topic_key: str, column: Any) -> sa.Select[Any]:
        """The contacts whose row of the topic, for the channel or for all
        channels, holds ``column``: one range of the rule's index, in contact
        order (a contact with both rows comes twice; UNION and EXCEPT count
        it once)."""
        return sa.select(PermissionState.contact_id.label("id")).where(
            PermissionState.topic == topic_key,
            PermissionState.channel.in_(slot_channels),
            column.is_not(None),
        )

    bases: list[sa.Select[Any]] = []
    customer, listed = policy.customer, policy.industry_list
    if topic.key in customer.topics and customer.countries:
        ended_before = (at - customer.grace).date()
        employee = _ContactsByCompany._construct(Contact.__table__, name="employee")
        bases.append(
            # R1: a company's contacts, while it is a customer (and the grace).
            # From the customer companies to their contacts (_ContactsByCompany).
            sa.select(employee.c.id.label("id"))
            .join(Company, employee.c.company_id == Company.id)
            .where(
                employee.c.company_id.in_(
                    sa.select(Company.id).where(
                        Company.customer_since.is_not(None),
                        sa.or_(
                            Company.relationship_ended_at.is_(None),
                            Company.relationship_ended_at > ended_before,
                        ),
                    )
                ),
                sa.func.coalesce(employee.c.country, Company.country).in_(
                    sorted(customer.countries)
                ),
            )
        )
        cutoff = months_before(at, customer.lapse_months)
        # A customer ground on a contact without a company (so its country
        # is the contact's) lapses lapse_months after its start or the last
        # interaction.
        bases.append(
            rows(ALL, PermissionState.customer_since)
            .join(Contact, Contact.id == PermissionState.contact_id)
            .where(
                Contact.company_id.is_(None),
                sa.or_(
                    PermissionState.customer_since > cutoff, Contact.last_interaction_at > cutoff
                ),
                Contact.country.in_(sorted(customer.countries)),
            )
        )
    if topic.key in listed.topics and listed.countries:
        cutoff = months_before(at, listed.lapse_months)
        # R3: expires expiry_months after the import or the last interaction.
        bases.append(
            rows(ALL, PermissionState.industry_list_since)
            .join(Contact, Contact.id == PermissionState.contact_id)
            .outerjoin(Company, Contact.company_id == Company.id)
            .where(
                sa.or_(
                    PermissionState.industry_list_since > cutoff,
                    Contact.last_interaction_at > cutoff,
                ),
                at_country.in_(sorted(listed.countries)),
            )
        )
    if Basis.CONSENT in topic.bases:
        # The biggest term last: a merge passes the terms before it once more.
        bases.append(rows(topic.key, PermissionState.consent_since))
    if not bases:
        return sa.select(Contact.id).where(sa.false()), sa.select(Contact.id).where(sa.false())

    blocks: list[sa.Select[Any]] = [
        sa.select(Contact.id.label("id"))
        .select_from(Suppression)
        .join(Contact, Contact.address_hash == Suppression.address_hash),
        rows(ALL, PermissionState.objected_since),
        sa.select(Contact.id.label("id")).where(RESTRICTED),
        rows(topic.key, PermissionState.unsubscribed_since),
        rows(ALL, PermissionState.unsubscribed_since),
    ]
    if channel == "email":
        blocks.append(sa.select(Contact.id.label("id")).where(HARD_BOUNCED))
    blocked_by_mailbox = suppressed_sub_addresses()
    if blocked_by_mailbox:
        blocks.append(sa.select(Contact.id.label("id")).where(Contact.id.in_(blocked_by_mailbox)))
    blocked = sa.union(*blocks).subquery("blocked")
    unsubscribed_from_all = sa.select(PermissionState.contact_id).where(
        PermissionState.topic == ALL,
        PermissionState.channel.in_(slot_channels),
        PermissionState.unsubscribed_since.is_not(None),
    )
    decided_one_by_one = audience_query(topic, channel, at, policy).where(
        Contact.id.in_(unsubscribed_from_all)
    )
    merged = _chain(
        _CompoundSelectKeyword.EXCEPT,
        _chain(_CompoundSelectKeyword.UNION, *bases),
        sa.select(blocked.c.id),
    )
    return merged, decided_one_by_one


def _reason(rules: _Rules) -> sa.ColumnElement[str]:
    """The first rule a contact meets, each a WHEN in the policy's order, as in ``decide``."""
    whens: list[tuple[sa.ColumnElement[bool], Reason]] = [
        # An objection in the contact's own ledger is named over the suppression it caused.
        (sa.and_(rules.suppressed, sa.not_(rules.objection)), Reason.SUPPRESSED),
        (rules.objection, Reason.OBJECTION),
        (rules.restricted, Reason.RESTRICTED),
    ]
    if rules.undeliverable is not None:
        whens.append((rules.undeliverable, Reason.UNDELIVERABLE))
    whens += [
        (rules.own_unsubscribed, Reason.UNSUBSCRIBED),
        (rules.all_unsubscribed, Reason.UNSUBSCRIBED),
    ]
    if rules.consent:
        whens.append((sa.or_(*rules.consent), Reason.CONSENT))
    if rules.customer is not None:
        whens.append((rules.customer, Reason.CUSTOMER))
    if rules.industry_list is not None:
        whens.append((rules.industry_list, Reason.INDUSTRY_LIST))
    whens.append((rules.pending, Reason.PENDING_CONFIRMATION))
    return sa.case(
        *((cond, sa.literal(code.value)) for cond, code in whens),
        else_=sa.literal(Reason.NO_BASIS.value),
    )


def contacts_with_reason(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy, reason: Reason
) -> sa.Select[Any]:
    """SELECT the ids of the contacts whose decision for ``topic`` by ``channel`` at
    ``at`` has ``reason``: the same rules as ``audience_query``, each a WHEN in the
    policy's order so that the first rule a contact meets names it, as in
    ``decide``. One condition on the same joins, so that a caller may add its
    own conditions, order and limit to the SELECT (the contact list pages it
    by id, ``consent.contact_filters``). The agreement test is
    tests/consent/test_contact_filters.py."""
    rules = _rules(topic, channel, at, policy)
    return rules.query.where(_reason(rules) == reason.value)


def audience_ids(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy
) -> sa.Select[Any] | CompoundSelect:
    """The audience's ids in the fastest shape for the database: one pass of
    joins on PostgreSQL (hash joins), the merged rules on SQLite."""
    from extensions import db

    if db.session.get_bind().dialect.name == "sqlite":
        return audience_merged(topic, channel, at, policy)
    return audience_query(topic, channel, at, policy)


def plan_for_audience() -> None:
    """Tune the current transaction for one big audience query.

    On PostgreSQL, JIT-compiling this plan cost more than it saved (2.9 s of a
    16 s run over a million contacts); the setting ends with the transaction.
    """
    from extensions import db

    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SET LOCAL jit = off"))


def audience_size(topic: Topic, channel: str, at: datetime, policy: MarketingPolicy) -> int:
    from extensions import db

    plan_for_audience()
    if db.session.get_bind().dialect.name == "sqlite":
        # The two parts of the merged shape are disjoint: counted apart, the
        # merged ids pass one merge fewer.
        # In id order, so that SQLite merges the rules' ids (a compound
        # without an ORDER BY would collect them in temporary B-trees).
        return sum(
            db.session.scalar(
                sa.select(sa.func.count()).select_from(
                    part.order_by(sa.literal_column("1")).subquery()
                )
            )
            or 0
            for part in _merged_parts(topic, channel, at, policy)
        )
    query = audience_query(topic, channel, at, policy).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(query)) or 0


def reason_counts(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy
) -> dict[str, int]:
    """How many contacts ``decide`` gives each reason code for ``topic`` by
    ``channel`` at ``at``: the reason CASE of ``contacts_with_reason`` grouped, one pass over the contacts
    (reasons no contact has are left out). The dashboard's reachable audience."""
    from extensions import db

    plan_for_audience()
    rules = _rules(topic, channel, at, policy)
    per_contact = rules.query.add_columns(_reason(rules).label("reason")).subquery()
    counted = sa.select(per_contact.c.reason, sa.func.count()).group_by(per_contact.c.reason)
    return {str(reason): int(count) for reason, count in db.session.execute(counted)}
