"""Subscribe, confirm and unsubscribe as a person does: through real email."""

from __future__ import annotations

from consent.evidence import form_wording, wording_hash
from tests.conftest import count_rows
from tests.mailing.conftest import link, links_in, text_of
from tests.mailing.helpers import (
    contact_id_of,
    decision,
    eleven_minutes_pass,
    events,
    outbox,
    signup,
)


def test_a_person_subscribes_confirms_by_email_and_unsubscribes_through_the_link(
    app, client, admin_api, smtp, mail_worker
) -> None:
    page = client.get("/subscribe?topics=newsletter,events&lang=en")
    assert page.status_code == 200
    assert b'name="consent"' in page.data

    response = signup(client, "anna@example.se", topics="newsletter,events", name="Anna")
    assert response.status_code == 200
    assert b"Check your inbox" in response.data

    mail_worker.drain()
    [confirmation] = smtp.wait_for(1)
    assert confirmation["To"].addresses[0].addr_spec == "anna@example.se"
    assert confirmation["List-Unsubscribe"] is None  # transactional mail (R6)
    contact_id = contact_id_of(app, "anna@example.se")
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "pending_confirmation"

    confirm_path = link(confirmation, "/confirm/")
    shown = client.get(confirm_path)
    assert shown.status_code == 200 and b"Confirm</button>" in shown.data
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "pending_confirmation"

    confirmed = client.post(confirm_path, headers={"User-Agent": "Mozilla/5.0 (phone)"})
    assert confirmed.status_code == 200 and b"Subscription confirmed" in confirmed.data
    for topic in ("newsletter", "events"):
        allowed = decision(admin_api, contact_id, topic)
        assert (allowed["allowed"], allowed["basis"], allowed["reason"]) == (
            True,
            "consent",
            "consent",
        )

    ledger = events(admin_api, contact_id)
    requested = [e for e in ledger if e["kind"] == "requested"]
    assert {e["topic"] for e in requested} == {"newsletter", "events"}
    first = requested[0]
    assert first["ip_address"] == "192.0.2.10"
    assert first["user_agent"] == "Mozilla/5.0 (test)"
    assert first["form_id"] == "hosted"
    assert first["language"] == "en"
    assert first["policy_version"] == "1.0"
    with app.app_context():
        from consent.topics import current_policy

        hosted = current_policy().form("hosted")
        expected = wording_hash(form_wording(hosted, "en", ["newsletter", "events"], "1.0"))
    assert first["wording_hash"] == expected
    confirmed_events = [e for e in ledger if e["kind"] == "confirmed"]
    assert {e["source"] for e in confirmed_events} == {"double_opt_in"}
    assert confirmed_events[0]["user_agent"] == "Mozilla/5.0 (phone)"
    # The ledger keeps the page, never a working link.
    assert confirmed_events[0]["page_url"] == "http://localhost/confirm/<token>"

    mail_worker.drain()
    welcome = smtp.wait_for(2)[1]
    assert "Welcome" in welcome["Subject"]
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/one-click>" in welcome["List-Unsubscribe"]
    # As sent, not only as parsed: a URL mailbox providers can read (RFC 2369,
    # RFC 8058), never RFC 2047 encoded words.
    [raw_welcome] = [raw for raw in smtp.raw if b"List-Unsubscribe:" in raw]
    header = raw_welcome.split(b"List-Unsubscribe:", 1)[1].split(b"\r\n", 1)[0]
    assert header.strip().startswith(b"<http") and b"=?" not in header, header

    unsubscribe_path = link(welcome, "/unsubscribe/")
    assert client.get(unsubscribe_path).status_code == 200
    done = client.post(unsubscribe_path, data={"scope": "topic"})
    assert done.status_code == 200 and b"You are unsubscribed" in done.data
    refused = decision(admin_api, contact_id, "newsletter")
    assert (refused["allowed"], refused["reason"]) == (False, "unsubscribed")
    # The welcome email's link speaks for every topic that signup confirmed.
    assert decision(admin_api, contact_id, "events")["reason"] == "unsubscribed"
    kinds = [e["kind"] for e in events(admin_api, contact_id)]
    assert kinds[-1] == "unsubscribed"


def test_fetching_every_link_with_get_and_head_changes_nothing(
    app, client, smtp, mail_worker
) -> None:
    signup(client, "scanner@example.se")
    mail_worker.drain()
    [confirmation] = smtp.wait_for(1)
    before = count_rows(app)
    for url in links_in(confirmation):
        path = url.removeprefix("http://localhost")
        assert client.get(path).status_code < 500
        assert client.head(path).status_code < 500
    assert count_rows(app) == before

    client.post(link(confirmation, "/confirm/"))
    eleven_minutes_pass(app)
    client.post("/unsubscribe", data={"email": "scanner@example.se"})
    mail_worker.drain()
    messages = smtp.wait_for(3)
    before = count_rows(app)
    statuses = [row.status for row in outbox(app)]
    urls = [url for message in messages[1:] for url in links_in(message)]
    assert any("/one-click" in url for url in urls)
    assert any("/preferences/" in url for url in urls)
    for url in urls:
        path = url.removeprefix("http://localhost")
        assert client.get(path).status_code < 500
        assert client.head(path).status_code < 500
    assert count_rows(app) == before
    assert [row.status for row in outbox(app)] == statuses


def test_a_second_confirmation_says_already_confirmed_and_records_nothing(
    app, client, admin_api, smtp, mail_worker
) -> None:
    signup(client, "twice@example.se")
    mail_worker.drain()
    confirm_path = link(smtp.wait_for(1)[0], "/confirm/")
    client.post(confirm_path)
    contact_id = contact_id_of(app, "twice@example.se")
    before = events(admin_api, contact_id)

    again = client.post(confirm_path)
    assert again.status_code == 200
    assert b"Already confirmed" in again.data
    assert b"Already confirmed" in client.get(confirm_path).data
    assert events(admin_api, contact_id) == before


def test_the_email_and_pages_are_in_the_contacts_language(app, client, smtp, mail_worker) -> None:
    response = signup(client, "sven@example.se", language="sv")
    assert "Titta i din inkorg" in response.get_data(as_text=True)
    mail_worker.drain()
    [message] = smtp.wait_for(1)
    assert message["Subject"] == "Bekräfta din prenumeration"
    assert "Nyhetsbrev" in text_of(message)
    page = client.get(link(message, "/confirm/"))
    assert '<html lang="sv">' in page.get_data(as_text=True)
    assert "Bekräfta</button>" in page.get_data(as_text=True)
