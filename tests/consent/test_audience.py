"""The set-based audience query and the policy agree on every contact."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from consent.audience import audience_merged, audience_query, audience_size
from consent.ledger import TAKEN_WHILE_RESTRICTED, record
from consent.models import EventKind, InterestKind
from consent.policy import Reason, decide, standings_by_id
from consent.suppression import suppress
from consent.topics import current_policy
from crm.models import Company, Contact
from extensions import db
from kernel.access import Actor
from tests.consent.test_marketing_policies import load

ACTOR = Actor(kind="cli", name="test")
NOW = datetime.now(UTC)


def _random_contact(rng: random.Random, index: int, companies: list[Company]) -> None:
    contact = Contact(
        email=f"person{index}@example{index % 7}.se",
        country=rng.choice([None, "SE", "DE", "NO"]),
        company=rng.choice([None, *companies]),
    )
    db.session.add(contact)
    db.session.flush()
    base = NOW - timedelta(days=400)

    def when() -> datetime:
        return base + timedelta(days=rng.randint(0, 390), minutes=rng.randint(0, 1000))

    topics = ["newsletter", "product-updates", "events", "surveys"]
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(
            [
                EventKind.REQUESTED,
                EventKind.CONFIRMED,
                EventKind.UNSUBSCRIBED,
                EventKind.OBJECTED,
                EventKind.BASIS_GRANTED,
                EventKind.RESTRICTED,
                EventKind.UNDELIVERABLE,
                EventKind.WITHDRAWN,
            ]
        )
        topic = rng.choice(["*", *topics]) if kind is EventKind.UNSUBSCRIBED else rng.choice(topics)
        channel = rng.choice(["*", "email", "phone"]) if kind is EventKind.OBJECTED else "email"
        if kind is EventKind.OBJECTED:
            topic = "*"
        if kind is EventKind.BASIS_GRANTED:
            topic, channel = "*", "*"
        if kind is EventKind.UNSUBSCRIBED and topic == "*":
            channel = rng.choice(["*", "email"])
        source = rng.choice(["double_opt_in", "api"])
        interest_kind = rng.choice([InterestKind.CUSTOMER, InterestKind.INDUSTRY_LIST]).value
        if contact.restricted_at is not None and kind not in TAKEN_WHILE_RESTRICTED:
            continue  # GDPR art. 18: the ledger takes no yes while restricted
        record(
            contact,
            kind,
            actor=ACTOR,
            at=when(),
            topic=topic,
            channel=channel,
            source=source,
            interest_kind=interest_kind,
        )
    if rng.random() < 0.08:
        suppress(contact.email, reason="test")
    # The last interaction the person took part in: what a customer basis
    # without a company and an industry list's basis count from (R1, R3).
    if rng.random() < 0.5:
        contact.last_interaction_at = NOW - timedelta(days=rng.randint(0, 1000))


def test_audience_query_and_policy_agree_on_every_contact(app_ctx) -> None:
    rng = random.Random(20261123)
    companies = [
        Company(name="Live AB", country="SE", customer_since=date(2020, 1, 1)),
        Company(
            name="Ended AB",
            country="SE",
            customer_since=date(2018, 1, 1),
            relationship_ended_at=NOW.date() - timedelta(days=400),
        ),
        Company(
            name="Grace AB",
            country="SE",
            customer_since=date(2018, 1, 1),
            relationship_ended_at=NOW.date() - timedelta(days=30),
        ),
        Company(name="Prospect GmbH", country="DE"),
        Company(name="Nordic AS", country="NO", customer_since=date(2021, 5, 1)),
        # Ended exactly one grace period before now: the boundary day itself.
        Company(
            name="Boundary AB",
            country="SE",
            customer_since=date(2019, 1, 1),
            relationship_ended_at=(NOW - current_policy().customer_grace).date(),
        ),
        Company(
            name="Day after AB",
            country="SE",
            customer_since=date(2019, 1, 1),
            relationship_ended_at=(NOW - current_policy().customer_grace).date()
            + timedelta(days=1),
        ),
    ]
    db.session.add_all(companies)
    for index, company in enumerate(companies):
        # One plain contact per company, so every relationship boundary is decided.
        db.session.add(Contact(email=f"plain{index}@example.se", country=None, company=company))
    for index in range(400):
        _random_contact(rng, index, companies)
    # Customer contacts at sub-addresses, every other one's mailbox suppressed:
    # the policy finds the mailbox's entry by hashing the address in hand, the
    # query names those contacts by id (consent.suppression.suppressed_sub_addresses).
    for index in range(20):
        db.session.add(Contact(email=f"tagged{index}+news@example.se", company=companies[0]))
        if index % 2:
            suppress(f"tagged{index}@example.se", reason="test")
    # Consent to a topic in both of its rows (all channels and email), and an
    # industry list's ground beside it: one contact on several rows of a rule.
    for index in range(6):
        contact = Contact(email=f"both{index}@example.se", country="SE")
        db.session.add(contact)
        db.session.flush()
        for channel in ("*", "email"):
            record(
                contact,
                EventKind.CONFIRMED,
                actor=ACTOR,
                at=NOW - timedelta(days=index),
                topic="newsletter",
                channel=channel,
                source="api",
            )
        if index % 2:
            record(
                contact,
                EventKind.BASIS_GRANTED,
                actor=ACTOR,
                at=NOW - timedelta(days=9),
                topic="*",
                channel="*",
                source="api",
                interest_kind=InterestKind.INDUSTRY_LIST.value,
            )
    db.session.commit()

    ids = [c for (c,) in db.session.execute(db.select(Contact.id))]
    standings = standings_by_id(ids)
    seen: set[Reason] = set()
    # The default policy, and one whose two grounds differ in countries, topics
    # and periods (HMS's example: DE for customers only, no surveys to lists).
    policies = (current_policy(), load("002-hms.toml"), load("004-advansor.toml"))
    moments = (NOW, NOW + timedelta(days=400), NOW + timedelta(days=800))
    for policy, at in ((p, m) for p in policies for m in moments):
        for topic in policy.topics.values():
            for channel in policy.channels:
                allowed = set()
                for contact_id, standing in standings.items():
                    decision = decide(
                        standing,
                        email=standing.email,
                        topic=topic,
                        channel=channel,
                        at=at,
                        policy=policy,
                    )
                    seen.add(decision.reason)
                    if decision.allowed:
                        allowed.add(contact_id)
                queried = set(db.session.scalars(audience_query(topic, channel, at, policy)))
                assert queried == allowed, (topic.key, channel, at, sorted(queried ^ allowed)[:10])
                # The merged shape (SQLite's audience_size), on either database.
                merged = list(db.session.scalars(audience_merged(topic, channel, at, policy)))
                assert merged == sorted(allowed), (
                    topic.key,
                    channel,
                    at,
                    sorted(set(merged) ^ allowed)[:10],
                )
                assert audience_size(topic, channel, at, policy) == len(allowed)
    # The population must exercise every rule the query mirrors.
    assert seen >= set(Reason) - {Reason.UNKNOWN_CONTACT}, set(Reason) - seen
