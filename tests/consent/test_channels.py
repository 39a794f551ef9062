"""Phone is a channel (issue 19, item 7): consent for a channel, withdrawals
taken on the person's behalf through the API, scoped to a topic and a channel.

Through the real HTTP API; the staff pages' side is tests/staff/test_withdrawal_pages.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from consent.models import ConsentEvent, Suppression
from extensions import db
from tests.conftest import count_rows

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
LIVE_CUSTOMER = {"name": "Kund AB", "country": "SE", "customer_since": "2020-01-01"}


def consent_to(topics: list[str], channel: str | None = None) -> dict[str, Any]:
    basis: dict[str, Any] = {
        "type": "consent",
        "source": "call-centre",
        "topics": topics,
        "evidence": {
            "obtained_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
            "policy_version": "1.0",
            "wording": "May we call you about our events? - Yes.",
        },
    }
    if channel is not None:
        basis["channel"] = channel
    return basis


def register(api: Any, email: str, **body: Any) -> int:
    response = api.post("/api/v1/contacts", json={"email": email, "country": "SE", **body})
    assert response.status_code in (200, 201), response.json
    return response.json["id"]


def decision(api: Any, contact_id: int, topic: str, channel: str) -> tuple[bool, str]:
    response = api.get(f"/api/v1/contacts/{contact_id}/permissions")
    assert response.status_code == 200, response.json
    found = next(
        d for d in response.json["decisions"] if d["topic"] == topic and d["channel"] == channel
    )
    return found["allowed"], found["reason"]


def withdraw(api: Any, contact_id: int, **body: Any) -> Any:
    return api.post(f"/api/v1/contacts/{contact_id}/withdrawals", json=body)


def test_a_consent_given_for_the_phone_channel_allows_calls_not_email(app, admin_api) -> None:
    contact_id = register(admin_api, "ring@kund.se", basis=consent_to(["events"], "phone"))

    assert decision(admin_api, contact_id, "events", "phone") == (True, "consent")
    assert decision(admin_api, contact_id, "events", "email") == (False, "no_basis")
    event = admin_api.get(f"/api/v1/contacts/{contact_id}/events").json[-1]
    assert (event["kind"], event["channel"], event["topic"]) == ("confirmed", "phone", "events")


def test_a_consent_without_a_channel_is_for_email_as_before(app, admin_api) -> None:
    contact_id = register(admin_api, "post@kund.se", basis=consent_to(["events"]))

    assert decision(admin_api, contact_id, "events", "email") == (True, "consent")
    assert decision(admin_api, contact_id, "events", "phone") == (False, "no_basis")


def test_a_consent_for_a_channel_the_policy_does_not_have_is_refused_whole(app, admin_api) -> None:
    before = count_rows(app)
    refused = admin_api.post(
        "/api/v1/contacts",
        json={"email": "fax@kund.se", "basis": consent_to(["events"], "fax")},
    )
    assert refused.status_code == 422
    assert refused.json["error"]["code"] == "unknown_channel"
    assert "fax" in refused.json["error"]["message"]
    assert count_rows(app) == before


def test_a_synced_topic_withdrawal_stops_that_topic_on_every_channel_at_once(
    app, admin_api, api_as
) -> None:
    # product-updates, not the newsletter: the newsletter by API waits for the
    # person's confirmation (R8's always-confirm topic).
    contact_id = register(
        admin_api, "anna@kund.se", company=LIVE_CUSTOMER, basis=consent_to(["product-updates"])
    )
    register(admin_api, "anna@kund.se", basis=consent_to(["product-updates"], "phone"))
    assert decision(admin_api, contact_id, "product-updates", "email") == (True, "consent")
    sync = api_as("marketing")

    response = withdraw(
        sync,
        contact_id,
        topic="product-updates",
        received_via="phone",
        recorded_by="crm:sara.salj",
        note="Said on the phone: stop the newsletter.",
    )

    assert response.status_code == 201, response.json
    assert sorted(e["channel"] for e in response.json) == ["email", "phone"]
    for event in response.json:
        assert (event["kind"], event["topic"], event["received_via"]) == (
            "withdrawn",
            "product-updates",
            "phone",
        )
        assert event["recorded_by"].startswith("token:marketing-")
        assert event["source_ref"] == "recorded by crm:sara.salj"
    assert decision(admin_api, contact_id, "product-updates", "email") == (False, "unsubscribed")
    assert decision(admin_api, contact_id, "product-updates", "phone") == (False, "unsubscribed")
    # Every other topic keeps its basis.
    assert decision(admin_api, contact_id, "events", "email") == (True, "customer")


def test_a_withdrawal_needs_no_evidence_and_all_topics_all_channels_suppresses(
    app, admin_api
) -> None:
    contact_id = register(admin_api, "allt@kund.se", company=LIVE_CUSTOMER, basis=CUSTOMER)

    response = withdraw(admin_api, contact_id, received_via="letter", recorded_by="Helpdesk")

    assert response.status_code == 201, response.json
    assert [(e["topic"], e["channel"]) for e in response.json] == [("*", "*")]
    for topic in ("events", "surveys", "product-updates"):
        for channel in ("email", "phone"):
            assert decision(admin_api, contact_id, topic, channel)[0] is False
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 1


def test_a_phone_only_withdrawal_leaves_email_marketing_on_its_basis(app, admin_api) -> None:
    contact_id = register(admin_api, "inga.samtal@kund.se", company=LIVE_CUSTOMER, basis=CUSTOMER)

    response = withdraw(
        admin_api, contact_id, channel="phone", received_via="phone", recorded_by="crm:olle"
    )

    assert response.status_code == 201, response.json
    assert decision(admin_api, contact_id, "events", "phone") == (False, "unsubscribed")
    assert decision(admin_api, contact_id, "events", "email") == (True, "customer")


def test_a_withdrawal_is_taken_while_processing_is_restricted(app, admin_api) -> None:
    contact_id = register(admin_api, "begr@kund.se", company=LIVE_CUSTOMER, basis=CUSTOMER)
    restricted = admin_api.post(f"/api/v1/contacts/{contact_id}/restriction", json={})
    assert restricted.status_code == 201

    response = withdraw(
        admin_api, contact_id, topic="events", received_via="email", recorded_by="x"
    )

    assert response.status_code == 201, response.json


def test_a_withdrawal_naming_what_does_not_exist_is_refused_and_writes_nothing(
    app, admin_api, client
) -> None:
    contact_id = register(admin_api, "fel@kund.se", company=LIVE_CUSTOMER, basis=CUSTOMER)
    before = count_rows(app)
    cases = [
        ({"topic": "horoscope", "received_via": "phone", "recorded_by": "x"}, "unknown_topic"),
        ({"channel": "fax", "received_via": "phone", "recorded_by": "x"}, "unknown_channel"),
        ({"received_via": "pigeon", "recorded_by": "x"}, "invalid_input"),
        ({"received_via": "phone"}, "invalid_input"),
        ({"received_via": "phone", "recorded_by": ""}, "invalid_input"),
    ]
    for body, code in cases:
        refused = withdraw(admin_api, contact_id, **body)
        assert refused.status_code == 422, body
        assert refused.json["error"]["code"] == code, body
    missing = withdraw(admin_api, 999_999, received_via="phone", recorded_by="x")
    assert missing.status_code == 404
    anonymous = client.post(
        f"/api/v1/contacts/{contact_id}/withdrawals",
        json={"received_via": "phone", "recorded_by": "x"},
    )
    assert anonymous.status_code == 401
    assert count_rows(app) == before
    with app.app_context():
        kinds = set(db.session.scalars(sa.select(ConsentEvent.kind)))
    assert "withdrawn" not in kinds


def test_after_a_topic_withdrawal_the_persons_own_double_opt_in_reopens_that_channel(
    app, admin_api
) -> None:
    """A topic withdrawn on every channel is one event per channel: the person's
    own confirmation by email later reopens email, and only email (R9)."""
    from consent import subscriptions
    from consent.evidence import Evidence
    from crm.services import get_contact

    contact_id = register(admin_api, "igen@kund.se", basis=consent_to(["events"]))
    withdrawn = withdraw(
        admin_api, contact_id, topic="events", received_via="phone", recorded_by="x"
    )
    assert withdrawn.status_code == 201
    with app.app_context():
        now = datetime.now(UTC)
        contact = get_contact(contact_id)
        request = subscriptions.request_topics(contact, ["events"], "form", Evidence(), now)
        assert request is not None
        subscriptions.confirm_subscription(request.id, Evidence(ip_address="192.0.2.9"), now)
        db.session.commit()
        db.session.remove()

    assert decision(admin_api, contact_id, "events", "email") == (True, "consent")
    assert decision(admin_api, contact_id, "events", "phone") == (False, "unsubscribed")


def test_a_phone_consent_after_a_no_on_the_phone_is_refused_and_sends_nothing(
    app, admin_api
) -> None:
    """The emailed double opt-in confirms an address, not a call: after the
    person's phone-only objection a CRM's phone consent records nothing,
    says so, and queues no confirmation email (X6)."""
    contact_id = register(admin_api, "nej@kund.se", basis=CUSTOMER, company=LIVE_CUSTOMER)
    objected = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection",
        json={"channel": "phone", "received_via": "phone"},
    )
    assert objected.status_code in (200, 201), objected.json
    before = count_rows(app)

    response = admin_api.post(
        "/api/v1/contacts",
        json={"email": "nej@kund.se", "basis": consent_to(["events"], "phone")},
    )

    assert response.status_code == 200, response.json
    assert response.json["consent"]["status"] == "refused"
    assert response.json["consent"]["topics"] == [
        {"topic": "events", "status": "refused", "reason": "person_said_no"}
    ]
    assert response.json["consent"]["confirmation_email"] is None
    after = count_rows(app)
    # Only the audit entry of the call itself; no event, request or email.
    assert after.pop("audit_entry") == before.pop("audit_entry") + 1
    assert after == before
    assert decision(admin_api, contact_id, "events", "phone") == (False, "objection")
    assert decision(admin_api, contact_id, "events", "email") == (True, "customer")


def test_a_phone_consent_from_a_double_opt_in_country_counts_at_once(app, admin_api) -> None:
    """R8 asks for the emailed confirmation of an address; a consent to be
    called, from Germany, is not an email consent and is recorded at once."""
    response = admin_api.post(
        "/api/v1/contacts",
        json={"email": "anruf@firma.de", "country": "DE", "basis": consent_to(["events"], "phone")},
    )

    assert response.status_code == 201, response.json
    assert response.json["consent"]["status"] == "consent"
    contact_id = response.json["id"]
    assert decision(admin_api, contact_id, "events", "phone") == (True, "consent")
    assert decision(admin_api, contact_id, "events", "email") == (False, "no_basis")
    assert [e["channel"] for e in admin_api.get(f"/api/v1/contacts/{contact_id}/events").json] == [
        "phone"
    ]


def test_an_email_consent_after_a_phone_only_objection_counts_for_email(app, admin_api) -> None:
    """A "no" on the phone is a no to calls: the person's later consent to
    email counts, and the projection keeps what the API said it recorded (X6)."""
    contact_id = register(admin_api, "epost@kund.se")
    objected = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection",
        json={"channel": "phone", "received_via": "phone"},
    )
    assert objected.status_code in (200, 201), objected.json

    response = admin_api.post(
        "/api/v1/contacts", json={"email": "epost@kund.se", "basis": consent_to(["events"])}
    )

    assert response.json["consent"]["status"] == "consent", response.json
    assert decision(admin_api, contact_id, "events", "email") == (True, "consent")
    assert decision(admin_api, contact_id, "events", "phone") == (False, "objection")


def test_an_email_consent_after_a_phone_only_withdrawal_counts_for_email(app, admin_api) -> None:
    contact_id = register(admin_api, "samtal@kund.se")
    withdrawn = withdraw(
        admin_api, contact_id, channel="phone", received_via="phone", recorded_by="x"
    )
    assert withdrawn.status_code == 201, withdrawn.json

    response = admin_api.post(
        "/api/v1/contacts", json={"email": "samtal@kund.se", "basis": consent_to(["events"])}
    )

    assert response.json["consent"]["status"] == "consent", response.json
    assert decision(admin_api, contact_id, "events", "email") == (True, "consent")
    assert decision(admin_api, contact_id, "events", "phone") == (False, "unsubscribed")


def confirm_by_email(app: Any, contact_id: int, topics: list[str]) -> None:
    """The person's own double opt-in: the request and the button behind its link."""
    from consent import subscriptions
    from consent.evidence import Evidence
    from crm.services import get_contact

    with app.app_context():
        now = datetime.now(UTC)
        contact = get_contact(contact_id)
        request = subscriptions.request_topics(contact, topics, "form", Evidence(), now)
        assert request is not None
        subscriptions.confirm_subscription(request.id, Evidence(ip_address="192.0.2.9"), now)
        db.session.commit()
        db.session.remove()


def test_an_email_confirmation_leaves_a_phone_only_objection_standing(app, admin_api) -> None:
    """Confirming an email subscription says nothing about calls: the ledger
    never shows the person lifting an objection they made to phone only (X6)."""
    contact_id = register(admin_api, "ringinte@kund.se")
    objected = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection",
        json={"channel": "phone", "received_via": "phone"},
    )
    assert objected.status_code in (200, 201), objected.json

    confirm_by_email(app, contact_id, ["events"])

    kinds = [e["kind"] for e in admin_api.get(f"/api/v1/contacts/{contact_id}/events").json]
    assert "objection_lifted" not in kinds
    assert decision(admin_api, contact_id, "events", "phone") == (False, "objection")
    assert decision(admin_api, contact_id, "events", "email") == (True, "consent")


def test_an_email_confirmation_lifts_an_objection_to_everything_only_on_all_channels(
    app, admin_api
) -> None:
    """An objection to all channels and another to phone: the confirmation lifts
    the first (one ``objection_lifted`` on all channels) and the phone's stands."""
    contact_id = register(admin_api, "allt@kund.se")
    for body in ({"channel": "phone", "received_via": "phone"}, {"received_via": "letter"}):
        response = admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json=body)
        assert response.status_code in (200, 201), response.json

    confirm_by_email(app, contact_id, ["events"])

    events = admin_api.get(f"/api/v1/contacts/{contact_id}/events").json
    lifted = [e["channel"] for e in events if e["kind"] == "objection_lifted"]
    assert lifted == ["*"]
    assert decision(admin_api, contact_id, "events", "phone") == (False, "objection")
    assert decision(admin_api, contact_id, "events", "email") == (True, "consent")
    assert decision(admin_api, contact_id, "product-updates", "email") == (False, "unsubscribed")
