"""The default policy's legitimate-interest parameters, pinned by their outcome.

``tests/consent/test_audience.py`` proves that the SQL audience agrees with
``consent.policy.decide``; a mistake made alike in both (the grace period
doubled, the country list ignored) passes that proof. These tests state what
``consent/default_policy.toml`` promises instead, at concrete dates and
countries, on every path that holds its own copy of the rule: the single
decision (``GET /api/v1/contacts/<id>/permissions``), the batch check
(``POST /api/v1/permissions/check``, which reads the facts with its own
joined query) and the campaign audience (``consent.audience.audience_query``,
the rule in SQL). The projection (``consent.ledger``) folds neither rule: it
keeps when a basis began, and the decision applies the grace period and the
country at the moment asked.

A change of the policy file must change these tests with it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from consent.audience import audience_merged, audience_query
from consent.topics import current_policy
from extensions import db

# consent/default_policy.toml, [legitimate_interest].
LEGITIMATE_INTEREST_COUNTRIES = (
    *("SE", "DK", "NO", "FI", "IS", "NL", "BE", "LU", "FR"),
    *("IE", "GB", "EE", "LV", "LT", "PL", "CZ", "ES", "PT"),
)
# Countries that need consent: the double opt-in countries of the same file,
# one outside Europe, and a contact whose country nobody knows.
CONSENT_ONLY_COUNTRIES = ("DE", "AT", "CH", "IT", "GR", "US", None)

# customer_grace_days = 365. A relationship that ended on 2026-01-10 ended at
# the start of that day (UTC); 365 days later is 2027-01-10 00:00 UTC, the
# first moment without the basis.
RELATIONSHIP_ENDED = "2026-01-10"
LAST_MOMENT_OF_GRACE = datetime(2027, 1, 9, 23, 59, 59, tzinfo=UTC)
GRACE_OVER = datetime(2027, 1, 10, 0, 0, 0, tzinfo=UTC)

TOPIC = "events"  # admits consent and legitimate interest
CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
INDUSTRY_LIST = {"type": "legitimate_interest", "kind": "industry_list", "source": "fair-2026"}
BASES = {"customer": CUSTOMER, "industry_list": INDUSTRY_LIST}
LIVE_CUSTOMER = {"name": "Kund AB", "customer_since": "2020-01-01"}


def _register(api: Any, email: str, country: str | None, kind: str) -> int:
    """A contact registered as a CRM registers it: with its basis and, for a
    customer contact, a company that has been a customer since 2020."""
    body: dict[str, Any] = {"email": email, "country": country, "basis": BASES[kind]}
    if kind == "customer":
        body["company"] = LIVE_CUSTOMER
    response = api.post("/api/v1/contacts", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def _population(api: Any, kind: str, countries: tuple[str | None, ...]) -> dict[str, int]:
    """One contact of ``kind`` per country: address -> contact id."""
    out = {}
    for country in countries:
        email = f"{kind}-{(country or 'unknown').lower()}@example.com"
        out[email] = _register(api, email, country, kind)
    return out


def _former_customer(api: Any) -> tuple[str, int]:
    """A Swedish contact of a company whose customer relationship ended on 2026-01-10."""
    email = "lena@fore-detta-kund.se"
    response = api.post(
        "/api/v1/contacts",
        json={
            "email": email,
            "country": "SE",
            "company": {
                "name": "Före detta kund AB",
                "customer_since": "2020-01-01",
                "relationship_ended_at": RELATIONSHIP_ENDED,
            },
            "basis": CUSTOMER,
        },
    )
    assert response.status_code == 201, response.json
    return email, response.json["id"]


# The two ways of asking for decisions: address -> the decision's JSON.
Ask = Callable[[Any, dict[str, int], datetime | None], dict[str, dict[str, Any]]]


def single_decisions(
    api: Any, contacts: dict[str, int], at: datetime | None
) -> dict[str, dict[str, Any]]:
    """``GET /api/v1/contacts/<id>/permissions``, one contact at a time."""
    query = {"at": at.isoformat()} if at else {}
    out = {}
    for email, contact_id in contacts.items():
        response = api.get(f"/api/v1/contacts/{contact_id}/permissions", query_string=query)
        assert response.status_code == 200, response.json
        out[email] = next(
            d for d in response.json["decisions"] if d["topic"] == TOPIC and d["channel"] == "email"
        )
    return out


def batch_decisions(
    api: Any, contacts: dict[str, int], at: datetime | None
) -> dict[str, dict[str, Any]]:
    """``POST /api/v1/permissions/check``, every contact in one request."""
    body: dict[str, Any] = {"emails": list(contacts), "topic": TOPIC, "channel": "email"}
    if at:
        body["at"] = at.isoformat()
    response = api.post("/api/v1/permissions/check", json=body)
    assert response.status_code == 200, response.json
    return {d["email"]: d for d in response.json["decisions"]}


ASK = [
    pytest.param(single_decisions, id="single-decision"),
    pytest.param(batch_decisions, id="batch-check"),
]


def audience(app: Any, at: datetime | None = None) -> set[int]:
    """The contact ids the campaign audience query selects for the topic by email."""
    with app.app_context():
        policy = current_policy()
        moment = at or datetime.now(UTC)
        ids = set(db.session.scalars(audience_query(policy.topic(TOPIC), "email", moment, policy)))
        # The merged shape (SQLite's audience count) selects the same contacts.
        merged = audience_merged(policy.topic(TOPIC), "email", moment, policy)
        assert set(db.session.scalars(merged)) == ids
        db.session.remove()
    return ids


# The customer grace period (customer_grace_days = 365) -----------------------------------


@pytest.mark.parametrize("ask", ASK)
def test_former_customer_contact_is_allowed_until_the_last_moment_of_the_365_day_grace(
    admin_api, ask: Ask
) -> None:
    """R1: a company's contacts may still be marketed on legitimate interest for
    365 days after its customer relationship ended, the last second included."""
    email, contact_id = _former_customer(admin_api)
    decision = ask(admin_api, {email: contact_id}, LAST_MOMENT_OF_GRACE)[email]
    assert (decision["allowed"], decision["reason"], decision["basis"]) == (
        True,
        "customer",
        "legitimate_interest",
    )


@pytest.mark.parametrize("ask", ASK)
def test_former_customer_contact_has_no_basis_once_365_days_have_passed(
    admin_api, ask: Ask
) -> None:
    """R1: from 2027-01-10 00:00 UTC, 365 days after a relationship that ended on
    2026-01-10, the customer basis is gone and, with no consent, nothing is left."""
    email, contact_id = _former_customer(admin_api)
    decision = ask(admin_api, {email: contact_id}, GRACE_OVER)[email]
    assert (decision["allowed"], decision["reason"], decision["basis"]) == (
        False,
        "no_basis",
        None,
    )


def test_campaign_audience_includes_a_former_customer_contact_on_the_last_day_of_grace(
    app, admin_api
) -> None:
    """The audience query carries the grace period in SQL; a campaign sent on
    the last day of the grace period still reaches the contact."""
    _, contact_id = _former_customer(admin_api)
    assert contact_id in audience(app, LAST_MOMENT_OF_GRACE)


def test_campaign_audience_leaves_out_a_former_customer_contact_once_grace_is_over(
    app, admin_api
) -> None:
    """A campaign sent from 2027-01-10 00:00 UTC must not queue the contact of a
    relationship that ended on 2026-01-10."""
    _, contact_id = _former_customer(admin_api)
    assert contact_id not in audience(app, GRACE_OVER)


# The countries that admit legitimate interest --------------------------------------------


@pytest.mark.parametrize("kind", ["customer", "industry_list"])
@pytest.mark.parametrize("ask", ASK)
def test_legitimate_interest_allows_contacts_in_every_country_on_the_list(
    admin_api, ask: Ask, kind: str
) -> None:
    """B2B marketing without consent is lawful in the policy's 18 countries, for
    customer contacts (R1) and addresses from an industry list (R3) alike."""
    contacts = _population(admin_api, kind, LEGITIMATE_INTEREST_COUNTRIES)
    decisions = ask(admin_api, contacts, None)
    refused = {
        email: (d["allowed"], d["reason"])
        for email, d in decisions.items()
        if (d["allowed"], d["reason"], d["basis"]) != (True, kind, "legitimate_interest")
    }
    assert refused == {}


@pytest.mark.parametrize("kind", ["customer", "industry_list"])
@pytest.mark.parametrize("ask", ASK)
def test_legitimate_interest_gives_no_basis_in_a_country_off_the_list(
    admin_api, ask: Ask, kind: str
) -> None:
    """A contact in Germany, Austria, Switzerland, Italy, Greece, the US or of
    unknown country needs consent: the customer relationship or the industry
    list gives no basis there, and the explanation says it is the country."""
    contacts = _population(admin_api, kind, CONSENT_ONLY_COUNTRIES)
    decisions = ask(admin_api, contacts, None)
    for email, decision in decisions.items():
        assert (decision["allowed"], decision["reason"], decision["basis"]) == (
            False,
            "no_basis",
            None,
        ), email
        assert "Legitimate interest does not apply" in decision["explanation"], email


@pytest.mark.parametrize("kind", ["customer", "industry_list"])
def test_campaign_audience_includes_contacts_in_every_country_on_the_list(
    app, admin_api, kind: str
) -> None:
    """The SQL audience carries the country list itself; it must reach the
    contacts of all 18 countries."""
    contacts = _population(admin_api, kind, LEGITIMATE_INTEREST_COUNTRIES)
    assert set(contacts.values()) <= audience(app)


@pytest.mark.parametrize("kind", ["customer", "industry_list"])
def test_campaign_audience_leaves_out_contacts_in_countries_off_the_list(
    app, admin_api, kind: str
) -> None:
    """A campaign on legitimate interest must not queue a contact whose country
    requires consent, or whose country is unknown."""
    contacts = _population(admin_api, kind, CONSENT_ONLY_COUNTRIES)
    assert set(contacts.values()) & audience(app) == set()


# Each ground's own lists and periods (docs/rules.md R1, R3, X19) -------------------------


def test_the_default_policy_gives_each_ground_its_own_countries_topics_and_periods(app) -> None:
    """The shipped file states both grounds in full; the limits are pinned at
    concrete moments on every path by tests/consent/test_bases_lapse.py, and a
    policy whose two grounds differ by tests/consent/test_marketing_policies.py."""
    with app.app_context():
        policy = current_policy()
    for ground in (policy.customer, policy.industry_list):
        assert ground.countries == set(LEGITIMATE_INTEREST_COUNTRIES)
        assert ground.topics == {"product-updates", "events", "surveys"}
        assert ground.lapse_months == 24
    assert policy.customer.grace.days == 365
    assert policy.industry_list.grace.days == 0
