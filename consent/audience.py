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
from sqlalchemy.orm import aliased

from consent.models import ALL, Basis, PermissionState, Suppression
from consent.policy import Reason
from consent.suppression import suppressed_sub_addresses
from consent.topics import MarketingPolicy, Topic, months_before
from crm.models import Company, Contact


@dataclass(frozen=True)
class _Rules:
    """The policy's rules for one topic and channel as conditions on one joined
    query: each is a rule of ``consent.policy.decide``, named as its reason."""

    query: sa.Select[Any]
    suppressed: sa.ColumnElement[bool]
    objection: sa.ColumnElement[bool]
    restricted: sa.ColumnElement[bool]
    undeliverable: sa.ColumnElement[bool]
    unsubscribed_topic: sa.ColumnElement[bool]
    unsubscribed_all: sa.ColumnElement[bool]
    consent: sa.ColumnElement[bool]
    customer: sa.ColumnElement[bool]
    industry_list: sa.ColumnElement[bool]
    pending: sa.ColumnElement[bool]


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

    # Rule 1: a contact's own suppression entry is joined by its hash; a
    # sub-address whose mailbox is suppressed (anna+x@ of anna@) has no hash
    # SQL could compute, so those contacts are named by id.
    suppressed: sa.ColumnElement[bool] = sa.exists().where(
        Suppression.address_hash == Contact.address_hash
    )
    blocked_by_mailbox = suppressed_sub_addresses()
    if blocked_by_mailbox:
        suppressed = sa.or_(suppressed, Contact.id.in_(blocked_by_mailbox))
    # Rules 2-5.
    objection = sa.or_(*(b.objected_since.is_not(None) for b in blanket))
    restricted = Contact.restricted_at.is_not(None)
    undeliverable = Contact.hard_bounced_at.is_not(None) if channel == "email" else sa.false()
    unsubscribed_topic = sa.or_(*(o.unsubscribed_since.is_not(None) for o in own))
    # Rule 6: a consent newer than any unsubscribe from all marketing.
    consent: sa.ColumnElement[bool] = sa.false()
    if Basis.CONSENT in topic.bases:
        consent = sa.or_(
            *(
                sa.and_(
                    o.consent_since.is_not(None),
                    *(
                        sa.or_(
                            b.unsubscribed_since.is_(None), b.unsubscribed_since < o.consent_since
                        )
                        for b in blanket
                    ),
                )
                for o in own
            )
        )
    # Rule 5 (all marketing): only a newer consent to this topic re-opens it.
    unsubscribed_all = sa.and_(
        sa.or_(*(b.unsubscribed_since.is_not(None) for b in blanket)), sa.not_(consent)
    )
    # Rule 7: legitimate interest on either ground, where the ground admits the
    # topic and the country, no unsubscribe from all marketing stands, and the
    # basis has not lapsed (consent.policy._interest_basis). The ledger folds a
    # legitimate-interest basis into the blanket row of all channels only
    # (consent.projection.fold), so the two blanket rows hold every basis.
    country = sa.func.coalesce(Contact.country, Company.country)
    no_blanket_unsubscribe = [b.unsubscribed_since.is_(None) for b in blanket]
    customer_ground, listed = policy.customer, policy.industry_list
    customer: sa.ColumnElement[bool] = sa.false()
    industry_list: sa.ColumnElement[bool] = sa.false()
    if topic.key in customer_ground.topics and customer_ground.countries:
        ended_before = (at - customer_ground.grace).date()
        relationship_live = sa.or_(
            Company.relationship_ended_at.is_(None), Company.relationship_ended_at > ended_before
        )
        cutoff = months_before(at, customer_ground.lapse_months)
        customer = sa.and_(
            country.in_(sorted(customer_ground.countries)),
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
        industry_list = sa.and_(
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
    # Rule 8: a double opt-in sent and not yet confirmed.
    pending = sa.or_(*(o.pending_since.is_not(None) for o in own))
    return _Rules(
        query,
        suppressed,
        objection,
        restricted,
        undeliverable,
        unsubscribed_topic,
        unsubscribed_all,
        consent,
        customer,
        industry_list,
        pending,
    )


def audience_query(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy
) -> sa.Select[Any]:
    """SELECT the ids of every contact the policy allows for ``topic`` by ``channel`` at ``at``."""
    rules = _rules(topic, channel, at, policy)
    blocks = [
        rules.suppressed,
        rules.objection,
        rules.restricted,
        rules.undeliverable,
        rules.unsubscribed_topic,
    ]
    bases = [rules.consent, rules.customer, rules.industry_list]
    return rules.query.where(*(sa.not_(b) for b in blocks), sa.or_(*bases))


def reason_of(rules: _Rules) -> sa.ColumnElement[str]:
    """The reason code ``consent.policy.decide`` gives, as one CASE in its order
    (first match wins): the same conditions as the audience, never a third copy."""
    return sa.case(
        (sa.and_(rules.suppressed, sa.not_(rules.objection)), Reason.SUPPRESSED.value),
        (rules.objection, Reason.OBJECTION.value),
        (rules.restricted, Reason.RESTRICTED.value),
        (rules.undeliverable, Reason.UNDELIVERABLE.value),
        (sa.or_(rules.unsubscribed_topic, rules.unsubscribed_all), Reason.UNSUBSCRIBED.value),
        (rules.consent, Reason.CONSENT.value),
        (rules.customer, Reason.CUSTOMER.value),
        (rules.industry_list, Reason.INDUSTRY_LIST.value),
        (rules.pending, Reason.PENDING_CONFIRMATION.value),
        else_=Reason.NO_BASIS.value,
    )


def reason_counts(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy
) -> dict[str, int]:
    """How many contacts ``decide`` gives each reason code for ``topic`` by
    ``channel`` at ``at``, in one grouped query (reasons no contact has are left out)."""
    from extensions import db

    plan_for_audience()
    rules = _rules(topic, channel, at, policy)
    per_contact = rules.query.add_columns(reason_of(rules).label("reason")).subquery()
    counted = sa.select(per_contact.c.reason, sa.func.count()).group_by(per_contact.c.reason)
    return {str(reason): int(count) for reason, count in db.session.execute(counted)}


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
    query = audience_query(topic, channel, at, policy).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(query)) or 0
