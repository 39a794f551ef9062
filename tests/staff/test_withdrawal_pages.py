"""Withdrawals and phone-only objections taken by staff on the contact page
(issue 19, item 7): roles, CSRF, what the decisions show afterwards."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from consent.models import ConsentEvent
from extensions import db
from tests.conftest import count_rows
from tests.staff.helpers import client_as, make_contact, make_user, sign_in
from tests.staff.test_contact_pages import text, verdicts


def withdrawals(app: Any) -> list[ConsentEvent]:
    with app.app_context():
        found = list(
            db.session.scalars(
                sa.select(ConsentEvent)
                .where(ConsentEvent.kind == "withdrawn")
                .order_by(ConsentEvent.id)
            )
        )
        db.session.expunge_all()
    return found


def test_sales_records_stop_the_newsletter_by_phone_and_other_topics_keep_their_basis(
    app,
) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "sales")

    response = client.post(
        f"/staff/contacts/{contact_id}/withdrawal",
        data={
            "topic": "events",
            "channel": "all",
            "received_via": "phone",
            "note": "Stop the event invitations, please.",
        },
    )

    assert response.status_code == 303
    page = text(client.get(response.location))
    assert "Withdrawal recorded." in page
    shown = verdicts(page)
    assert shown[("events", "email")] == "Not allowed: unsubscribed"
    assert shown[("events", "phone")] == "Not allowed: unsubscribed"
    assert shown[("product-updates", "email")] == "Allowed: customer"
    events = withdrawals(app)
    assert [(e.topic, e.channel) for e in events] == [("events", "email"), ("events", "phone")]
    assert {(e.recorded_by, e.received_via, e.source) for e in events} == {
        ("user:sales@staff.example", "phone", "staff")
    }
    assert events[0].note == "Stop the event invitations, please."


def test_a_phone_only_objection_stops_calls_and_email_marketing_continues(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "sales")

    response = client.post(
        f"/staff/contacts/{contact_id}/objection",
        data={"received_via": "phone", "channel": "phone", "note": "No more sales calls."},
    )

    assert response.status_code == 303
    shown = verdicts(text(client.get(response.location)))
    assert {v for (_, channel), v in shown.items() if channel == "phone"} == {
        "Not allowed: objection"
    }
    assert shown[("product-updates", "email")] == "Allowed: customer"
    assert shown[("events", "email")] == "Allowed: customer"


def test_the_page_offers_the_withdrawal_with_every_topic_channel_and_way_received(app) -> None:
    contact_id = make_contact(app)
    page = text(client_as(app, "sales").get(f"/staff/contacts/{contact_id}"))

    form = page.split('id="withdrawal-form"', 1)[1].split("</form>", 1)[0]
    assert 'name="csrf_token"' in form
    assert re.search(r'name="topic">\s*<option value="all">', form)
    assert re.search(r'name="channel">\s*<option value="all">', form)
    for value in ("newsletter", "events", "phone", "email", "letter", "meeting"):
        assert f'value="{value}"' in form


def test_a_withdrawal_naming_an_unknown_topic_is_refused_and_writes_nothing(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "sales")
    before = count_rows(app)

    response = client.post(
        f"/staff/contacts/{contact_id}/withdrawal",
        data={"topic": "horoscope", "channel": "all", "received_via": "phone"},
    )

    assert response.status_code == 303
    assert "Unknown topic" in text(client.get(response.location))
    after = count_rows(app)
    assert after["consent_event"] == before["consent_event"]
    assert withdrawals(app) == []


def test_a_withdrawal_without_the_csrf_token_is_refused(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    contact_id = make_contact(app)
    client = app.test_client()
    sign_in(client, app, make_user(app, "sales"))

    refused = client.post(
        f"/staff/contacts/{contact_id}/withdrawal",
        data={"topic": "events", "channel": "all", "received_via": "phone"},
    )
    assert refused.status_code == 400
    assert withdrawals(app) == []

    page = text(client.get(f"/staff/contacts/{contact_id}"))
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    accepted = client.post(
        f"/staff/contacts/{contact_id}/withdrawal",
        data={"topic": "events", "channel": "all", "received_via": "phone", "csrf_token": token},
    )
    assert accepted.status_code == 303
    assert len(withdrawals(app)) == 2


def test_signed_out_the_withdrawal_goes_to_the_sign_in_page(app) -> None:
    contact_id = make_contact(app)
    response = app.test_client().post(
        f"/staff/contacts/{contact_id}/withdrawal",
        data={"topic": "events", "channel": "all", "received_via": "phone"},
    )
    assert response.status_code == 302
    assert "/staff/login" in response.location
    assert withdrawals(app) == []
