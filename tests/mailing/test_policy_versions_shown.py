"""Evidence that proves what was shown (R23, R24; issue 19, item 8).

The confirmation records the version and wording of the signup, not the
version current at the click; callers cannot name versions or wordings that
were never published; a major version marks consents given under older ones
(which keep working) and a re-permission request asks exactly those people,
through the double opt-in link, to confirm under the new version.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from consent.evidence import form_wording, wording_hash
from extensions import db
from tests.conftest import count_rows
from tests.mailing.conftest import link, text_of
from tests.mailing.helpers import contact_id_of, decision, events, signup
from tests.staff.helpers import client_as

WORDING_1 = "Yes, send me news by email (policy 1.0)."
WORDING_2 = "Yes, send me news by email (policy 2.0)."


def publish(api: Any, version: str, *, major: bool = False, wording: str | None = None) -> None:
    body: dict[str, Any] = {
        "version": version,
        "major": major,
        "url": f"https://example.com/privacy/{version}",
    }
    if wording:
        body["wordings"] = [{"key": "signup", "language": "en", "text": wording}]
    published = api.post("/api/v1/policies", json=body)
    assert published.status_code == 201, published.json


def synced_consent(
    api: Any, email: str, version: str, wording: str | None = None, **evidence: Any
) -> Any:
    """A consent a CRM syncs, with the version and wording the person was shown."""
    shown: dict[str, Any] = {
        "obtained_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "policy_version": version,
        **evidence,
    }
    if wording is not None:
        shown["wording"] = wording
    return api.post(
        "/api/v1/contacts",
        json={
            "email": email,
            "country": "SE",
            "language": "en",
            "basis": {
                "type": "consent",
                "source": "crm-sync",
                "topics": ["events"],
                "evidence": shown,
            },
        },
    )


def test_the_confirmation_records_the_version_and_wording_shown_at_signup(
    app, client, admin_api, smtp, mail_worker
) -> None:
    publish(admin_api, "1.0")
    signup(client, "anna@example.se", topics="newsletter")
    publish(admin_api, "1.1")  # published between the signup and the click
    mail_worker.drain()
    [confirmation] = [m for m in smtp.wait_for(1) if "confirm" in m["Subject"].lower()]

    confirmed = client.post(link(confirmation, "/confirm/"))

    assert confirmed.status_code == 200
    contact_id = contact_id_of(app, "anna@example.se")
    ledger = events(admin_api, contact_id)
    [requested] = [e for e in ledger if e["kind"] == "requested"]
    [confirmation_event] = [e for e in ledger if e["kind"] == "confirmed"]
    with app.app_context():
        from consent.topics import current_policy

        hosted = current_policy().form("hosted")
        shown = wording_hash(form_wording(hosted, "en", ["newsletter"], "1.0"))
    assert requested["policy_version"] == "1.0"
    assert (confirmation_event["policy_version"], confirmation_event["wording_hash"]) == (
        "1.0",
        shown,
    )
    # The click's own facts stay the confirmation's.
    assert confirmation_event["form_id"] == "confirmation"


def test_a_consent_naming_a_version_never_published_is_refused_by_name(app, admin_api) -> None:
    publish(admin_api, "1.0", wording=WORDING_1)
    before = count_rows(app)

    refused = synced_consent(admin_api, "ny@kund.se", "0.9", WORDING_1)

    assert refused.status_code == 422
    assert refused.json["error"]["code"] == "unknown_policy_version"
    assert "0.9" in refused.json["error"]["message"]
    assert count_rows(app) == before


def test_a_consent_naming_a_wording_its_version_never_published_is_refused(app, admin_api) -> None:
    publish(admin_api, "1.0", wording=WORDING_1)
    before = count_rows(app)

    by_text = synced_consent(admin_api, "ny@kund.se", "1.0", "Something else entirely.")
    by_hash = synced_consent(admin_api, "ny@kund.se", "1.0", wording_hash="0" * 64)

    for refused in (by_text, by_hash):
        assert refused.status_code == 422
        assert refused.json["error"]["code"] == "unknown_wording"
        assert "1.0" in refused.json["error"]["message"]
        assert "wording_hash" in str(refused.json["error"]["fields"])
    assert count_rows(app) == before
    accepted = synced_consent(admin_api, "ny@kund.se", "1.0", wording_hash=wording_hash(WORDING_1))
    assert accepted.status_code == 201, accepted.json


def last_interaction(app: Any, contact_id: int) -> datetime | None:
    from crm.models import Contact

    with app.app_context():
        found = db.session.scalar(
            sa.select(Contact.last_interaction_at).where(Contact.id == contact_id)
        )
        db.session.remove()
    return found


def requests_received(smtp: Any, timeout: float = 20.0) -> list[Any]:
    """The re-permission emails received, once at least one has arrived."""
    deadline = time.monotonic() + timeout
    while True:
        asks = [m for m in smtp.messages if m["Subject"].startswith("Please confirm")]
        if asks or time.monotonic() > deadline:
            return asks
        time.sleep(0.05)


def _marked(explanation: str) -> bool:
    return "Given under policy version 1.0; version 2.0 is a major change" in explanation


def test_a_major_version_marks_older_consents_and_re_permission_asks_exactly_them(
    app, client, admin_api, smtp, mail_worker
) -> None:
    publish(admin_api, "1.0", wording=WORDING_1)
    older = synced_consent(admin_api, "gammal@kund.se", "1.0", WORDING_1).json["id"]
    objector = synced_consent(admin_api, "nej@kund.se", "1.0", WORDING_1).json["id"]
    admin_api.post(f"/api/v1/contacts/{objector}/objection", json={"received_via": "phone"})
    customer = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "kund@kund.se",
            "country": "SE",
            "company": {"name": "Kund AB", "country": "SE", "customer_since": "2020-01-01"},
            "basis": {"type": "legitimate_interest", "kind": "customer", "source": "crm"},
        },
    ).json["id"]
    publish(admin_api, "2.0", major=True, wording=WORDING_2)
    newer = synced_consent(admin_api, "ny@kund.se", "2.0", WORDING_2).json["id"]

    # Marked, and still allowed: a new version neither voids nor renews a consent.
    before = decision(admin_api, older, "events")
    assert (before["allowed"], before["reason"]) == (True, "consent")
    assert _marked(before["explanation"])
    assert not _marked(decision(admin_api, newer, "events")["explanation"])
    batch = admin_api.post(
        "/api/v1/permissions/check",
        json={"emails": ["gammal@kund.se", "ny@kund.se"], "topic": "events"},
    ).json["decisions"]
    assert [_marked(d["explanation"]) for d in batch] == [True, False]
    staff = client_as(app, "marketing")
    page = staff.get(f"/staff/contacts/{older}").get_data(as_text=True)
    assert "Given under policy version 1.0; version 2.0 is a major change" in page
    campaigns = staff.get("/staff/campaigns").get_data(as_text=True)
    assert "Re-permission under policy version 2.0" in campaigns
    assert "<strong>1</strong>" in campaigns

    kept_alive_until = last_interaction(app, older)
    sent = staff.post("/staff/campaigns/repermission", data={"confirm": "yes"})
    assert sent.status_code == 303
    assert "Re-permission requests are on their way." in staff.get(sent.location).get_data(
        as_text=True
    )
    # Asking is staff's act, not the person's: it keeps no data alive (X16).
    assert last_interaction(app, older) == kept_alive_until
    [asked] = [e for e in events(admin_api, older) if e["kind"] == "requested"]
    assert asked["recorded_by"] == "user:marketing@staff.example"
    again = staff.post("/staff/campaigns/repermission", data={"confirm": "yes"})
    assert again.status_code == 303

    mail_worker.drain()
    # The policy notices go to whoever is registered when their job runs (R24);
    # the re-permission request only to the one marked consent.
    asks = requests_received(smtp)
    assert [m["To"].addresses[0].addr_spec for m in asks] == ["gammal@kund.se"]
    [ask] = asks
    with app.app_context():
        from consent.evidence import repermission_wording

        sentence = repermission_wording("en", ["events"], "2.0")
    assert sentence in text_of(ask)
    assert "List-Unsubscribe" not in ask

    confirmed = client.post(link(ask, "/confirm/"))

    assert confirmed.status_code == 200
    ledger = events(admin_api, older)
    latest = [e for e in ledger if e["kind"] == "confirmed"][-1]
    assert (latest["source"], latest["policy_version"], latest["wording_hash"]) == (
        "double_opt_in",
        "2.0",
        wording_hash(sentence),
    )
    after = decision(admin_api, older, "events")
    assert (after["allowed"], after["reason"]) == (True, "consent")
    assert not _marked(after["explanation"])
    for untouched in (objector, customer, newer):
        assert not [e for e in events(admin_api, untouched) if e["kind"] == "requested"]
    with app.app_context():
        from mailing.models import OutboxMessage

        templates = db.session.scalars(
            sa.select(OutboxMessage.template).where(OutboxMessage.template == "repermission")
        ).all()
    assert templates == ["repermission"]


def test_without_a_major_version_nothing_is_marked_and_no_request_can_be_sent(
    app, admin_api
) -> None:
    publish(admin_api, "1.0", wording=WORDING_1)
    contact_id = synced_consent(admin_api, "gammal@kund.se", "1.0", WORDING_1).json["id"]
    publish(admin_api, "1.1", wording=WORDING_2)

    assert not _marked(decision(admin_api, contact_id, "events")["explanation"])
    staff = client_as(app, "marketing")
    assert "Re-permission" not in staff.get("/staff/campaigns").get_data(as_text=True)
    refused = staff.post("/staff/campaigns/repermission", data={"confirm": "yes"})
    assert refused.status_code == 303
    assert "No major policy version" in staff.get(refused.location).get_data(as_text=True)


def test_re_permission_does_not_ask_for_a_web_tracking_consent(app, admin_api) -> None:
    """R24 asks marketing consents again; the cookie consent (R19) is no
    newsletter, and a double opt-in mail for it would be marketing in disguise."""
    publish(admin_api, "1.0", wording=WORDING_1)
    shown = {
        "obtained_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "policy_version": "1.0",
        "wording": WORDING_1,
    }
    created = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "kaka@kund.se",
            "country": "SE",
            "basis": {
                "type": "consent",
                "source": "cookie-banner",
                "topics": ["web-tracking"],
                "evidence": shown,
            },
        },
    )
    assert created.status_code == 201, created.json
    older = synced_consent(admin_api, "gammal@kund.se", "1.0", WORDING_1).json["id"]
    publish(admin_api, "2.0", major=True, wording=WORDING_2)
    with app.app_context():
        from consent.services import older_consents

        assert older_consents() == {older: ["events"]}
        db.session.remove()


def test_an_api_consent_confirmed_by_the_person_keeps_the_callers_version_and_wording(
    app, client, admin_api, smtp, mail_worker
) -> None:
    """R23: the caller's signup happened before the request it opened; the
    person's confirmation still records what the caller says they were shown."""
    publish(admin_api, "1.0", wording=WORDING_1)
    created = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "bestaetigt@firma.de",
            "country": "DE",
            "language": "en",
            "basis": {
                "type": "consent",
                "source": "crm-sync",
                "topics": ["events"],
                "evidence": {
                    "obtained_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
                    "policy_version": "1.0",
                    "wording": WORDING_1,
                },
            },
        },
    )
    assert created.status_code == 201, created.json
    assert created.json["consent"]["status"] == "pending_confirmation"
    publish(admin_api, "1.1")  # published between the signup and the click
    mail_worker.drain()
    [confirmation] = [m for m in smtp.wait_for(1) if "confirm" in m["Subject"].lower()]

    assert client.post(link(confirmation, "/confirm/")).status_code == 200

    [confirmed] = [e for e in events(admin_api, created.json["id"]) if e["kind"] == "confirmed"]
    assert (confirmed["policy_version"], confirmed["wording_hash"]) == (
        "1.0",
        wording_hash(WORDING_1),
    )
