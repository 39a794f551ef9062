"""The example rule sets in policies/retention/ do what each reference policy says."""

from __future__ import annotations

import tomllib
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm import retention
from crm.models import Activity, AnonymisedActivity, Company
from crm.retention import RetentionPolicy
from extensions import db
from tests.crm.retention_helpers import add_contact, at, day, exists

RULE_SETS = Path(__file__).resolve().parents[2] / "policies" / "retention"


def load(name: str) -> RetentionPolicy:
    with open(RULE_SETS / name, "rb") as handle:
        return RetentionPolicy.from_mapping(tomllib.load(handle))


def rule(policy: RetentionPolicy, name: str) -> retention.Rule:
    return next(r for r in policy.rules if r.name == name)


def run_on(policy: RetentionPolicy, text: str) -> None:
    retention.run(day(text), started_by="test", policy=policy)


def test_every_reference_policy_has_a_rule_set_that_loads() -> None:
    assert sorted(p.name for p in RULE_SETS.glob("*.toml")) == [
        "000-axsensor.toml",
        "001-axessa.toml",
        "002-hms.toml",
        "003-advox.toml",
        "004-advansor.toml",
    ]
    for path in RULE_SETS.glob("*.toml"):
        load(path.name)


# 000 AXsensor and 002 HMS: the same CRM periods ------------------------------------


@pytest.mark.parametrize("name", ["000-axsensor.toml", "002-hms.toml"])
def test_customers_go_at_the_end_of_the_seventh_year_and_leads_on_the_day(
    app_ctx, name: str
) -> None:
    policy = load(name)
    last = "2019-03-15T16:00:00+00:00"
    customer = add_contact(
        "kund@foretag.se",
        last_interaction=last,
        activities=[("order", last, "Order 4711"), ("call", "2018-01-01T10:00:00", None)],
    )
    lead = add_contact(
        "lead@foretag.se",
        last_interaction=last,
        activities=[("visit", last, "Trade fair"), ("support_case", last, "Lead's question")],
    )
    leap = add_contact(
        "skott@foretag.se",
        last_interaction="2020-02-29T10:00:00+00:00",
        activities=[("call", "2020-02-29T10:00:00+00:00", None)],
    )
    db.session.commit()
    assert retention.purge_outlook(customer, policy).purge_on == day("2027-01-01")
    assert retention.purge_outlook(customer, policy).rule == "customers"
    assert retention.purge_outlook(lead, policy).purge_on == day("2026-03-16")
    assert retention.purge_outlook(lead, policy).rule == "crm-contacts"
    assert retention.purge_outlook(leap, policy).purge_on == day("2027-03-01")

    run_on(policy, "2026-03-15")
    assert exists("lead@foretag.se") and exists("kund@foretag.se")
    run_on(policy, "2026-03-16")
    assert not exists("lead@foretag.se")
    # Its support case was anonymised first, not deleted with it.
    assert db.session.scalars(sa.select(AnonymisedActivity.kind)).all() == ["support_case"]
    run_on(policy, "2026-12-31")
    assert exists("kund@foretag.se")
    run_on(policy, "2027-01-01")
    assert not exists("kund@foretag.se")
    run_on(policy, "2027-02-28")
    assert exists("skott@foretag.se")
    run_on(policy, "2027-03-01")
    assert not exists("skott@foretag.se")


@pytest.mark.parametrize("name", ["000-axsensor.toml", "002-hms.toml"])
def test_a_lead_who_orders_becomes_a_customer_and_keeps_to_the_year_end(app_ctx, name: str) -> None:
    policy = load(name)
    contact = add_contact(
        "blir-kund@foretag.se",
        last_interaction="2019-06-01T10:00:00",
        activities=[("call", "2019-06-01T10:00:00", None)],
    )
    db.session.commit()
    assert retention.purge_outlook(contact, policy).purge_on == day("2026-06-02")
    db.session.add(
        Activity(
            contact_id=contact.id,
            kind="order",
            occurred_at=at("2019-05-01T10:00:00"),
            author="user:anna@example.com",
        )
    )
    db.session.commit()
    db.session.expire_all()
    assert retention.purge_outlook(contact, policy).purge_on == day("2027-01-01")
    run_on(policy, "2026-06-02")
    assert exists("blir-kund@foretag.se")


def test_000_external_periods_and_what_they_tell_the_other_systems(app_ctx) -> None:
    policy = load("000-axsensor.toml")
    # "generally for a maximum of seven years from the current year"
    assert rule(policy, "financial-records").last_kept_day(day("2020-05-01")) == day("2027-12-31")
    # "Server logs are stored for six months."
    logs = rule(policy, "server-logs")
    assert logs.last_kept_day(day("2026-01-31")) == day("2026-07-31")
    assert logs.purge_on(day("2026-08-31")) == day("2027-03-01")
    preview = retention.preview(day("2030-01-01"), policy=policy)
    assert {r.name: r.held_in for r in preview.external} == {
        "financial-records": "the accounting system",
        "cloud-accounts": "the AX cloud service",
        "server-logs": "the web servers",
    }


def test_002_external_periods(app_ctx) -> None:
    policy = load("002-hms.toml")
    # "i högst tio år + innevarande år"
    assert rule(policy, "financial-records").purge_on(day("2020-05-01")) == day("2031-01-01")
    assert rule(policy, "financial-records").purge_on(day("2020-12-31")) == day("2031-01-01")
    # Live chat: "högst 45 dagar"
    assert rule(policy, "chat-transcripts").last_kept_day(day("2026-01-01")) == day("2026-02-15")
    # Web analytics: three years, leap day included.
    assert rule(policy, "web-analytics").purge_on(day("2024-02-29")) == day("2027-03-01")
    # Dietary preferences: deleted once the event is over.
    assert rule(policy, "dietary-preferences").purge_on(day("2026-09-10")) == day("2026-09-11")
    assert {r.category for r in policy.external_rules} == {
        "financial_record",
        "cloud_account",
        "server_log",
        "chat_transcript",
        "web_analytics",
        "dietary_preference",
    }


# 001 Axessa: the agreement's end -------------------------------------------------------


def test_001_contacts_go_the_day_after_their_company_ends_its_agreement(app_ctx) -> None:
    policy = load("001-axessa.toml")
    ended = Company(
        name="Slutat AB", customer_since=date(2015, 1, 1), relationship_ended_at=date(2026, 3, 31)
    )
    current = Company(name="Kvar AB", customer_since=date(2015, 1, 1))
    add_contact("slutat@foretag.se", company=ended, last_interaction="2026-03-30T10:00:00")
    add_contact("kvar@foretag.se", company=current, last_interaction="1999-01-01T10:00:00")
    add_contact("lead@foretag.se", last_interaction="1999-01-01T10:00:00")
    db.session.commit()

    run_on(policy, "2026-03-31")
    assert exists("slutat@foretag.se")
    run_on(policy, "2026-04-01")
    assert not exists("slutat@foretag.se")
    # No period for anyone else: they stay until erased on request.
    run_on(policy, "2099-12-31")
    assert exists("kvar@foretag.se") and exists("lead@foretag.se")


# 003 Advox and 004 Advansor: nothing here on a schedule ------------------------------------


@pytest.mark.parametrize("name", ["003-advox.toml", "004-advansor.toml"])
def test_policies_without_a_crm_period_remove_nothing_here(app_ctx, name: str) -> None:
    policy = load(name)
    add_contact(
        "gammal@foretag.se",
        last_interaction="1990-01-01T10:00:00",
        activities=[("support_case", "1990-01-01T10:00:00", "Old case")],
    )
    db.session.commit()
    preview = retention.preview(day("2099-12-31"), policy=policy)
    # Only the objected-contacts rule is held here, and nobody objected.
    assert [(o.rule.name, o.count) for o in preview.outcomes] == [("objected-contacts", 0)]
    run_on(policy, "2099-12-31")
    assert exists("gammal@foretag.se")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 1


def test_003_sms_traffic_at_most_five_months(app_ctx) -> None:
    policy = load("003-advox.toml")
    traffic = rule(policy, "sms-traffic")
    assert traffic.last_kept_day(day("2026-01-31")) == day("2026-06-30")
    assert traffic.purge_on(day("2025-09-30")) == day("2026-03-01")
    settled = rule(policy, "sms-traffic-settled")
    assert settled.purge_on(day("2026-02-10")) == day("2026-02-10") + timedelta(days=1)
    assert [r.held_in for r in policy.external_rules] == ["the SMS platform"] * 2


# Every policy: after an objection only the suppression entry lives on -------------


@pytest.mark.parametrize("name", sorted(p.name for p in RULE_SETS.glob("*.toml")))
def test_a_contact_who_objected_goes_a_month_later_and_only_the_suppression_entry_stays(
    app_ctx, name: str
) -> None:
    from consent.models import Suppression
    from consent.services import record_objection
    from kernel.access import Actor
    from kernel.addresses import keyed_hash
    from kernel.timestamps import utcnow

    policy = load(name)
    assert rule(policy, "objected-contacts").counts_from == "objection"
    lead = add_contact("nej@foretag.se", last_interaction="2025-11-01T10:00:00")
    add_contact("ja@foretag.se", last_interaction="2025-11-01T10:00:00")
    db.session.commit()
    lead_id = lead.id
    staff = Actor(kind="user", name="anna@example.com", role="sales")
    record_objection(staff, lead_id, received_via="phone")
    db.session.expire_all()
    today = utcnow().date()
    objected = db.session.get(type(lead), lead_id)
    # The objection does not restart the clock (X16) ...
    assert objected.last_interaction_at == at("2025-11-01T10:00:00")
    # ... and its own rule deletes the record a month after it.
    outlook = retention.purge_outlook(objected, policy)
    assert (outlook.rule, outlook.purge_on) == ("objected-contacts", _month_after(today))
    run_on(policy, today.isoformat())
    assert exists("nej@foretag.se")
    run_on(policy, _month_after(today).isoformat())
    assert not exists("nej@foretag.se") and exists("ja@foretag.se")
    assert db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Suppression)
        .where(Suppression.address_hash == keyed_hash("nej@foretag.se"))
    )


@pytest.mark.parametrize("name", ["000-axsensor.toml", "002-hms.toml"])
def test_a_customer_who_objected_keeps_the_order_period_not_seven_more_years(
    app_ctx, name: str
) -> None:
    from consent.services import record_objection
    from kernel.access import Actor

    policy = load(name)
    last = "2019-03-15T16:00:00+00:00"
    customer = add_contact(
        "kund@foretag.se", last_interaction=last, activities=[("order", last, None)]
    )
    db.session.commit()
    record_objection(
        Actor(kind="user", name="a@example.com", role="sales"), customer.id, received_via="letter"
    )
    db.session.expire_all()
    outlook = retention.purge_outlook(db.session.get(type(customer), customer.id), policy)
    # Orders keep their own purpose (R13): the objection neither deletes the
    # record early nor adds seven years to it.
    assert (outlook.rule, outlook.purge_on) == ("customers", day("2027-01-01"))


def _month_after(today: date) -> date:
    return retention.Period(months=1).after(today) + timedelta(days=1)


def test_an_objection_to_one_channel_only_leaves_the_record_to_its_usual_rule(app_ctx) -> None:
    """Only an objection to all direct marketing ends the purpose of the record;
    a person who refused phone calls may still be emailed."""
    from consent.services import record_objection
    from kernel.access import Actor

    policy = load("001-axessa.toml")
    contact = add_contact("bara-mejl@foretag.se", last_interaction="2025-11-01T10:00:00")
    db.session.commit()
    staff = Actor(kind="user", name="anna@example.com", role="sales")
    record_objection(staff, contact.id, channel="phone", received_via="phone")
    db.session.expire_all()
    outlook = retention.purge_outlook(db.session.get(type(contact), contact.id), policy)
    assert outlook.rule is None
    run_on(policy, "2099-12-31")
    assert exists("bara-mejl@foretag.se")
