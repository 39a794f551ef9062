"""Double opt-out: the unsubscribe page, RFC 8058 one-click, a typed address, the
preference centre, and what reaches (or no longer reaches) the inbox."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import count_rows
from tests.mailing.conftest import link, text_of
from tests.mailing.helpers import (
    contact_id_of,
    decision,
    eleven_minutes_pass,
    events,
    outbox,
    signup,
)


@pytest.fixture
def subscriber(app, client, smtp, mail_worker) -> dict[str, Any]:
    """A confirmed subscriber to the newsletter and events, with the welcome email,
    who comes back more than ten minutes after the confirmation email."""
    signup(client, "sara@example.se", topics="newsletter,events", language="sv")
    mail_worker.drain()
    client.post(link(smtp.wait_for(1)[0], "/confirm/"))
    mail_worker.drain()
    welcome = smtp.wait_for(2)[1]
    eleven_minutes_pass(app)
    return {"id": contact_id_of(app, "sara@example.se"), "welcome": welcome}


def _one_click_path(message: Any) -> str:
    header = str(message["List-Unsubscribe"])
    url = header.split(",")[0].strip().strip("<>")
    return url.removeprefix("http://localhost")


def test_one_click_unsubscribes_at_once_without_cookies_or_redirect(
    app, client, admin_api, subscriber
) -> None:
    path = _one_click_path(subscriber["welcome"])
    fresh = app.test_client(use_cookies=False)
    response = fresh.post(
        path,
        data={"List-Unsubscribe": "One-Click"},
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert "Set-Cookie" not in response.headers
    # The welcome email's one-click withdraws every topic that signup confirmed.
    assert decision(admin_api, subscriber["id"], "newsletter")["reason"] == "unsubscribed"
    assert decision(admin_api, subscriber["id"], "events")["reason"] == "unsubscribed"
    unsubscribed = [e for e in events(admin_api, subscriber["id"]) if e["kind"] == "unsubscribed"]
    assert sorted((e["topic"], e["source"]) for e in unsubscribed) == [
        ("events", "one_click"),
        ("newsletter", "one_click"),
    ]

    again = fresh.post(path, data={"List-Unsubscribe": "One-Click"})  # providers retry
    assert again.status_code == 200
    assert len([e for e in events(admin_api, subscriber["id"]) if e["kind"] == "unsubscribed"]) == 2


def test_one_click_accepts_multipart_and_refuses_a_post_without_the_body(
    app, client, admin_api, subscriber
) -> None:
    path = _one_click_path(subscriber["welcome"])
    before = count_rows(app)
    assert client.post(path, data={}).status_code == 400
    assert client.get(path).status_code == 405
    assert count_rows(app) == before
    multipart = client.post(
        path, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
    )
    assert multipart.status_code == 200
    assert decision(admin_api, subscriber["id"], "newsletter")["reason"] == "unsubscribed"


def test_unsubscribing_from_everything_suppresses_the_address(
    app, client, admin_api, subscriber
) -> None:
    path = link(subscriber["welcome"], "/unsubscribe/")
    page = client.get(path).get_data(as_text=True)
    assert '<html lang="sv">' in page and "Sluta skicka" in page
    client.post(path, data={"scope": "all"})
    for topic in ("newsletter", "events"):
        assert decision(admin_api, subscriber["id"], topic)["allowed"] is False
    kinds = [e["kind"] for e in events(admin_api, subscriber["id"])]
    assert kinds[-2:] == ["unsubscribed", "suppressed"]


def test_an_objection_on_the_page_blocks_marketing_already_queued(
    app, client, admin_api, subscriber
) -> None:
    from extensions import db
    from mailing import delivery
    from mailing.models import MailKind
    from mailing.outbox import queue_email

    with app.app_context():
        from crm.models import Contact

        contact = db.session.get(Contact, subscriber["id"])
        row = queue_email(
            contact,
            kind=MailKind.MARKETING,
            template="bulletin",
            topic="events",
            idempotency_key="bulletin:1",
            params={"subject": "Autumn seminar", "body": "Welcome to our seminar."},
        )
        db.session.commit()
        row_id = row.id
        db.session.remove()

    client.post(link(subscriber["welcome"], "/unsubscribe/"), data={"scope": "object"})
    assert decision(admin_api, subscriber["id"], "events")["reason"] == "objection"
    with app.app_context():
        result = delivery.deliver(row_id)
        db.session.remove()
    assert (result.status, result.reason) == ("blocked", "objection")
    [blocked] = [r for r in outbox(app) if r.id == row_id]
    assert (blocked.status, blocked.block_reason) == ("blocked", "objection")


def test_a_typed_address_gets_a_link_and_the_answer_never_tells(
    app, client, admin_api, smtp, mail_worker, subscriber
) -> None:
    known = client.post("/unsubscribe", data={"email": "sara@example.se"})
    unknown = client.post("/unsubscribe", data={"email": "nobody@example.se"})
    assert known.status_code == unknown.status_code == 200
    assert known.data == unknown.data
    client.post("/unsubscribe", data={"email": "sara@example.se"})  # within ten minutes
    mail_worker.drain()
    messages = smtp.wait_for(3)
    assert len(messages) == 3  # confirm, welcome, one link (not two)
    message = messages[2]
    assert message["List-Unsubscribe"] is None
    assert message["Subject"] == "Din länk för att avsluta prenumerationen"
    path = link(message, "/unsubscribe/")
    page = client.get(path).get_data(as_text=True)
    assert 'value="topic"' not in page  # the link is for everything
    client.post(path, data={"scope": "all"})
    assert decision(admin_api, subscriber["id"], "newsletter")["reason"] in (
        "unsubscribed",
        "suppressed",
    )


def test_the_preference_centre_turns_topics_off_at_once_and_on_by_confirmation(
    app, client, admin_api, smtp, mail_worker, subscriber
) -> None:
    path = link(subscriber["welcome"], "/preferences/")
    page = client.get(path).get_data(as_text=True)
    assert "Dina e-postinställningar" in page
    assert 'value="newsletter" checked' in page and 'value="surveys" checked' not in page

    saved = client.post(path, data={"action": "save", "topics": ["events", "surveys"]})
    assert saved.status_code == 200
    assert decision(admin_api, subscriber["id"], "newsletter")["reason"] == "unsubscribed"
    assert decision(admin_api, subscriber["id"], "surveys")["reason"] == "pending_confirmation"

    mail_worker.drain()
    confirmation = smtp.wait_for(3)[2]
    assert "Kundundersökningar" in text_of(confirmation)
    client.post(link(confirmation, "/confirm/"))
    assert decision(admin_api, subscriber["id"], "surveys")["reason"] == "consent"

    client.post(path, data={"action": "object"})
    assert decision(admin_api, subscriber["id"], "surveys")["reason"] == "objection"


def test_marketing_mail_carries_the_unsubscribe_headers_and_the_mailto_when_configured(
    app, client, smtp, mail_worker
) -> None:
    app.config["MAIL_UNSUBSCRIBE_MAILTO"] = "unsubscribe@example.se"
    try:
        signup(client, "headers@example.se")
        mail_worker.drain()
        confirmation = smtp.wait_for(1)[0]
        client.post(link(confirmation, "/confirm/"))
        mail_worker.drain()
        welcome = smtp.wait_for(2)[1]
    finally:
        app.config["MAIL_UNSUBSCRIBE_MAILTO"] = None
    assert confirmation["List-Unsubscribe"] is None
    assert confirmation["List-Unsubscribe-Post"] is None
    header = str(welcome["List-Unsubscribe"])
    assert header.startswith("<http://localhost/unsubscribe/")
    assert "<mailto:unsubscribe@example.se?subject=unsubscribe>" in header
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe/" in text_of(welcome)  # R6: the link in the body too
    assert (
        welcome["Message-ID"] == next(r for r in outbox(app) if r.template == "welcome").message_id
    )
