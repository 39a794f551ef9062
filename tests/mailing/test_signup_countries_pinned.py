"""R8 pinned country by country: where a ticked box still needs the email.

``tests/mailing/test_signup.py`` proves one country of the policy file's
``[double_opt_in] countries`` (DE) and one country off it (SE). A mutation
sweep found that reading only part of that list, or dropping a country from
it, failed no test. These tests state what consent/default_policy.toml
promises, through the signup endpoint as another site posts it (the
registered form ``website-footer``): the decision the permission API then
gives and whether a confirmation email was queued. The country that decides
is the contact's stored one; a posted country only stands in where none is
stored.

A change of the policy file must change these tests with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.mailing.helpers import contact_id_of, decision, outbox

# consent/default_policy.toml, [double_opt_in] countries.
DOUBLE_OPT_IN_COUNTRIES = ("DE", "AT", "CH", "IT", "GR")
# Every other country a ticked box is consent at once in: those of
# [legitimate_interest] countries, and one outside Europe.
SINGLE_OPT_IN_COUNTRIES = (
    *("SE", "DK", "NO", "FI", "IS", "NL", "BE", "LU", "FR"),
    *("IE", "GB", "EE", "LV", "LT", "PL", "CZ", "ES", "PT", "US"),
)
TOPIC = "events"  # not one of always_topics (the newsletter always needs the email)
# The example form of another site in consent/default_policy.toml
# ([forms.website-footer]); with no origins of its own, the sites in
# SIGNUP_ALLOWED_ORIGINS may post it.
SITE_FORM = "website-footer"
SITE = "https://www.example.com"


@pytest.fixture(autouse=True)
def partner_site(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "SIGNUP_ALLOWED_ORIGINS", [SITE])


def post_signup(client: Any, address: str, country: str | None) -> None:
    """The signup form of another site, its marketing checkbox ticked."""
    body: dict[str, Any] = {
        "email": address,
        "topics": [TOPIC],
        "consent": True,
        "form_id": SITE_FORM,
        "page_url": f"{SITE}/events",
    }
    if country is not None:
        body["country"] = country
    response = client.post("/subscribe", json=body, headers={"Origin": SITE})
    assert response.status_code == 202, response.json


def signup_outcomes(
    app: Any, client: Any, api: Any, countries: tuple[str, ...]
) -> dict[str, tuple[str, int]]:
    """Country -> (the decision's reason for the topic, confirmation emails queued)."""
    out = {}
    for country in countries:
        address = f"person-{country.lower()}@example.com"
        post_signup(client, address, country)
        contact_id = contact_id_of(app, address)
        assert contact_id is not None
        queued = [row for row in outbox(app) if row.contact_id == contact_id]
        out[country] = (
            decision(api, contact_id, TOPIC)["reason"],
            sum(row.template == "confirm" for row in queued),
        )
    return out


def test_a_ticked_box_from_each_double_opt_in_country_still_needs_the_confirmation_email(
    app, client, admin_api
) -> None:
    """R8: from Germany, Austria, Switzerland, Italy and Greece the ticked box
    is not enough: the topic waits for the emailed confirmation."""
    outcomes = signup_outcomes(app, client, admin_api, DOUBLE_OPT_IN_COUNTRIES)
    assert outcomes == dict.fromkeys(DOUBLE_OPT_IN_COUNTRIES, ("pending_confirmation", 1))


def test_a_ticked_box_from_every_other_country_is_consent_at_once(app, client, admin_api) -> None:
    """R8: from any country off the list the ticked box is the consent; no
    confirmation email is sent."""
    outcomes = signup_outcomes(app, client, admin_api, SINGLE_OPT_IN_COUNTRIES)
    assert outcomes == dict.fromkeys(SINGLE_OPT_IN_COUNTRIES, ("consent", 0))


@pytest.mark.parametrize("posted", [None, "DE", "SE"], ids=["no-country", "posted-DE", "posted-SE"])
def test_a_known_contacts_stored_country_decides_whatever_the_form_posts(
    app, client, admin_api, posted: str | None
) -> None:
    """R8: a form is judged by the country the contact already has, whatever
    country the post names (anyone can post a form): a Swedish contact's
    ticked box is consent at once, a German contact's waits for the email."""
    stored = {"lars@example.se": "SE", "jonas@example.de": "DE"}
    for address, country in stored.items():
        created = admin_api.post("/api/v1/contacts", json={"email": address, "country": country})
        assert created.status_code == 201, created.json
        post_signup(client, address, posted)
    outcomes = {}
    for address in stored:
        contact_id = contact_id_of(app, address)
        assert contact_id is not None
        confirmations = [
            row for row in outbox(app) if row.contact_id == contact_id and row.template == "confirm"
        ]
        outcomes[address] = (decision(admin_api, contact_id, TOPIC)["reason"], len(confirmations))
    assert outcomes == {
        "lars@example.se": ("consent", 0),
        "jonas@example.de": ("pending_confirmation", 1),
    }
