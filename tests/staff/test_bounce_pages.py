"""Bounces and complaints on the staff contact page: the timeline names them,
and "address fixed" (marketing, admin) makes email possible again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from extensions import db
from mailing.bounces import Bounce, record_bounce
from tests.mailing.conftest import SmtpSink, serve
from tests.mailing.test_bounces import ADDRESS, email_reasons, send_campaign_to
from tests.staff.helpers import client_as


@pytest.fixture
def smtp(app: Any) -> Iterator[SmtpSink]:
    """The real SMTP server (aiosmtpd) the campaign mail goes to."""
    yield from serve(app, SmtpSink())


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def _bounced_and_complained(app: Any) -> int:
    contact_id, _, message_id = send_campaign_to(app)
    with app.app_context():
        record_bounce(
            Bounce(
                email=ADDRESS,
                type="hard",
                source="dsn",
                status="5.1.1",
                diagnostic="550 5.1.1 User unknown",
                message_id=message_id,
            )
        )
        record_bounce(Bounce(email=ADDRESS, type="complaint", source="arf", message_id=message_id))
        db.session.remove()
    return contact_id


def test_the_timeline_names_bounces_and_complaints_in_english_and_swedish(app, smtp) -> None:
    contact_id = _bounced_and_complained(app)
    client = client_as(app, "sales")
    page = text(client.get(f"/staff/contacts/{contact_id}"))
    assert "address bounces (undeliverable) (returned mail)" in page
    assert "objected (spam complaint)" in page
    assert "hard bounce, 5.1.1, via dsn, marketing mail" in page
    assert "550 5.1.1 User unknown" in page
    assert "Email bounces since" in page
    with client.session_transaction() as session:
        session["staff_lang"] = "sv"
    page = text(client.get(f"/staff/contacts/{contact_id}"))
    assert "adressen studsar (studsat mejl)" in page
    assert "invändning (spamanmälan)" in page
    assert "Mejl studsar sedan" in page


def test_address_fixed_is_offered_to_marketing_and_clears_undeliverable(
    app, smtp, admin_api
) -> None:
    contact_id, _, message_id = send_campaign_to(app)
    with app.app_context():
        record_bounce(Bounce(email=ADDRESS, type="hard", source="dsn", message_id=message_id))
        db.session.remove()
    sales, marketing = client_as(app, "sales"), client_as(app, "marketing")
    assert "address-fixed-form" not in text(sales.get(f"/staff/contacts/{contact_id}"))
    assert "address-fixed-form" in text(marketing.get(f"/staff/contacts/{contact_id}"))
    refused = sales.post(f"/staff/contacts/{contact_id}/address-fixed", data={"note": "ok"})
    assert refused.status_code == 403
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    done = marketing.post(
        f"/staff/contacts/{contact_id}/address-fixed", data={"note": "typo corrected"}
    )
    assert done.status_code == 303
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}
    page = text(marketing.get(f"/staff/contacts/{contact_id}"))
    assert "address works again" in page and "address fixed: typo corrected" in page
    assert "address-fixed-form" not in page


def test_address_fixed_when_nothing_bounced_changes_nothing(app, smtp) -> None:
    contact_id, _, _ = send_campaign_to(app)
    marketing = client_as(app, "marketing")
    response = marketing.post(f"/staff/contacts/{contact_id}/address-fixed", data={})
    assert response.status_code == 303
    page = text(marketing.get(f"/staff/contacts/{contact_id}"))
    assert "This address is not bouncing." in page
    assert "address works again" not in page


def test_address_fixed_without_the_csrf_token_is_refused(app, smtp, admin_api, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    contact_id, _, message_id = send_campaign_to(app)
    with app.app_context():
        record_bounce(Bounce(email=ADDRESS, type="hard", source="dsn", message_id=message_id))
        db.session.remove()
    marketing = client_as(app, "marketing")
    refused = marketing.post(f"/staff/contacts/{contact_id}/address-fixed", data={})
    assert refused.status_code == 400
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    page = text(marketing.get(f"/staff/contacts/{contact_id}"))
    form = page.split('id="address-fixed-form"', 1)[1]
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    accepted = marketing.post(
        f"/staff/contacts/{contact_id}/address-fixed", data={"csrf_token": token}
    )
    assert accepted.status_code == 303
    assert email_reasons(admin_api, contact_id) == {"consent", "no_basis"}
