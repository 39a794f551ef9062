"""The decision table (docs/rules.md X1, in order), and its invariants."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent.models import ALL, Basis
from consent.policy import Reason, Standing, StateRow, decide
from consent.topics import MarketingPolicy

POLICY = MarketingPolicy.from_mapping(
    {
        "policy_version": "1.0",
        "channels": ["email", "phone"],
        "legitimate_interest": {"countries": ["SE"], "customer_grace_days": 30},
        "double_opt_in": {"countries": ["DE"]},
        "topics": {
            "newsletter": {"bases": ["consent"]},
            "events": {"bases": ["consent", "legitimate_interest"]},
            "surveys": {"bases": ["legitimate_interest"]},
        },
    }
)
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
T0 = NOW - timedelta(days=100)
T1 = NOW - timedelta(days=50)
T2 = NOW - timedelta(days=10)


def standing(**kwargs: object) -> Standing:
    rows = kwargs.pop("rows", ())
    return Standing(
        contact_id=7,
        email="a@b.se",
        country=kwargs.pop("country", "SE"),
        states=tuple(rows),
        **kwargs,
    )  # type: ignore[arg-type]


def blanket(**kwargs: object) -> StateRow:
    return StateRow(topic=ALL, channel=kwargs.pop("channel", ALL), **kwargs)  # type: ignore[arg-type]


def topic_row(topic: str = "events", **kwargs: object) -> StateRow:
    return StateRow(topic=topic, channel=kwargs.pop("channel", "email"), **kwargs)  # type: ignore[arg-type]


CUSTOMER = blanket(customer_since=T0)
CONSENTED = topic_row(consent_since=T1, consent_event_id=3)

# (case, standing, topic, channel, allowed, reason, basis, since)
TABLE = [
    ("1 unknown address", None, "events", "email", False, Reason.UNKNOWN_CONTACT, None, None),
    (
        "1 suppressed, even as a consenting customer",
        standing(suppressed_since=T2, rows=[CUSTOMER, CONSENTED]),
        "events",
        "email",
        False,
        Reason.SUPPRESSED,
        None,
        T2,
    ),
    (
        "2 objection beats consent and customer",
        standing(rows=[CUSTOMER, CONSENTED, blanket(objected_since=T2)]),
        "events",
        "email",
        False,
        Reason.OBJECTION,
        None,
        T2,
    ),
    (
        "2 objection reported even when also suppressed",
        standing(suppressed_since=T2, rows=[blanket(objected_since=T1)]),
        "events",
        "email",
        False,
        Reason.OBJECTION,
        None,
        T1,
    ),
    (
        "2 objection to this channel",
        standing(rows=[CUSTOMER, blanket(channel="email", objected_since=T1)]),
        "events",
        "email",
        False,
        Reason.OBJECTION,
        None,
        T1,
    ),
    (
        "2 objection to another channel leaves this one",
        standing(rows=[CUSTOMER, blanket(channel="phone", objected_since=T1)]),
        "events",
        "email",
        True,
        Reason.CUSTOMER,
        Basis.LEGITIMATE_INTEREST,
        T0,
    ),
    (
        "3 restricted",
        standing(restricted_since=T1, rows=[CUSTOMER, CONSENTED]),
        "events",
        "email",
        False,
        Reason.RESTRICTED,
        None,
        T1,
    ),
    (
        "4 hard bounce blocks email",
        standing(hard_bounced_at=T1, rows=[CONSENTED]),
        "events",
        "email",
        False,
        Reason.UNDELIVERABLE,
        None,
        T1,
    ),
    (
        "4 hard bounce does not block phone",
        standing(hard_bounced_at=T1, rows=[CUSTOMER]),
        "events",
        "phone",
        True,
        Reason.CUSTOMER,
        Basis.LEGITIMATE_INTEREST,
        T0,
    ),
    (
        "5 unsubscribed from the topic",
        standing(rows=[CUSTOMER, topic_row(unsubscribed_since=T1)]),
        "events",
        "email",
        False,
        Reason.UNSUBSCRIBED,
        None,
        T1,
    ),
    (
        "5 unsubscribed from all beats an older consent",
        standing(rows=[CONSENTED, blanket(unsubscribed_since=T2)]),
        "events",
        "email",
        False,
        Reason.UNSUBSCRIBED,
        None,
        T2,
    ),
    (
        "5 unsubscribed from all beats legitimate interest",
        standing(rows=[CUSTOMER, blanket(unsubscribed_since=T2)]),
        "events",
        "email",
        False,
        Reason.UNSUBSCRIBED,
        None,
        T2,
    ),
    (
        "5 unsubscribe-all blocks legitimate interest despite a newer consent the topic does not take",
        standing(
            rows=[CUSTOMER, blanket(unsubscribed_since=T0), topic_row("surveys", consent_since=T1)]
        ),
        "surveys",
        "email",
        False,
        Reason.UNSUBSCRIBED,
        None,
        T0,
    ),
    (
        "6 a consent newer than unsubscribe-all opens its topic",
        standing(rows=[blanket(unsubscribed_since=T0), CONSENTED]),
        "events",
        "email",
        True,
        Reason.CONSENT,
        Basis.CONSENT,
        T1,
    ),
    (
        "6 consent",
        standing(rows=[CONSENTED]),
        "events",
        "email",
        True,
        Reason.CONSENT,
        Basis.CONSENT,
        T1,
    ),
    (
        "6 consent is per topic",
        standing(rows=[topic_row("newsletter", consent_since=T1)]),
        "events",
        "email",
        False,
        Reason.NO_BASIS,
        None,
        None,
    ),
    (
        "6 consent wins over customer",
        standing(rows=[CUSTOMER, CONSENTED]),
        "events",
        "email",
        True,
        Reason.CONSENT,
        Basis.CONSENT,
        T1,
    ),
    (
        "7 customer of a customer company",
        standing(company_customer_since=date(2020, 1, 1)),
        "events",
        "email",
        True,
        Reason.CUSTOMER,
        Basis.LEGITIMATE_INTEREST,
        datetime(2020, 1, 1, tzinfo=UTC),
    ),
    (
        "7 customer relationship ended beyond the grace period",
        standing(
            company_customer_since=date(2020, 1, 1), company_relationship_ended_at=date(2026, 4, 1)
        ),
        "events",
        "email",
        False,
        Reason.NO_BASIS,
        None,
        None,
    ),
    (
        "7 customer relationship ended within the grace period",
        standing(
            company_customer_since=date(2020, 1, 1), company_relationship_ended_at=date(2026, 5, 20)
        ),
        "events",
        "email",
        True,
        Reason.CUSTOMER,
        Basis.LEGITIMATE_INTEREST,
        datetime(2020, 1, 1, tzinfo=UTC),
    ),
    (
        "7 industry list",
        standing(rows=[blanket(industry_list_since=T1)]),
        "events",
        "email",
        True,
        Reason.INDUSTRY_LIST,
        Basis.LEGITIMATE_INTEREST,
        T1,
    ),
    (
        "7 customer basis without a company, within 24 months of the last interaction",
        standing(
            rows=[blanket(customer_since=NOW - timedelta(days=1000))],
            last_interaction_at=NOW - timedelta(days=700),
        ),
        "events",
        "email",
        True,
        Reason.CUSTOMER,
        Basis.LEGITIMATE_INTEREST,
        NOW - timedelta(days=1000),
    ),
    (
        "7 customer basis without a company lapsed 24 months after the last interaction",
        standing(
            rows=[blanket(customer_since=NOW - timedelta(days=1000))],
            last_interaction_at=NOW - timedelta(days=750),
        ),
        "events",
        "email",
        False,
        Reason.NO_BASIS,
        None,
        None,
    ),
    (
        "7 customer basis on a contact whose company is not a customer",
        standing(rows=[CUSTOMER], company_id=12),
        "events",
        "email",
        False,
        Reason.NO_BASIS,
        None,
        None,
    ),
    (
        "7 industry list expired 24 months after the import",
        standing(rows=[blanket(industry_list_since=NOW - timedelta(days=740))]),
        "events",
        "email",
        False,
        Reason.NO_BASIS,
        None,
        None,
    ),
    (
        "7 industry list kept by an interaction",
        standing(
            rows=[blanket(industry_list_since=NOW - timedelta(days=740))],
            last_interaction_at=T2,
        ),
        "events",
        "email",
        True,
        Reason.INDUSTRY_LIST,
        Basis.LEGITIMATE_INTEREST,
        NOW - timedelta(days=740),
    ),
    (
        "7 topic that admits only consent",
        standing(rows=[CUSTOMER]),
        "newsletter",
        "email",
        False,
        Reason.NO_BASIS,
        None,
        None,
    ),
    (
        "7 country that does not admit legitimate interest",
        standing(country="DE", rows=[CUSTOMER]),
        "events",
        "email",
        False,
        Reason.NO_BASIS,
        None,
        None,
    ),
    (
        "7 no country known",
        standing(country=None, rows=[CUSTOMER]),
        "events",
        "email",
        False,
        Reason.NO_BASIS,
        None,
        None,
    ),
    (
        "8 pending confirmation",
        standing(rows=[topic_row("newsletter", pending_since=T2)]),
        "newsletter",
        "email",
        False,
        Reason.PENDING_CONFIRMATION,
        None,
        T2,
    ),
    ("9 nothing", standing(), "events", "email", False, Reason.NO_BASIS, None, None),
]


@pytest.mark.parametrize(
    ("case", "facts", "topic", "channel", "allowed", "reason", "basis", "since"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_decision_table(case, facts, topic, channel, allowed, reason, basis, since) -> None:
    decision = decide(
        facts, email="a@b.se", topic=POLICY.topics[topic], channel=channel, at=NOW, policy=POLICY
    )
    assert (decision.allowed, decision.reason, decision.basis, decision.since) == (
        allowed,
        reason,
        basis,
        since,
    )
    assert decision.explanation.startswith("Allowed" if allowed else "Not allowed")


def test_every_reason_code_is_in_the_table() -> None:
    assert {row[5] for row in TABLE} == set(Reason)


moments = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2026, 5, 31), timezones=st.just(UTC)
)
maybe = st.none() | moments
rows = st.lists(
    st.builds(
        StateRow,
        topic=st.sampled_from([ALL, "events", "newsletter", "surveys"]),
        channel=st.sampled_from([ALL, "email", "phone"]),
        pending_since=maybe,
        consent_since=maybe,
        unsubscribed_since=maybe,
        objected_since=maybe,
        customer_since=maybe,
        industry_list_since=maybe,
    ),
    max_size=6,
)
standings = st.builds(
    Standing,
    contact_id=st.just(1),
    email=st.just("a@b.se"),
    country=st.sampled_from([None, "SE", "DE"]),
    suppressed_since=maybe,
    restricted_since=maybe,
    hard_bounced_at=maybe,
    company_customer_since=st.none() | st.dates(date(2010, 1, 1), date(2026, 5, 1)),
    company_relationship_ended_at=st.none() | st.dates(date(2010, 1, 1), date(2026, 5, 1)),
    states=rows.map(tuple),
)
topics = st.sampled_from(["events", "newsletter", "surveys"])
channels = st.sampled_from(["email", "phone"])


def _decide(facts: Standing, topic: str, channel: str):  # type: ignore[no-untyped-def]
    return decide(
        facts, email="a@b.se", topic=POLICY.topics[topic], channel=channel, at=NOW, policy=POLICY
    )


@given(standings, topics, channels)
def test_an_objection_always_wins(facts: Standing, topic: str, channel: str) -> None:
    objected = Standing(**{**facts.__dict__, "states": (*facts.states, blanket(objected_since=T0))})
    decision = _decide(objected, topic, channel)
    assert not decision.allowed
    assert decision.reason is Reason.OBJECTION


@given(standings, topics, channels)
def test_suppression_always_wins(facts: Standing, topic: str, channel: str) -> None:
    suppressed = Standing(**{**facts.__dict__, "suppressed_since": T0})
    assert not _decide(suppressed, topic, channel).allowed


@given(standings, topics, channels)
def test_nothing_is_allowed_without_a_basis(facts: Standing, topic: str, channel: str) -> None:
    decision = _decide(facts, topic, channel)
    if decision.allowed:
        assert decision.basis in (Basis.CONSENT, Basis.LEGITIMATE_INTEREST)
        assert decision.since is not None
        if decision.basis is Basis.CONSENT:
            assert any(r.topic == topic and r.consent_since for r in facts.states)
        else:
            assert facts.country == "SE" and POLICY.topics[topic].admits_legitimate_interest


@given(standings, topics, channels)
def test_restriction_and_unsubscribe_from_all_never_allow(
    facts: Standing, topic: str, channel: str
) -> None:
    restricted = Standing(**{**facts.__dict__, "restricted_since": T0})
    assert not _decide(restricted, topic, channel).allowed
    without_consent = tuple(r for r in facts.states if not r.consent_since)
    unsubscribed = Standing(
        **{**facts.__dict__, "states": (*without_consent, blanket(unsubscribed_since=T0))}
    )
    assert not _decide(unsubscribed, topic, channel).allowed


@pytest.mark.parametrize(("case", "facts", "topic", "channel"), [row[:4] for row in TABLE])
def test_the_json_of_a_decision_is_what_its_schema_dumps(case, facts, topic, channel) -> None:
    """The batch check serialises with ``Decision.as_json``; the OpenAPI document
    describes ``DecisionSchema``. They must not drift apart."""
    from consent.schemas import DecisionSchema

    decision = decide(
        facts, email="a@b.se", topic=POLICY.topic(topic), channel=channel, at=NOW, policy=POLICY
    )
    assert decision.as_json() == DecisionSchema().dump(decision), case
