"""The contact list's filters: each narrows to what it names, the decision filter
agrees with ``consent.policy.decide``, and a value that names nothing is refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from flask import current_app

from consent.contact_filters import (
    DECISIONS,
    ContactFilter,
    filter_args,
    matching_contacts,
    parse_filter,
)
from consent.ledger import record
from consent.models import BounceReport, EventKind, InterestKind
from consent.policy import Reason, decide, standings_by_id
from consent.suppression import suppress
from consent.topics import current_policy
from crm.models import Company, Contact, ExternalId
from extensions import db
from kernel.access import Actor
from kernel.errors import InvalidInput
from tests.consent.test_marketing_policies import load
from tests.reports.test_dashboard import mixed_contacts

ACTOR = Actor(kind="cli", name="test")
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TOPIC = "product-updates"  # admits consent and both grounds of legitimate interest


def _ids(**args: str) -> set[int]:
    return set(db.session.scalars(matching_contacts(parse_filter(args), at=NOW)))


def _contact(email: str, **fields: object) -> Contact:
    contact = Contact(email=email, **fields)
    db.session.add(contact)
    db.session.flush()
    return contact


def _event(contact: Contact, kind: EventKind, **options: object) -> None:
    options.setdefault("source", "api")
    record(contact, kind, actor=ACTOR, at=NOW - timedelta(days=10), **options)  # type: ignore[arg-type]


# The decision filter ------------------------------------------------------------


def test_the_decision_filter_agrees_with_decide_on_every_contact(app_ctx, monkeypatch) -> None:
    # Under the default policy and an example whose grounds differ, over the
    # dashboard's population (sub-addresses suppressed by their plain address).
    mixed_contacts(NOW)
    standings = standings_by_id(db.session.scalars(db.select(Contact.id)))
    seen: set[str] = set()
    for policy in (current_policy(), load("002-hms.toml")):
        monkeypatch.setitem(current_app.extensions, "marketing_policy", policy)
        for topic in policy.topics.values():
            for channel in policy.channels:
                expected: dict[str, set[int]] = {d: set() for d in DECISIONS}
                for contact_id, standing in standings.items():
                    decision = decide(
                        standing,
                        email=standing.email,
                        topic=topic,
                        channel=channel,
                        at=NOW,
                        policy=policy,
                    )
                    expected[decision.reason.value].add(contact_id)
                    if decision.allowed:
                        expected["allowed"].add(contact_id)
                    seen.add(decision.reason.value)
                for value in DECISIONS:
                    found = _ids(topic=topic.key, channel=channel, decision=value)
                    assert found == expected[value], (
                        topic.key,
                        channel,
                        value,
                        sorted(found ^ expected[value])[:10],
                    )
    # The population exercises every reason a held contact can have.
    assert seen >= {r.value for r in Reason} - {Reason.UNKNOWN_CONTACT}, seen


def _scenarios() -> dict[str, int]:
    """One contact per reason code for ``TOPIC`` by email, built from the rules
    themselves (docs/rules.md X1), not from another copy of the decision."""
    customer_co = Company(name="Kund AB", country="SE", customer_since=date(2020, 1, 1))
    db.session.add(customer_co)
    made: dict[str, int] = {}

    suppressed = _contact("suppressed@example.se", country="SE")
    suppress(suppressed.email, reason="test")
    made["suppressed"] = suppressed.id

    objected = _contact("objected@example.se", country="SE", company=customer_co)
    # An objection also suppresses the address; the objection is the reason named.
    _event(objected, EventKind.OBJECTED)
    suppress(objected.email, reason="test")
    made["objection"] = objected.id

    restricted = _contact("restricted@example.se", country="SE", company=customer_co)
    _event(restricted, EventKind.RESTRICTED)
    made["restricted"] = restricted.id

    bounced = _contact("bounced@example.se", country="SE", company=customer_co)
    _event(bounced, EventKind.UNDELIVERABLE)
    made["undeliverable"] = bounced.id

    unsubscribed = _contact("unsubscribed@example.se", country="SE", company=customer_co)
    _event(unsubscribed, EventKind.UNSUBSCRIBED, topic=TOPIC, channel="email")
    made["unsubscribed"] = unsubscribed.id

    consented = _contact("consented@example.de", country="DE")
    _event(consented, EventKind.CONFIRMED, topic=TOPIC, channel="email")
    made["consent"] = consented.id

    made["customer"] = _contact("customer@example.se", company=customer_co).id

    listed = _contact("listed@example.se", country="SE")
    _event(
        listed,
        EventKind.BASIS_GRANTED,
        basis="legitimate_interest",
        interest_kind=InterestKind.INDUSTRY_LIST.value,
    )
    made["industry_list"] = listed.id

    pending = _contact("pending@example.de", country="DE")
    _event(pending, EventKind.REQUESTED, topic=TOPIC, channel="email")
    made["pending_confirmation"] = pending.id

    # Germany admits no B2B marketing without consent: a list basis there is none.
    made["no_basis"] = _contact("nobody@example.de", country="DE").id
    db.session.commit()
    return made


@pytest.mark.parametrize("reason", [r.value for r in Reason if r is not Reason.UNKNOWN_CONTACT])
def test_each_reason_code_names_exactly_its_contact(app_ctx, reason: str) -> None:
    made = _scenarios()
    assert _ids(topic=TOPIC, channel="email", decision=reason) == {made[reason]}


def test_allowed_names_consent_customer_and_list_contacts(app_ctx) -> None:
    made = _scenarios()
    allowed = {made["consent"], made["customer"], made["industry_list"]}
    assert _ids(topic=TOPIC, channel="email", decision="allowed") == allowed


def test_a_bounce_blocks_email_only(app_ctx) -> None:
    made = _scenarios()
    # By phone the bounced contact is still its company's customer contact.
    assert made["undeliverable"] in _ids(topic=TOPIC, channel="phone", decision="customer")
    assert _ids(topic=TOPIC, channel="phone", decision="undeliverable") == set()


def test_a_consent_to_another_topic_is_no_basis_for_this_one(app_ctx) -> None:
    made = _scenarios()
    assert made["consent"] in _ids(topic="newsletter", channel="email", decision="no_basis")


def test_no_held_contact_is_unknown(app_ctx) -> None:
    _scenarios()
    assert _ids(topic=TOPIC, channel="email", decision="unknown_contact") == set()


# The other filters ----------------------------------------------------------------


def test_country_language_and_company_narrow(app_ctx) -> None:
    acme = Company(name="Acme 100% AB", country="SE")
    other = Company(name="Acmeish", country="SE")
    db.session.add_all([acme, other])
    se = _contact("a@example.se", country="SE", language="sv", company=acme)
    no = _contact("b@example.no", country="NO", language="en", company=other)
    db.session.commit()
    assert _ids(country="se") == {se.id}
    assert _ids(language="EN") == {no.id}
    assert _ids(company="acme") == {se.id, no.id}
    # LIKE's wildcards are the name's own characters, not patterns.
    assert _ids(company="ACME 100%") == {se.id}
    assert _ids(company="acme_") == set()


def test_customer_status_follows_the_company_relationship(app_ctx) -> None:
    live = Company(name="Live", customer_since=date(2020, 1, 1))
    ended = Company(
        name="Ended", customer_since=date(2020, 1, 1), relationship_ended_at=date(2025, 1, 1)
    )
    db.session.add_all([live, ended])
    customer = _contact("c@example.se", company=live)
    former = _contact("f@example.se", company=ended)
    alone = _contact("n@example.se")
    db.session.commit()
    assert _ids(is_customer="yes") == {customer.id}
    assert _ids(is_customer="no") == {former.id, alone.id}


def test_source_and_import_batch_narrow_by_the_ledger(app_ctx) -> None:
    imported = _contact("i@example.se", country="SE")
    _event(
        imported,
        EventKind.BASIS_GRANTED,
        basis="legitimate_interest",
        interest_kind="industry_list",
        source="import",
        source_ref="import-batch:7",
    )
    other_batch = _contact("o@example.se", country="SE")
    _event(
        other_batch,
        EventKind.BASIS_GRANTED,
        basis="legitimate_interest",
        interest_kind="industry_list",
        source="import",
        source_ref="import-batch:8",
    )
    api = _contact("api@example.se")
    _event(api, EventKind.REQUESTED, topic="newsletter", channel="email", source="api")
    db.session.commit()
    assert _ids(source="import") == {imported.id, other_batch.id}
    assert _ids(source="api") == {api.id}
    assert _ids(import_batch_id="7") == {imported.id}


def test_date_ranges_include_both_days(app_ctx) -> None:
    first = _contact(
        "1@example.se",
        created_at=datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
        last_interaction_at=datetime(2026, 3, 31, 23, 59, tzinfo=UTC),
    )
    second = _contact(
        "2@example.se",
        created_at=datetime(2026, 1, 31, 23, 59, tzinfo=UTC),
        last_interaction_at=datetime(2026, 4, 1, 0, 0, tzinfo=UTC),
    )
    later = _contact("3@example.se", created_at=datetime(2026, 2, 1, 0, 0, tzinfo=UTC))
    db.session.commit()
    assert _ids(created_from="2026-01-01", created_to="2026-01-31") == {first.id, second.id}
    assert _ids(created_from="2026-02-01") == {later.id}
    assert _ids(last_interaction_to="2026-03-31") == {first.id}
    assert _ids(last_interaction_from="2026-04-01") == {second.id}


def test_activity_recency_counts_back_from_the_moment(app_ctx) -> None:
    recent = _contact("r@example.se", last_interaction_at=NOW - timedelta(days=29))
    _contact("old@example.se", last_interaction_at=NOW - timedelta(days=31))
    _contact("never@example.se")
    db.session.commit()
    assert _ids(active_within_days="30") == {recent.id}


def test_deliverability_separates_bounces_and_complaints(app_ctx) -> None:
    fine = _contact("ok@example.se")
    bounced = _contact("b@example.se", hard_bounced_at=NOW - timedelta(days=1))
    complained = _contact("c@example.se")
    db.session.add(BounceReport(contact_id=complained.id, type="complaint", source="arf"))
    soft = _contact("s@example.se")
    db.session.add(BounceReport(contact_id=soft.id, type="soft", source="dsn"))
    db.session.commit()
    assert _ids(deliverability="bounced") == {bounced.id}
    assert _ids(deliverability="complained") == {complained.id}
    assert _ids(deliverability="ok") == {fine.id, soft.id}


def test_external_system_names_contacts_with_an_id_there(app_ctx) -> None:
    linked = _contact("l@example.se")
    company = Company(name="Linked AB")
    db.session.add(company)
    db.session.flush()
    db.session.add(
        ExternalId(owner_type="contact", owner_id=linked.id, system="hubspot", value="1")
    )
    # A company's id in the system is not its contacts'.
    db.session.add(
        ExternalId(owner_type="company", owner_id=company.id, system="hubspot", value="2")
    )
    _contact("x@example.se", company=company)
    db.session.commit()
    assert _ids(external_system="hubspot") == {linked.id}
    assert _ids(external_system="salesforce") == set()


def test_basis_filters_name_what_the_ledger_holds(app_ctx) -> None:
    made = _scenarios()
    consented = _ids(basis="consent")
    assert made["consent"] in consented and made["customer"] not in consented
    assert made["consent"] not in _ids(basis="consent", topic="newsletter")
    listed = _ids(basis_kind="industry_list")
    assert listed == {made["industry_list"]}
    customers = _ids(basis_kind="customer")
    assert made["customer"] in customers and made["industry_list"] not in customers
    interest = _ids(basis="legitimate_interest")
    assert customers | listed == interest


def test_filters_combine_as_and(app_ctx) -> None:
    made = _scenarios()
    assert _ids(country="SE", topic=TOPIC, channel="email", decision="allowed") == {
        made["industry_list"]
    }
    assert _ids(
        country="DE", deliverability="ok", topic=TOPIC, channel="email", decision="no_basis"
    ) == {made["no_basis"]}


# Parsing ----------------------------------------------------------------------


def test_an_empty_filter_names_everyone(app_ctx) -> None:
    a = _contact("a@example.se")
    db.session.commit()
    assert parse_filter({"topic": "", "cursor": "5"}) == ContactFilter()
    assert _ids() == {a.id}


def test_filter_args_is_the_inverse_of_parse_filter(app_ctx) -> None:
    args = {
        "topic": TOPIC,
        "channel": "email",
        "decision": "industry_list",
        "basis": "legitimate_interest",
        "basis_kind": "customer",
        "country": "SE",
        "language": "sv",
        "company": "Acme",
        "is_customer": "no",
        "source": "import",
        "import_batch_id": "12",
        "created_from": "2026-01-01",
        "created_to": "2026-02-01",
        "last_interaction_from": "2025-01-01",
        "last_interaction_to": "2025-12-31",
        "deliverability": "ok",
        "active_within_days": "90",
        "external_system": "hubspot",
    }
    parsed = parse_filter(args)
    assert filter_args(parsed) == args
    assert parse_filter(filter_args(parsed)) == parsed


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ({"topic": "nope"}, "Unknown topic 'nope'"),
        ({"topic": TOPIC, "channel": "fax"}, "Unknown channel 'fax'"),
        ({"topic": TOPIC, "channel": "email", "decision": "maybe"}, "Unknown decision 'maybe'"),
        ({"decision": "allowed"}, "needs a topic and a channel"),
        ({"topic": TOPIC, "decision": "consent"}, "needs a topic and a channel"),
        ({"country": "XX"}, "Unknown country 'XX'"),
        ({"country": "Sweden"}, "two-letter ISO 3166"),
        ({"language": "swedish"}, "Unknown language"),
        ({"created_from": "2026-13-01"}, "is not a date"),
        ({"last_interaction_to": "yesterday"}, "write it as YYYY-MM-DD"),
        ({"created_from": "2026-02-01", "created_to": "2026-01-01"}, "is before created from"),
        ({"import_batch_id": "-3"}, "whole number"),
        ({"active_within_days": "0"}, "whole number from 1"),
        ({"deliverability": "lost"}, "Unknown deliverability"),
        ({"basis": "contract"}, "Unknown basis"),
        ({"basis_kind": "friend"}, "Unknown basis kind"),
        ({"is_customer": "maybe"}, "Unknown is customer"),
        ({"source": "A B"}, "A source is"),
        ({"external_system": "Hub Spot"}, "A system name is"),
        ({"company": "x" * 201}, "longer than 200"),
    ],
)
def test_a_value_that_names_nothing_is_refused_clearly(
    app_ctx, args: dict[str, str], says: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_filter(args)
    assert says in str(refused.value)


def test_the_sub_address_lookup_reads_its_partial_index(app_ctx) -> None:
    """Every decision filter (and audience) asks which contacts sit at a
    sub-address; the question must name the partial index's own predicate,
    or the database reads the whole contact table for it (migration 0035)."""
    import sqlalchemy as sa

    from consent.suppression import suppressed_sub_addresses

    # The statement the function really sends, as the driver got it.
    sent: list[tuple[str, object]] = []

    def keep(
        _conn: object, _cursor: object, statement: str, params: object, *_rest: object
    ) -> None:
        sent.append((statement, params))

    sa.event.listen(db.engine, "before_cursor_execute", keep)
    try:
        suppressed_sub_addresses()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", keep)
    ((statement, params),) = sent
    connection = db.session.connection()
    if db.engine.dialect.name == "postgresql":
        # A table of a few rows is cheaper to read whole; forbid that to see
        # whether the index can answer at all.
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", params)  # type: ignore[arg-type]
        plan = " ".join(r[0] for r in rows)
    else:
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)  # type: ignore[arg-type]
        plan = " ".join(str(r[-1]) for r in rows)
    assert "ix_contact_sub_address" in plan
    db.session.rollback()
    anna = _contact("anna+news@example.se")
    _contact("anna@example.se")
    suppress("anna@example.se", "test")
    db.session.commit()
    assert suppressed_sub_addresses() == [anna.id]
