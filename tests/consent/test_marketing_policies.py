"""Two legal grounds, two country lists (docs/rules.md R1, R3, X19).

The existing-customer rule and cold B2B marketing to industry lists are
different grounds; the policy file gives each its own countries and topics
(``[legitimate_interest.customer]``, ``[legitimate_interest.industry_list]``).
The five example files in policies/marketing/ each load, state their
choices, and, put in force, decide by them on every path: the single
decision, the batch check and the campaign audience.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consent.audience import audience_query
from consent.topics import MarketingPolicy, current_policy
from extensions import db

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "policies" / "marketing"
DEFAULT = ROOT / "consent" / "default_policy.toml"
NORDIC_AND_WEST = {
    *("SE", "DK", "NO", "FI", "IS", "NL", "BE", "LU", "FR"),
    *("IE", "GB", "EE", "LV", "LT", "PL", "CZ", "ES", "PT"),
}
CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
LISTED = {"type": "legitimate_interest", "kind": "industry_list", "source": "fair-2026"}


def load(name: str) -> MarketingPolicy:
    """The default policy file with an example's [legitimate_interest.*] sections
    in place of its own, as the example's header says to copy them."""
    with DEFAULT.open("rb") as handle:
        data = tomllib.load(handle)
    with (EXAMPLES / name).open("rb") as handle:
        example = tomllib.load(handle)
    assert set(example) == {"legitimate_interest"}, name
    data["legitimate_interest"] = example["legitimate_interest"]
    return MarketingPolicy.from_mapping(data)


# (file, customer countries, industry-list countries, customer topics, list topics, list months)
CHOICES = [
    (
        "000-axsensor.toml",
        NORDIC_AND_WEST,
        set(),
        {"product-updates", "surveys"},
        set(),
        24,
    ),
    (
        "001-axessa.toml",
        NORDIC_AND_WEST,
        set(),
        {"product-updates", "events", "surveys"},
        set(),
        24,
    ),
    (
        "002-hms.toml",
        NORDIC_AND_WEST | {"DE", "AT"},
        NORDIC_AND_WEST,
        {"product-updates", "events", "surveys"},
        {"product-updates", "events"},
        24,
    ),
    ("003-advox.toml", NORDIC_AND_WEST, set(), {"product-updates"}, set(), 24),
    (
        "004-advansor.toml",
        NORDIC_AND_WEST,
        NORDIC_AND_WEST - {"DK"},
        {"product-updates", "events", "surveys"},
        {"product-updates", "events"},
        12,
    ),
]


def test_there_is_one_example_per_published_policy() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == [c[0] for c in CHOICES]


@pytest.mark.parametrize(
    ("name", "customer_countries", "list_countries", "customer_topics", "list_topics", "months"),
    CHOICES,
)
def test_each_example_policy_loads_with_its_stated_choices(
    name: str,
    customer_countries: set[str],
    list_countries: set[str],
    customer_topics: set[str],
    list_topics: set[str],
    months: int,
) -> None:
    policy = load(name)
    assert policy.customer.countries == customer_countries
    assert policy.industry_list.countries == list_countries
    assert policy.customer.topics == customer_topics
    assert policy.industry_list.topics == list_topics
    assert policy.industry_list.lapse_months == months
    assert (policy.customer.grace.days, policy.customer.lapse_months) == (365, 24)


def test_an_older_policy_files_single_country_list_serves_both_grounds() -> None:
    policy = MarketingPolicy.from_mapping(
        {
            "legitimate_interest": {"countries": ["se", "NO"], "customer_grace_days": 30},
            "topics": {
                "newsletter": {"bases": ["consent"]},
                "events": {"bases": ["consent", "legitimate_interest"]},
            },
        }
    )
    for ground in (policy.customer, policy.industry_list):
        assert ground.countries == {"SE", "NO"}
        assert ground.topics == {"events"}
        assert ground.lapse_months == 24
    assert policy.customer.grace.days == 30


@pytest.mark.parametrize(
    "section",
    [
        {"customer": {"contries": ["SE"]}},
        {"industry_list": {"grace_days": 10}},
        {"customer": {"topics": ["newsletter"]}},
        {"industry_list": {"expiry_months": 0}},
    ],
)
def test_a_mistake_in_a_grounds_section_stops_the_service_at_start(section: Any) -> None:
    with pytest.raises(RuntimeError, match="legitimate_interest"):
        MarketingPolicy.from_mapping(
            {
                "legitimate_interest": section,
                "topics": {
                    "newsletter": {"bases": ["consent"]},
                    "events": {"bases": ["consent", "legitimate_interest"]},
                },
            }
        )


# Put in force ------------------------------------------------------------------------


@pytest.fixture
def in_force(app: Any) -> Iterator[Any]:
    """Run the app under an example policy, then restore its own."""
    own = app.extensions["marketing_policy"]

    def use(name: str) -> None:
        app.extensions["marketing_policy"] = load(name)

    yield use
    app.extensions["marketing_policy"] = own


def register(api: Any, email: str, country: str, basis: dict[str, str]) -> int:
    body: dict[str, Any] = {"email": email, "country": country, "basis": basis}
    if basis["kind"] == "customer":
        body["company"] = {"name": f"Kund {email}", "customer_since": "2020-01-01"}
    response = api.post("/api/v1/contacts", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def decisions(app: Any, api: Any, contacts: dict[str, int], topic: str) -> dict[str, Any]:
    """Each contact's decision on the three paths: (single, batch, in the audience)."""
    checked = api.post("/api/v1/permissions/check", json={"emails": list(contacts), "topic": topic})
    assert checked.status_code == 200, checked.json
    by_batch = {d["email"]: d for d in checked.json["decisions"]}
    with app.app_context():
        policy = current_policy()
        query = audience_query(policy.topic(topic), "email", datetime.now(UTC), policy)
        chosen = set(db.session.scalars(query))
        db.session.remove()
    out = {}
    for email, contact_id in contacts.items():
        response = api.get(f"/api/v1/contacts/{contact_id}/permissions")
        single = next(
            d for d in response.json["decisions"] if d["topic"] == topic and d["channel"] == "email"
        )
        out[email] = (single, by_batch[email], contact_id in chosen)
    return out


def test_a_german_customer_is_marketed_to_but_a_german_list_address_is_not(
    app, admin_api, in_force
) -> None:
    """HMS's example admits DE for customers (art. 13(2)) and not for lists."""
    in_force("002-hms.toml")
    contacts = {
        "kunde@firma.de": register(admin_api, "kunde@firma.de", "DE", CUSTOMER),
        "liste@firma.de": register(admin_api, "liste@firma.de", "DE", LISTED),
    }
    found = decisions(app, admin_api, contacts, "events")
    for decision in found["kunde@firma.de"][:2]:
        assert (decision["allowed"], decision["reason"]) == (True, "customer")
        assert "customers' contacts" in decision["explanation"]
    assert found["kunde@firma.de"][2]
    for decision in found["liste@firma.de"][:2]:
        assert (decision["allowed"], decision["reason"]) == (False, "no_basis")
        assert "industry lists" in decision["explanation"]
    assert not found["liste@firma.de"][2]


def test_a_company_that_never_prospects_markets_to_customers_and_never_to_lists(
    app, admin_api, in_force
) -> None:
    """Advox's example: customers allowed, industry lists forbidden everywhere."""
    in_force("003-advox.toml")
    contacts = {
        "kund@firma.se": register(admin_api, "kund@firma.se", "SE", CUSTOMER),
        "lista@firma.se": register(admin_api, "lista@firma.se", "SE", LISTED),
    }
    found = decisions(app, admin_api, contacts, "product-updates")
    assert [d["reason"] for d in found["kund@firma.se"][:2]] == ["customer", "customer"]
    assert found["kund@firma.se"][2]
    assert [d["reason"] for d in found["lista@firma.se"][:2]] == ["no_basis", "no_basis"]
    assert not found["lista@firma.se"][2]


def test_each_ground_has_its_own_topics(app, admin_api, in_force) -> None:
    """HMS's example sends surveys to customers, never to list addresses."""
    in_force("002-hms.toml")
    contacts = {
        "kund@firma.se": register(admin_api, "kund@firma.se", "SE", CUSTOMER),
        "lista@firma.se": register(admin_api, "lista@firma.se", "SE", LISTED),
    }
    found = decisions(app, admin_api, contacts, "surveys")
    assert [d["reason"] for d in found["kund@firma.se"][:2]] == ["customer", "customer"]
    assert found["kund@firma.se"][2]
    for decision in found["lista@firma.se"][:2]:
        assert decision["reason"] == "no_basis"
        assert "does not use it for Customer surveys" in decision["explanation"]
    assert not found["lista@firma.se"][2]
