"""Who may receive marketing on a topic and channel, as one set-based query.

The query mirrors ``consent.policy.decide`` rule for rule so that a campaign
of a million contacts is one SELECT, not a million decisions. It is a
pre-filter: the last word before each send is still the policy's, and
``tests/consent/test_audience.py`` proves the two agree on a population that
covers every reason code.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from consent.models import ALL, Basis, PermissionState, Suppression
from consent.topics import MarketingPolicy, Topic
from crm.models import Company, Contact


def audience_query(
    topic: Topic, channel: str, at: datetime, policy: MarketingPolicy
) -> sa.Select[tuple[int]]:
    """SELECT the ids of every contact the policy allows for ``topic`` by ``channel`` at ``at``."""

    def rows(*where: sa.ColumnElement[bool]) -> sa.Exists:
        state = aliased(PermissionState)
        conditions = [state.contact_id == Contact.id, *(w(state) for w in where)]  # type: ignore[operator]
        return sa.exists().where(*conditions)

    def blanket(s: type[PermissionState]) -> sa.ColumnElement[bool]:
        return sa.and_(s.topic == ALL, s.channel.in_([ALL, channel]))

    def own(s: type[PermissionState]) -> sa.ColumnElement[bool]:
        return sa.and_(s.topic == topic.key, s.channel.in_([ALL, channel]))

    # Rules 1-5: nothing blocks.
    blocks = [
        ~sa.exists().where(Suppression.address_hash == Contact.address_hash),
        ~rows(blanket, lambda s: s.objected_since.is_not(None)),
        Contact.restricted_at.is_(None),
        ~rows(own, lambda s: s.unsubscribed_since.is_not(None)),
    ]
    if channel == "email":
        blocks.append(Contact.hard_bounced_at.is_(None))

    bases: list[sa.ColumnElement[bool]] = []
    # Rule 6: a consent newer than any unsubscribe from all marketing.
    if Basis.CONSENT in topic.bases:
        consent = aliased(PermissionState)
        unsubscribe = aliased(PermissionState)
        newer_than_unsubscribes = ~sa.exists().where(
            unsubscribe.contact_id == consent.contact_id,
            unsubscribe.topic == ALL,
            unsubscribe.channel.in_([ALL, channel]),
            unsubscribe.unsubscribed_since >= consent.consent_since,
        )
        bases.append(
            sa.exists().where(
                consent.contact_id == Contact.id,
                consent.topic == topic.key,
                consent.channel.in_([ALL, channel]),
                consent.consent_since.is_not(None),
                newer_than_unsubscribes,
            )
        )
    # Rule 7: legitimate interest, where topic and country admit it and no
    # unsubscribe from all marketing stands.
    if topic.admits_legitimate_interest and policy.legitimate_interest_countries:
        ended_before = (at - policy.customer_grace).date()
        live_customer = sa.and_(
            sa.or_(
                Company.customer_since.is_not(None),
                rows(lambda s: s.topic == ALL, lambda s: s.customer_since.is_not(None)),
            ),
            sa.or_(
                Company.relationship_ended_at.is_(None),
                Company.relationship_ended_at > ended_before,
            ),
        )
        listed = rows(blanket, lambda s: s.industry_list_since.is_not(None))
        bases.append(
            sa.and_(
                sa.func.coalesce(Contact.country, Company.country).in_(
                    sorted(policy.legitimate_interest_countries)
                ),
                ~rows(blanket, lambda s: s.unsubscribed_since.is_not(None)),
                sa.or_(live_customer, listed),
            )
        )
    if not bases:
        return sa.select(Contact.id).where(sa.false())
    return (
        sa.select(Contact.id)
        .outerjoin(Company, Contact.company_id == Company.id)
        .where(*blocks, sa.or_(*bases))
    )


def audience_size(topic: Topic, channel: str, at: datetime, policy: MarketingPolicy) -> int:
    from extensions import db

    query = audience_query(topic, channel, at, policy).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(query)) or 0
