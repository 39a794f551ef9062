"""Signed links: tampered, expired, wrong-purpose and replayed links are refused with
a clear page and no change; unsubscribe links outlive 60 days and a key rotation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from consent.tokens import Purpose, make_token
from kernel.timestamps import utcnow
from tests.conftest import count_rows
from tests.mailing.conftest import link
from tests.mailing.helpers import contact_id_of, decision, signup


@pytest.fixture
def confirm_path(app, client, smtp, mail_worker) -> str:
    signup(client, "links@example.se")
    mail_worker.drain()
    return link(smtp.wait_for(1)[0], "/confirm/")


def _tamper(path: str) -> str:
    head, token = path.rsplit("/", 1)
    payload, rest = token.split(".", 1)
    # Point the payload at another request id; the signature no longer matches.
    return f"{head}/eyJyIjoyfQ.{rest}" if payload != "eyJyIjoyfQ" else f"{head}/eyJyIjozfQ.{rest}"


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_confirmation_link_is_refused_and_changes_nothing(
    app, client, confirm_path, method
) -> None:
    before = count_rows(app)
    response = getattr(client, method)(_tamper(confirm_path))
    assert response.status_code == 400
    assert b"This link does not work" in response.data
    assert count_rows(app) == before


def test_an_expired_confirmation_link_offers_a_new_email(
    app, client, admin_api, smtp, mail_worker
) -> None:
    signup(client, "late@example.se")
    mail_worker.drain()
    smtp.wait_for(1)
    contact_id = contact_id_of(app, "late@example.se")
    with app.app_context():
        from consent.models import SubscriptionRequest
        from extensions import db

        request_id = db.session.query(SubscriptionRequest.id).scalar()
        old = make_token(Purpose.CONFIRM, {"r": request_id}, issued_at=utcnow() - timedelta(days=8))
    before = count_rows(app)
    for method in ("get", "post"):
        page = getattr(client, method)(f"/confirm/{old}")
        assert page.status_code == 410
        assert b"This link has expired" in page.data
        assert b"Send me a new link" in page.data
    assert count_rows(app) == before
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "pending_confirmation"

    # The last email went out just now: the ten-minute rule holds the new one back.
    assert client.post(f"/confirm/{old}/renew").status_code == 200
    assert count_rows(app)["outbox_message"] == before["outbox_message"]


def test_a_confirmation_link_for_another_purpose_is_refused(app, client, confirm_path) -> None:
    contact_id = contact_id_of(app, "links@example.se")
    with app.app_context():
        unsubscribe = make_token(Purpose.UNSUBSCRIBE, {"c": contact_id, "t": "newsletter"})
        confirm = confirm_path.rsplit("/", 1)[1]
    before = count_rows(app)
    assert client.post(f"/confirm/{unsubscribe}").status_code == 400
    assert client.post(f"/unsubscribe/{confirm}", data={"scope": "all"}).status_code == 400
    assert client.post(f"/preferences/{confirm}", data={"action": "object"}).status_code == 400
    one_click = client.post(
        f"/unsubscribe/{confirm}/one-click", data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 400
    assert count_rows(app) == before


def test_a_replayed_confirmation_link_changes_nothing_the_second_time(
    app, client, confirm_path
) -> None:
    assert client.post(confirm_path).status_code == 200
    before = count_rows(app)
    replay = client.post(confirm_path)
    assert replay.status_code == 200 and b"Already confirmed" in replay.data
    assert count_rows(app) == before


def test_a_link_to_an_erased_contact_says_it_no_longer_works(app, client, confirm_path) -> None:
    contact_id = contact_id_of(app, "links@example.se")
    with app.app_context():
        from crm.services import remove_contact
        from extensions import db

        unsubscribe = make_token(Purpose.UNSUBSCRIBE, {"c": contact_id, "t": "newsletter"})
        remove_contact(contact_id)
        db.session.commit()
    assert client.get(confirm_path).status_code == 400
    assert client.get(f"/unsubscribe/{unsubscribe}").status_code == 400


def test_an_unsubscribe_link_works_after_60_days_and_across_a_key_rotation(
    app, client, admin_api, confirm_path
) -> None:
    client.post(confirm_path)
    contact_id = contact_id_of(app, "links@example.se")
    with app.app_context():
        old = make_token(
            Purpose.UNSUBSCRIBE,
            {"c": contact_id, "t": "newsletter"},
            issued_at=utcnow() - timedelta(days=61),
        )
    old_key = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "a-brand-new-secret-key"
    try:
        app.config["SECRET_KEY_FALLBACKS"] = []
        assert client.get(f"/unsubscribe/{old}").status_code == 400  # unknown key: refused
        app.config["SECRET_KEY_FALLBACKS"] = [old_key]
        assert client.get(f"/unsubscribe/{old}").status_code == 200
        done = client.post(f"/unsubscribe/{old}", data={"scope": "topic"})
        assert done.status_code == 200
    finally:
        app.config["SECRET_KEY"] = old_key
        app.config["SECRET_KEY_FALLBACKS"] = []
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "unsubscribed"


def test_an_unsubscribe_link_older_than_its_lifetime_is_refused(app, client, confirm_path) -> None:
    contact_id = contact_id_of(app, "links@example.se")
    with app.app_context():
        ancient = make_token(
            Purpose.UNSUBSCRIBE,
            {"c": contact_id, "t": "newsletter"},
            issued_at=utcnow() - timedelta(days=181),
        )
    before = count_rows(app)
    response = client.post(f"/unsubscribe/{ancient}", data={"scope": "all"})
    assert response.status_code == 400
    assert b"This link does not work" in response.data
    assert count_rows(app) == before


def test_an_expired_link_sends_a_new_confirmation_after_ten_minutes(
    app, client, admin_api, smtp, mail_worker
) -> None:
    signup(client, "renew@example.se")
    mail_worker.drain()
    smtp.wait_for(1)
    with app.app_context():
        from consent.models import SubscriptionRequest
        from extensions import db
        from mailing import subscription_flows

        request_id = db.session.query(SubscriptionRequest.id).scalar()
        old = make_token(Purpose.CONFIRM, {"r": request_id}, issued_at=utcnow() - timedelta(days=8))
        subscription_flows.renew_confirmation(old, at=utcnow() + timedelta(minutes=11))
        db.session.remove()
    mail_worker.drain()
    fresh = smtp.wait_for(2)[1]
    confirmed = client.post(link(fresh, "/confirm/"))
    assert b"Subscription confirmed" in confirmed.data
    contact_id = contact_id_of(app, "renew@example.se")
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "consent"
