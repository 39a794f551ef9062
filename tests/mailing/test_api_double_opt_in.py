"""Double opt-in on every path (R7, R8, X6): a consent sent to the API by a CRM is
a request until the person confirms through the emailed link, as a signup's is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import count_rows
from tests.mailing.conftest import link
from tests.mailing.helpers import decision, eleven_minutes_pass, events, outbox

SIGNED_UP = datetime(2026, 10, 1, 10, 0, tzinfo=UTC)


def consent(topics: list[str], source: str = "crm-sync", **extra: Any) -> dict[str, Any]:
    """A consent as a CRM syncs it, with the evidence of the signup (R5)."""
    return {
        "type": "consent",
        "source": source,
        "topics": topics,
        "evidence": {
            "obtained_at": SIGNED_UP.isoformat(),
            "policy_version": "1.0",
            "wording": "Yes, send me news by email.",
            "ip_address": "198.51.100.7",
            "form_id": "webinar",
        },
        **extra,
    }


def confirmed_elsewhere(**overrides: Any) -> dict[str, Any]:
    """The confirming event of a double opt-in the CRM ran itself."""
    return {
        "confirmed_at": (SIGNED_UP + timedelta(minutes=12)).isoformat(),
        "ip_address": "203.0.113.9",
        "message_id": "<c0nf1rm-42@mail.crm.example>",
        "user_agent": "Mozilla/5.0 (mail client)",
        **overrides,
    }


def register(api: Any, email: str, country: str | None, basis: dict[str, Any]) -> Any:
    body = {"email": email, "name": "Dieter", "language": "en", "basis": basis}
    if country:
        body["country"] = country
    return api.post("/api/v1/contacts", json=body)


def test_a_german_contacts_consent_by_api_is_pending_and_the_person_gets_the_email(
    app, api_as, admin_api, smtp, mail_worker
) -> None:
    response = register(api_as("marketing"), "dieter@firma.de", "DE", consent(["product-updates"]))

    assert response.status_code == 201, response.json
    assert response.json["consent"] == {
        "status": "pending_confirmation",
        "confirmation_email": "queued",
        "topics": [
            {
                "topic": "product-updates",
                "status": "pending_confirmation",
                "reason": "double_opt_in_required",
            }
        ],
    }
    contact_id = response.json["id"]
    pending = decision(admin_api, contact_id, "product-updates")
    assert (pending["allowed"], pending["reason"]) == (False, "pending_confirmation")
    [requested] = events(admin_api, contact_id)
    assert (requested["kind"], requested["source"], requested["topic"]) == (
        "requested",
        "crm-sync",
        "product-updates",
    )
    # The caller's evidence of the signup, as the caller recorded it.
    assert requested["occurred_at"].startswith("2026-10-01T10:00:00")
    assert requested["ip_address"] == "198.51.100.7" and requested["form_id"] == "webinar"
    assert requested["recorded_by"].startswith("token:")

    mail_worker.drain()
    [message] = smtp.wait_for(1)
    assert message["To"].addresses[0].addr_spec == "dieter@firma.de"
    assert message["List-Unsubscribe"] is None  # transactional (R6)
    assert link(message, "/confirm/")


def test_the_newsletter_by_api_is_pending_from_any_country_other_topics_count_at_once(
    app, admin_api, smtp, mail_worker
) -> None:
    newsletter = register(admin_api, "nils@kund.se", "SE", consent(["newsletter"]))
    assert newsletter.json["consent"]["status"] == "pending_confirmation"
    assert newsletter.json["consent"]["confirmation_email"] == "queued"
    assert decision(admin_api, newsletter.json["id"], "newsletter")["reason"] == (
        "pending_confirmation"
    )
    mail_worker.drain()
    assert len(smtp.wait_for(1)) == 1

    # R8 lets a Swedish consent to events count at once, as a ticked form box does.
    events_consent = register(admin_api, "sara@kund.se", "SE", consent(["events"]))
    assert events_consent.json["consent"] == {
        "status": "consent",
        "confirmation_email": None,
        "topics": [{"topic": "events", "status": "consent", "reason": "recorded"}],
    }
    allowed = decision(admin_api, events_consent.json["id"], "events")
    assert (allowed["allowed"], allowed["reason"]) == (True, "consent")


def test_a_contact_without_a_country_needs_the_double_opt_in(
    app, admin_api, smtp, mail_worker
) -> None:
    response = register(admin_api, "okand@example.com", None, consent(["events"]))
    assert response.json["consent"]["topics"][0]["reason"] == "double_opt_in_required"
    assert decision(admin_api, response.json["id"], "events")["allowed"] is False


def test_the_emailed_link_turns_an_api_consent_into_consent(
    app, client, admin_api, smtp, mail_worker
) -> None:
    contact_id = register(
        admin_api, "dieter@firma.de", "DE", consent(["product-updates", "newsletter"])
    ).json["id"]
    mail_worker.drain()
    [message] = smtp.wait_for(1)
    confirm_path = link(message, "/confirm/")
    assert client.get(confirm_path).status_code == 200
    assert decision(admin_api, contact_id, "newsletter")["allowed"] is False

    confirmed = client.post(confirm_path, headers={"User-Agent": "Mozilla/5.0 (phone)"})

    assert confirmed.status_code == 200 and b"Subscription confirmed" in confirmed.data
    for topic in ("product-updates", "newsletter"):
        allowed = decision(admin_api, contact_id, topic)
        assert (allowed["allowed"], allowed["basis"], allowed["reason"]) == (
            True,
            "consent",
            "consent",
        )
    kinds = [(e["kind"], e["source"]) for e in events(admin_api, contact_id)]
    assert kinds.count(("confirmed", "double_opt_in")) == 2


def test_a_confirmation_made_elsewhere_counts_with_its_evidence_and_sends_nothing(
    app, admin_api, smtp
) -> None:
    basis = consent(["product-updates"], confirmation=confirmed_elsewhere())
    response = register(admin_api, "dieter@firma.de", "DE", basis)

    assert response.status_code == 201, response.json
    assert response.json["consent"] == {
        "status": "consent",
        "confirmation_email": None,
        "topics": [
            {"topic": "product-updates", "status": "consent", "reason": "confirmed_elsewhere"}
        ],
    }
    contact_id = response.json["id"]
    allowed = decision(admin_api, contact_id, "product-updates")
    assert (allowed["allowed"], allowed["reason"]) == (True, "consent")
    assert allowed["since"].startswith("2026-10-01T10:12:00")
    requested, confirmed = events(admin_api, contact_id)
    assert (requested["kind"], requested["ip_address"]) == ("requested", "198.51.100.7")
    # Visible as a confirmation another system made, with that event's own evidence.
    assert confirmed["kind"] == "confirmed" and confirmed["id"] == allowed["event_id"]
    assert confirmed["source"] == "external_confirmation"
    assert confirmed["source_ref"] == "message-id:<c0nf1rm-42@mail.crm.example>"
    assert confirmed["ip_address"] == "203.0.113.9"
    assert confirmed["user_agent"] == "Mozilla/5.0 (mail client)"
    assert confirmed["occurred_at"].startswith("2026-10-01T10:12:00")
    assert confirmed["policy_version"] == "1.0"
    assert confirmed["wording_hash"] == requested["wording_hash"]
    assert "crm-sync" in confirmed["note"]
    assert outbox(app) == [] and smtp.messages == []


@pytest.mark.parametrize("claimed", ["double_opt_in", "External_Confirmation"])
def test_a_source_claiming_a_double_opt_in_is_refused_and_nothing_is_stored(
    app, admin_api, smtp, mail_worker, claimed
) -> None:
    # A Swedish consent to events would count at once; a source that names the
    # service's own confirmation, without the confirming event, is refused and
    # points the caller at basis.confirmation.
    before = count_rows(app)
    response = register(admin_api, "sara@kund.se", "SE", consent(["events"], claimed))

    assert response.status_code == 422
    assert response.json["error"]["code"] == "reserved_source"
    assert "basis.confirmation" in response.json["error"]["message"]
    assert count_rows(app) == before
    mail_worker.drain()
    assert outbox(app) == [] and smtp.messages == []


def test_the_confirmations_evidence_is_checked_and_nothing_is_stored_when_it_fails(
    app, admin_api
) -> None:
    now = datetime.now(UTC)
    cases = [
        (confirmed_elsewhere(message_id=None), "message_id"),
        ({k: v for k, v in confirmed_elsewhere().items() if k != "ip_address"}, "ip_address"),
        ({k: v for k, v in confirmed_elsewhere().items() if k != "confirmed_at"}, "confirmed_at"),
        (confirmed_elsewhere(message_id="   "), "message_id"),
        (confirmed_elsewhere(ip_address="not-an-ip"), "ip_address"),
        (confirmed_elsewhere(confirmed_at=(now + timedelta(hours=1)).isoformat()), "confirmed_at"),
        (
            confirmed_elsewhere(confirmed_at=(SIGNED_UP - timedelta(minutes=1)).isoformat()),
            "confirmed_at",
        ),
    ]
    before = count_rows(app)
    for confirmation, field in cases:
        basis = consent(["product-updates"], confirmation=confirmation)
        response = register(admin_api, "dieter@firma.de", "DE", basis)
        assert response.status_code == 422, (field, response.json)
        assert field in str(response.json["error"]["fields"]), (field, response.json)
        assert count_rows(app) == before
    customer = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}
    refused = register(admin_api, "dieter@firma.de", "DE", {**customer, "confirmation": {
        **confirmed_elsewhere()}})  # fmt: skip
    assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_confirmation"
    assert count_rows(app) == before


def test_a_repeated_sync_asks_the_person_once(app, admin_api, smtp, mail_worker) -> None:
    first = register(admin_api, "dieter@firma.de", "DE", consent(["product-updates"]))
    mail_worker.drain()
    smtp.wait_for(1)
    eleven_minutes_pass(app)

    again = register(admin_api, "dieter@firma.de", "DE", consent(["product-updates"]))

    assert again.status_code == 200
    assert again.json["consent"]["status"] == "pending_confirmation"
    assert again.json["consent"]["confirmation_email"] == "already_sent"
    assert [e["kind"] for e in events(admin_api, first.json["id"])] == ["requested"]
    mail_worker.drain()
    assert len(smtp.messages) == 1


def _subscribed_then_unsubscribed(
    app: Any, client: Any, api: Any, smtp: Any, worker: Any, scope: str
) -> int:
    """A German contact confirmed product updates by the emailed link, then used
    the unsubscribe link in the welcome email (this topic, or all marketing)."""
    contact_id = register(api, "dieter@firma.de", "DE", consent(["product-updates"])).json["id"]
    worker.drain()
    client.post(link(smtp.wait_for(1)[0], "/confirm/"))
    worker.drain()
    welcome = smtp.wait_for(2)[1]
    done = client.post(link(welcome, "/unsubscribe/"), data={"scope": scope})
    assert done.status_code == 200
    assert decision(api, contact_id, "product-updates")["allowed"] is False
    eleven_minutes_pass(app)
    return contact_id


@pytest.mark.parametrize(("scope", "reason"), [("topic", "unsubscribed"), ("all", "suppressed")])
def test_api_consent_after_an_unsubscribe_is_a_request_and_an_email_never_a_yes(
    app, client, admin_api, smtp, mail_worker, scope, reason
) -> None:
    contact_id = _subscribed_then_unsubscribed(app, client, admin_api, smtp, mail_worker, scope)
    later = datetime.now(UTC).isoformat()
    # A CRM re-syncs it with a fresh date.
    basis = consent(["product-updates"], "crm-sync")
    basis["evidence"]["obtained_at"] = later

    response = register(admin_api, "dieter@firma.de", "DE", basis)

    assert response.json["consent"] == {
        "status": "pending_confirmation",
        "confirmation_email": "queued",
        "topics": [
            {
                "topic": "product-updates",
                "status": "pending_confirmation",
                "reason": "person_said_no",
            }
        ],
    }
    refused = decision(admin_api, contact_id, "product-updates")
    assert (refused["allowed"], refused["reason"]) == (False, reason)
    assert events(admin_api, contact_id)[-1]["kind"] == "requested"
    mail_worker.drain()
    third = smtp.wait_for(3)[2]
    # Only the person's own confirmation opens it again.
    client.post(link(third, "/confirm/"))
    assert decision(admin_api, contact_id, "product-updates")["reason"] == "consent"


def test_a_confirmation_made_elsewhere_never_reopens_the_persons_no(
    app, client, admin_api, smtp, mail_worker
) -> None:
    contact_id = register(admin_api, "sara@kund.se", "SE", consent(["events"])).json["id"]
    topic_unsubscribed = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"}
    )
    assert topic_unsubscribed.status_code == 201
    now = datetime.now(UTC)
    basis = consent(
        ["events"],
        confirmation=confirmed_elsewhere(confirmed_at=(now - timedelta(minutes=1)).isoformat()),
    )
    basis["evidence"]["obtained_at"] = (now - timedelta(minutes=5)).isoformat()

    response = register(admin_api, "sara@kund.se", "SE", basis)

    # As the signup form does for an objector: the confirmation email, and the
    # objection stands until the person presses its button.
    assert response.json["consent"]["topics"][0]["reason"] == "person_said_no"
    assert response.json["consent"]["confirmation_email"] == "queued"
    assert decision(admin_api, contact_id, "events")["reason"] == "objection"
    assert "external_confirmation" not in {e["source"] for e in events(admin_api, contact_id)}
    mail_worker.drain()
    [message] = smtp.wait_for(1)
    client.post(link(message, "/confirm/"))
    reopened = decision(admin_api, contact_id, "events")
    assert (reopened["allowed"], reopened["reason"]) == (True, "consent")
