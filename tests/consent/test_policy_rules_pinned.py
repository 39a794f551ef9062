"""Rules of the decision pinned by their outcome where no other test pinned them.

``tests/consent/test_audience.py`` and ``tests/consent/test_ledger_batch.py``
prove that each copy of the policy (the audience SQL, the fold's SQL) agrees
with ``consent.policy.decide`` and ``consent.projection.fold``; a mistake made
alike in the decision and in its copies passes them. ``tests/consent/test_policy.py``
pins the decision table on ``decide`` with a policy of its own, and
``tests/consent/test_policy_parameters.py`` pins the grace period and the
countries. A mutation sweep (each rule broken identically in every copy) found
the rules below pinned by nothing; these tests state them at concrete outcomes
of the default policy file, through the permission API
(``GET /api/v1/contacts/<id>/permissions``), the batch check
(``POST /api/v1/permissions/check``) and the campaign audience
(``consent.audience.audience_query``), never by comparing two copies.

A change of the policy file (consent/default_policy.toml) must change these
tests with it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from consent.audience import audience_merged, audience_query
from consent.evidence import Evidence
from consent.ledger import record, record_set
from consent.models import EventKind
from consent.subscriptions import (
    Scope,
    Signup,
    confirm_subscription,
    request_subscription,
    unsubscribe,
)
from consent.topics import current_policy
from crm.models import Contact
from extensions import db
from kernel.access import Actor

# consent/default_policy.toml: every topic, and whether it admits legitimate
# interest (all of them take consent).
TOPICS_ADMITTING_LEGITIMATE_INTEREST = {
    "newsletter": False,
    "product-updates": True,
    "events": True,
    "surveys": True,
}
CHANNELS = ("email", "phone")

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
LIVE_CUSTOMER = {"name": "Kund AB", "country": "SE", "customer_since": "2020-01-01"}
PERSON = Actor(kind="person", name="email-owner")
STAFF = Actor(kind="cli", name="test")
LINK_EVIDENCE = Evidence(ip_address="192.0.2.1", form_id="hosted", language="en")


def consent_to(topics: list[str], obtained_at: datetime) -> dict[str, Any]:
    """A consent as a CRM syncs it: to topics, with its evidence (R5) and that of
    the double opt-in it ran (R7)."""
    return {
        "type": "consent",
        "source": "webinar-crm",
        "topics": topics,
        "evidence": {
            "obtained_at": obtained_at.isoformat(),
            "policy_version": "1.0",
            "wording": "Yes, send me news about these topics.",
            "form_id": "webinar",
        },
        # Germany and the newsletter need the double opt-in (R8): the webinar tool ran it.
        "confirmation": {
            "confirmed_at": (obtained_at + timedelta(minutes=10)).isoformat(),
            "ip_address": "192.0.2.20",
            "message_id": "<confirm@webinar.example>",
        },
    }


def register(api: Any, email: str, **body: Any) -> int:
    response = api.post("/api/v1/contacts", json={"email": email, **body})
    assert response.status_code in (200, 201), response.json
    return response.json["id"]


def single(api: Any, contact_id: int, topic: str, channel: str = "email") -> dict[str, Any]:
    """``GET /api/v1/contacts/<id>/permissions``: the decision for one topic and channel."""
    response = api.get(f"/api/v1/contacts/{contact_id}/permissions")
    assert response.status_code == 200, response.json
    return next(
        d for d in response.json["decisions"] if d["topic"] == topic and d["channel"] == channel
    )


def batch(api: Any, email: str, topic: str, channel: str = "email") -> dict[str, Any]:
    """``POST /api/v1/permissions/check`` for one address."""
    response = api.post(
        "/api/v1/permissions/check", json={"emails": [email], "topic": topic, "channel": channel}
    )
    assert response.status_code == 200, response.json
    return response.json["decisions"][0]


def outcome(decision: dict[str, Any]) -> tuple[bool, str, str | None]:
    return decision["allowed"], decision["reason"], decision["basis"]


def audience(app: Any, topic: str, channel: str = "email") -> set[int]:
    """The contact ids a campaign on ``topic`` by ``channel`` would be sent to now."""
    with app.app_context():
        policy = current_policy()
        now = datetime.now(UTC)
        ids = set(db.session.scalars(audience_query(policy.topic(topic), channel, now, policy)))
        # The merged shape (SQLite's audience count) selects the same contacts.
        merged = audience_merged(policy.topic(topic), channel, now, policy)
        assert set(db.session.scalars(merged)) == ids
        db.session.remove()
    return ids


def in_app(app: Any, email: str, change: Callable[[Contact], None]) -> None:
    """Run ``change`` on the contact in one committed transaction, as a use case does."""
    with app.app_context():
        contact = db.session.scalar(sa.select(Contact).where(Contact.email == email))
        assert contact is not None
        change(contact)
        db.session.commit()
        db.session.remove()


# Topics and their bases (consent/default_policy.toml [topics.*]) --------------------------


def test_decisions_are_given_for_every_topic_by_email_and_by_phone(admin_api) -> None:
    """The policy file's four topics and two channels: a contact's permissions
    list one decision for each pair, and no other."""
    contact_id = register(admin_api, "anna@kund.se", country="SE")
    decisions = admin_api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]
    assert sorted((d["topic"], d["channel"]) for d in decisions) == sorted(
        (topic, channel) for topic in TOPICS_ADMITTING_LEGITIMATE_INTEREST for channel in CHANNELS
    )


@pytest.mark.parametrize("ask", ["single-decision", "batch-check"])
def test_a_swedish_customer_contact_may_get_every_topic_but_the_newsletter_without_consent(
    admin_api, ask: str
) -> None:
    """R1, R2: a customer contact in a country that admits legitimate interest
    may be sent product updates, events and surveys without consent; the
    newsletter takes consent only, so there it has no basis."""
    email = "anna@kund.se"
    contact_id = register(admin_api, email, country="SE", company=LIVE_CUSTOMER, basis=CUSTOMER)
    answers = {
        topic: outcome(
            single(admin_api, contact_id, topic)
            if ask == "single-decision"
            else batch(admin_api, email, topic)
        )
        for topic in TOPICS_ADMITTING_LEGITIMATE_INTEREST
    }
    assert answers == {
        "newsletter": (False, "no_basis", None),
        "product-updates": (True, "customer", "legitimate_interest"),
        "events": (True, "customer", "legitimate_interest"),
        "surveys": (True, "customer", "legitimate_interest"),
    }


def test_campaign_audiences_reach_a_customer_contact_on_every_topic_but_the_newsletter(
    app, admin_api
) -> None:
    """The audience SQL carries each topic's bases itself: a newsletter campaign
    must not queue a customer contact who never consented."""
    contact_id = register(
        admin_api, "anna@kund.se", country="SE", company=LIVE_CUSTOMER, basis=CUSTOMER
    )
    reached = {
        topic: contact_id in audience(app, topic) for topic in TOPICS_ADMITTING_LEGITIMATE_INTEREST
    }
    assert reached == TOPICS_ADMITTING_LEGITIMATE_INTEREST


def test_every_topic_takes_a_consent_and_the_consent_allows_it(app, admin_api) -> None:
    """R2: each of the four topics takes consent. A German contact (no
    legitimate interest there) who consented to all four may be sent each of
    them by email, on consent, by the single decision, the batch check and the
    audience."""
    email = "jonas@beispiel.de"
    obtained = datetime.now(UTC) - timedelta(days=1)
    contact_id = register(
        admin_api,
        email,
        country="DE",
        basis=consent_to(list(TOPICS_ADMITTING_LEGITIMATE_INTEREST), obtained),
    )
    for topic in TOPICS_ADMITTING_LEGITIMATE_INTEREST:
        assert outcome(single(admin_api, contact_id, topic)) == (True, "consent", "consent"), topic
        assert outcome(batch(admin_api, email, topic)) == (True, "consent", "consent"), topic
        assert contact_id in audience(app, topic), topic


# The customer relationship: the company's or the contact's own ------------------------------


@pytest.mark.parametrize(
    ("customer_since", "expected"),
    [
        pytest.param(
            "2020-01-01",
            (True, "customer", "legitimate_interest"),
            id="company-is-a-customer",
        ),
        pytest.param(None, (False, "no_basis", None), id="company-is-a-prospect"),
    ],
)
def test_a_contact_of_a_customer_company_is_a_customer_contact_without_a_basis_of_its_own(
    app, admin_api, customer_since: str | None, expected: tuple[bool, str, str | None]
) -> None:
    """R1: a contact of a company that is a customer may be marketed on
    legitimate interest (in a country that admits it) even when the CRM sent
    no basis for the contact itself; the relationship dates from the company's
    customer_since. A company that is not a customer gives nothing."""
    email = "per@kund.se"
    company = {"name": "Kund AB", "country": "SE", "customer_since": customer_since}
    contact_id = register(admin_api, email, country="SE", company=company)
    for decision in (single(admin_api, contact_id, "events"), batch(admin_api, email, "events")):
        assert outcome(decision) == expected
        if expected[0]:
            assert decision["since"] == "2020-01-01T00:00:00+00:00"
    assert (contact_id in audience(app, "events")) is expected[0]


# Channels: a consent or unsubscribe by email is about email ----------------------------------


def test_an_email_consent_does_not_allow_marketing_by_phone(app, admin_api) -> None:
    """R2: the consent a CRM records is to the topic by email. It gives no basis
    to call the person about the topic; in Germany nothing else does either."""
    email = "jonas@beispiel.de"
    obtained = datetime.now(UTC) - timedelta(days=1)
    contact_id = register(admin_api, email, country="DE", basis=consent_to(["events"], obtained))
    assert outcome(single(admin_api, contact_id, "events", "email")) == (True, "consent", "consent")
    assert outcome(single(admin_api, contact_id, "events", "phone")) == (False, "no_basis", None)
    assert outcome(batch(admin_api, email, "events", "phone")) == (False, "no_basis", None)
    assert contact_id in audience(app, "events", "email")
    assert contact_id not in audience(app, "events", "phone")


def test_unsubscribing_from_a_topic_by_email_leaves_phone_calls_on_a_customer_basis(
    app, admin_api
) -> None:
    """R9: the unsubscribe link ends the topic by email. A customer contact may
    still be called about it on legitimate interest (an objection, R11, is what
    ends every channel)."""
    email = "anna@kund.se"
    contact_id = register(admin_api, email, country="SE", company=LIVE_CUSTOMER, basis=CUSTOMER)
    in_app(
        app,
        email,
        lambda contact: unsubscribe(
            contact,
            Scope.TOPIC,
            topic="events",
            source="email_link",
            evidence=LINK_EVIDENCE,
            at=datetime.now(UTC),
        ),
    )
    assert outcome(single(admin_api, contact_id, "events", "email"))[:2] == (False, "unsubscribed")
    assert outcome(single(admin_api, contact_id, "events", "phone")) == (
        True,
        "customer",
        "legitimate_interest",
    )
    assert outcome(batch(admin_api, email, "events", "phone"))[:2] == (True, "customer")
    assert contact_id not in audience(app, "events", "email")
    assert contact_id in audience(app, "events", "phone")


def test_an_unsubscribe_from_all_marketing_by_email_leaves_phone_calls_on_a_customer_basis(
    app, admin_api
) -> None:
    """R9: an unsubscribe from everything recorded for the email channel ends
    every topic by email, and only by email. (The unsubscribe page records it
    for all channels; the ledger takes it per channel, as it takes objections.)"""
    email = "anna@kund.se"
    contact_id = register(admin_api, email, country="SE", company=LIVE_CUSTOMER, basis=CUSTOMER)
    in_app(
        app,
        email,
        lambda contact: record(
            contact, EventKind.UNSUBSCRIBED, actor=PERSON, source="email_link", channel="email"
        ),
    )
    for topic in ("product-updates", "events", "surveys"):
        assert outcome(single(admin_api, contact_id, topic, "email"))[:2] == (
            False,
            "unsubscribed",
        ), topic
        assert outcome(single(admin_api, contact_id, topic, "phone"))[:2] == (True, "customer")
        assert outcome(batch(admin_api, email, topic, "phone"))[:2] == (True, "customer"), topic
        assert contact_id not in audience(app, topic, "email"), topic
        assert contact_id in audience(app, topic, "phone"), topic


# Country: the contact's own, else its company's -----------------------------------------------


@pytest.mark.parametrize(
    ("contact_country", "company_country", "allowed"),
    [
        pytest.param(None, "SE", True, id="no-country-at-a-swedish-company"),
        pytest.param(None, "DE", False, id="no-country-at-a-german-company"),
        pytest.param("DE", "SE", False, id="german-contact-at-a-swedish-company"),
        pytest.param("SE", "DE", True, id="swedish-contact-at-a-german-company"),
    ],
)
def test_legitimate_interest_follows_the_contacts_country_else_its_companys(
    app, admin_api, contact_country: str | None, company_country: str, allowed: bool
) -> None:
    """R1: whether a customer contact may be marketed without consent depends on
    the contact's own country; a contact with none takes its company's."""
    email = "kim@kund.example"
    company = {**LIVE_CUSTOMER, "country": company_country}
    contact_id = register(
        admin_api, email, country=contact_country, company=company, basis=CUSTOMER
    )
    expected = (True, "customer", "legitimate_interest") if allowed else (False, "no_basis", None)
    assert outcome(single(admin_api, contact_id, "events")) == expected
    assert outcome(batch(admin_api, email, "events")) == expected
    assert (contact_id in audience(app, "events")) is allowed


# Only the person undoes their "no" (consent.projection.is_person_verified) ----------------


def test_a_crm_consent_does_not_reopen_a_topic_the_person_unsubscribed_from(app, admin_api) -> None:
    """R9: after the person unsubscribed from events through the link, a consent
    to events synced later by the CRM (a webinar form, say) is kept in the
    ledger, as a request, but does not open the topic: only the person's own
    double opt-in does, even where the CRM reports one of its own (X6)."""
    email = "jonas@beispiel.de"
    now = datetime.now(UTC)
    contact_id = register(
        admin_api, email, country="DE", basis=consent_to(["events"], now - timedelta(days=10))
    )
    in_app(
        app,
        email,
        lambda contact: unsubscribe(
            contact,
            Scope.TOPIC,
            topic="events",
            source="email_link",
            evidence=LINK_EVIDENCE,
            at=now - timedelta(days=5),
        ),
    )
    register(admin_api, email, basis=consent_to(["events"], now - timedelta(days=1)))

    assert outcome(single(admin_api, contact_id, "events"))[:2] == (False, "unsubscribed")
    assert outcome(batch(admin_api, email, "events"))[:2] == (False, "unsubscribed")
    assert contact_id not in audience(app, "events")
    kinds = [e["kind"] for e in admin_api.get(f"/api/v1/contacts/{contact_id}/events").json]
    assert kinds[-1] == "requested" and kinds.count("confirmed") == 1  # the claim is a request


def test_a_crm_consent_does_not_reopen_marketing_after_the_person_unsubscribed_from_everything(
    app, admin_api
) -> None:
    """R9, R22: a person unsubscribed from all marketing, then came back for the
    newsletter alone through the double opt-in. A consent to events synced
    later by the CRM does not open events: the unsubscribe from everything
    still stands for every topic the person did not confirm."""
    email = "jonas@beispiel.de"
    now = datetime.now(UTC)
    contact_id = register(admin_api, email, country="DE")
    in_app(
        app,
        email,
        lambda contact: unsubscribe(
            contact,
            Scope.ALL,
            topic=None,
            source="email_link",
            evidence=LINK_EVIDENCE,
            at=now - timedelta(days=5),
        ),
    )

    def back_for_the_newsletter(contact: Contact) -> None:
        signup = Signup(email=email, topics=("newsletter",))
        request = request_subscription(signup, LINK_EVIDENCE, now - timedelta(days=4)).request
        assert request is not None
        confirm_subscription(request.id, LINK_EVIDENCE, now - timedelta(days=3))

    in_app(app, email, back_for_the_newsletter)
    register(admin_api, email, basis=consent_to(["events"], now - timedelta(days=1)))

    assert outcome(single(admin_api, contact_id, "newsletter")) == (True, "consent", "consent")
    assert outcome(single(admin_api, contact_id, "events"))[:2] == (False, "unsubscribed")
    assert outcome(batch(admin_api, email, "events"))[:2] == (False, "unsubscribed")
    assert contact_id in audience(app, "newsletter")
    assert contact_id not in audience(app, "events")


# An objection dates from the first one (R11) --------------------------------------------------


def test_the_first_objection_stands_when_the_person_objects_again(admin_api) -> None:
    """R11: a second objection on the same channel is "already so" (issue 20
    item 8): the API answers 200 with the first one's event and writes none, and
    the decision keeps the date and the ledger entry of the first. (A second
    objection the ledger folds anyway keeps the first too: the next test.)"""
    email = "anna@kund.se"
    contact_id = register(admin_api, email, country="SE", company=LIVE_CUSTOMER, basis=CUSTOMER)
    path = f"/api/v1/contacts/{contact_id}/objection"
    first = admin_api.post(path, json={"received_via": "phone"})
    second = admin_api.post(path, json={"received_via": "letter"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json == first.json
    events = admin_api.get(f"/api/v1/contacts/{contact_id}/events").json
    assert [e["id"] for e in events if e["kind"] == "objected"] == [first.json["id"]]
    for decision in (single(admin_api, contact_id, "events"), batch(admin_api, email, "events")):
        assert (decision["reason"], decision["since"], decision["event_id"]) == (
            "objection",
            first.json["occurred_at"],
            first.json["id"],
        )


def test_the_first_objection_stands_when_the_ledger_folds_another(app, admin_api) -> None:
    """R11, as ``consent.ledger.record`` folds objections
    (``consent.projection.fold``): the later one is in the ledger, the
    decision keeps the first one's date."""
    email = "anna@kund.se"
    contact_id = register(admin_api, email, country="SE", company=LIVE_CUSTOMER, basis=CUSTOMER)
    first_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    for at, via in ((first_at, "phone"), (first_at + timedelta(days=7), "letter")):
        in_app(
            app,
            email,
            lambda contact, at=at, via=via: record(
                contact, EventKind.OBJECTED, actor=STAFF, source="staff", at=at, received_via=via
            ),
        )
    decision = single(admin_api, contact_id, "events")
    assert (decision["reason"], decision["since"]) == ("objection", first_at.isoformat())
    assert decision["since"] == batch(admin_api, email, "events")["since"]


# A legitimate-interest basis dates from its first grant -------------------------------------


@pytest.mark.parametrize("kind", ["customer", "industry_list"])
@pytest.mark.parametrize("writer", ["record", "record_set"])
def test_a_basis_granted_again_keeps_the_date_and_evidence_of_the_first_grant(
    app, admin_api, writer: str, kind: str
) -> None:
    """R1, R3, R5: the decision names when the basis began and the ledger entry
    that proves it. A later grant of the same basis (a re-sync, a re-import) is
    in the ledger but changes neither; both ledger writers fold it so
    (``consent.ledger.record`` one contact at a time, ``consent.ledger.record_set``
    for an import)."""
    email = "anna@kund.se"
    contact_id = register(admin_api, email, country="SE")
    first_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)
    later_at = first_at + timedelta(days=365)
    grant = {
        "actor": STAFF,
        "source": "import",
        "basis": "legitimate_interest",
        "interest_kind": kind,
    }
    first_ids: list[int] = []
    in_app(
        app,
        email,
        lambda contact: first_ids.append(
            record(contact, EventKind.BASIS_GRANTED, at=first_at, **grant).id
        ),
    )

    def grant_again(contact: Contact) -> None:
        if writer == "record":
            record(contact, EventKind.BASIS_GRANTED, at=later_at, **grant)
        else:
            record_set(
                sa.select(Contact.id).where(Contact.id == contact.id),
                EventKind.BASIS_GRANTED,
                at=later_at,
                **grant,
            )

    in_app(app, email, grant_again)
    kinds = [e["kind"] for e in admin_api.get(f"/api/v1/contacts/{contact_id}/events").json]
    assert kinds.count("basis_granted") == 2
    for decision in (single(admin_api, contact_id, "events"), batch(admin_api, email, "events")):
        assert (decision["reason"], decision["since"], decision["event_id"]) == (
            kind,
            first_at.isoformat(),
            first_ids[0],
        )
