"""Restricted processing (GDPR art. 18) on the public forms and links.

While a contact is restricted, a signup, a confirmation, a renewal or a topic
ticked in the preference centre records nothing and sends no email (a
confirmation would ask for a yes that cannot be taken), but every page
answers exactly as it would for anyone else, so that nothing tells a stranger
the address is known, let alone restricted. The person's own "no" (an
unsubscribe, an objection, a request for an unsubscribe link) is always taken.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import count_rows
from tests.mailing.helpers import SITE_ORIGIN, decision, events, outbox, signup

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}


def _contact(api: Any, email: str, country: str = "SE") -> int:
    body = {"email": email, "name": "Eva", "country": country, "basis": CUSTOMER}
    return int(api.post("/api/v1/contacts", json=body).json["id"])


def _restrict(api: Any, contact_id: int) -> None:
    assert api.post(f"/api/v1/contacts/{contact_id}/restriction", json={}).status_code == 201


def _tick_box_signup(client: Any, address: str) -> Any:
    """A site's form with a ticked box, from a country whose rule makes that consent
    at once (R8): the path that recorded consent for a restricted contact."""
    return client.post(
        "/subscribe",
        json={
            "email": address,
            "topics": ["events"],
            "consent": True,
            "country": "SE",
            "form_id": "site-footer",
            "wording": "Yes, events by email.",
        },
        headers={"Origin": SITE_ORIGIN},
    )


def _token(app: Any, purpose: Any, payload: dict[str, Any], **kwargs: Any) -> str:
    from consent.tokens import make_token

    with app.app_context():
        return make_token(purpose, payload, **kwargs)


def test_a_signup_for_a_restricted_contact_records_nothing_and_answers_as_for_anyone(
    app, client, admin_api
) -> None:
    contact_id = _contact(admin_api, "eva@kund.se")
    _restrict(admin_api, contact_id)
    before = count_rows(app)
    restricted = _tick_box_signup(client, "Eva@Kund.se")
    double = signup(client, "eva@kund.se", topics="newsletter,events")
    assert count_rows(app) == before
    assert outbox(app) == []
    assert decision(admin_api, contact_id, "events")["reason"] == "restricted"

    stranger = _tick_box_signup(client, "stranger@kund.se")
    stranger_double = signup(client, "other@kund.se", topics="newsletter,events")
    assert (restricted.status_code, restricted.get_data()) == (
        stranger.status_code,
        stranger.get_data(),
    )
    assert (double.status_code, double.get_data()) == (
        stranger_double.status_code,
        stranger_double.get_data(),
    )


def test_a_confirmation_link_from_before_the_restriction_confirms_only_after_the_lift(
    app, client, admin_api
) -> None:
    from consent.models import SubscriptionRequest
    from consent.tokens import Purpose

    contact_id = _contact(admin_api, "eva@kund.se", country="DE")
    signup(client, "eva@kund.se", topics="events")
    with app.app_context():
        request_id = db.session.scalar(sa.select(SubscriptionRequest.id))
        db.session.remove()
    confirm = f"/confirm/{_token(app, Purpose.CONFIRM, {'r': request_id})}"
    _restrict(admin_api, contact_id)
    mails = len(outbox(app))

    page = client.post(confirm, headers={"Origin": SITE_ORIGIN})
    assert page.status_code == 200
    assert b"Subscription confirmed" in page.data
    assert "confirmed" not in [e["kind"] for e in events(admin_api, contact_id)]
    assert len(outbox(app)) == mails  # no welcome email

    # Renewing an expired link sends nothing either.
    old = _token(app, Purpose.CONFIRM, {"r": request_id}, issued_at=utcnow() - timedelta(days=8))
    with app.app_context():
        from mailing import subscription_flows

        subscription_flows.renew_confirmation(old, at=utcnow() + timedelta(minutes=11))
        db.session.remove()
    assert len(outbox(app)) == mails

    admin_api.delete(f"/api/v1/contacts/{contact_id}/restriction")
    client.post(confirm, headers={"Origin": SITE_ORIGIN})
    assert decision(admin_api, contact_id, "events")["reason"] == "consent"
    assert [r.template for r in outbox(app)][mails:] == ["welcome"]


def test_the_preference_centre_takes_only_the_persons_no_while_restricted(
    app, client, admin_api
) -> None:
    from consent.tokens import Purpose

    contact_id = _contact(admin_api, "eva@kund.se")
    _restrict(admin_api, contact_id)
    preferences = f"/preferences/{_token(app, Purpose.PREFERENCES, {'c': contact_id})}"
    headers = {"Origin": SITE_ORIGIN}
    before = count_rows(app)
    saved = client.post(preferences, data={"action": "save", "topics": ["events"]}, headers=headers)
    assert saved.status_code == 200
    assert count_rows(app) == before
    assert outbox(app) == []

    client.post(preferences, data={"action": "all"}, headers=headers)
    kinds = [e["kind"] for e in events(admin_api, contact_id)]
    assert kinds[-2:] == ["unsubscribed", "suppressed"]
    one_click = f"/unsubscribe/{_token(app, Purpose.UNSUBSCRIBE, {'c': contact_id, 't': 'events'})}"
    assert client.post(one_click, data={"scope": "object"}, headers=headers).status_code == 200
    assert "objected" in [e["kind"] for e in events(admin_api, contact_id)]
