"""No mail can be turned into a phishing letter by what someone typed into a form
(issue 18, item 4).

A signup form takes a ``name`` and a ``company`` from whoever posts it, for any
address. The rules: mail to an address that has not proved itself carries no
text that person chose (not in the greeting, not in ``To``), and no mail turns
a contact's text into a link.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

import pytest

from extensions import db
from kernel.access import Actor
from mailing import campaigns
from mailing.campaigns import CampaignInput
from tests.mailing.conftest import link, text_of
from tests.mailing.helpers import eleven_minutes_pass, outbox, signup

STAFF = Actor(kind="user", name="marketer@example.com", role="marketing")
ADDRESS = "victim@example.com"
# Every field the form poster chose holds this word: nothing of it may show.
MARK = "evil"
POSTED = [
    ("Click https://evil.example/login to keep your account", "https://evil.example Ltd"),
    ('<a href="https://evil.example/pay">Your invoice</a>', "<b>evil</b> AB"),
    ("Zoë <boss@evil.example> www.evil.example", "Evil (www.evil.example)"),
    # A link that looks like one of ours.
    ("http://localhost/preferences/evilforged", "http://localhost/unsubscribe/evilforged"),
]
POSTED_IDS = ["url", "html", "address-and-www", "our-own-looking-link"]
STAFF_URL = "https://example.com/news?a=1&b=2"
POLICY_URL = "https://example.com/privacy/2.0"


def _everything_shown(message: EmailMessage) -> str:
    """Every header as a mail client decodes it, and every text part."""
    shown = [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            shown.append(part.get_content())
    return "\n".join(shown)


def _received_raw(app: Any, smtp: Any, template: str) -> list[tuple[EmailMessage, bytes]]:
    """The messages of one template the SMTP server received, with their bytes."""
    ids = {row.message_id for row in outbox(app) if row.template == template}
    found = [
        (m, raw) for m, raw in zip(smtp.messages, smtp.raw, strict=True) if m["Message-ID"] in ids
    ]
    assert found, f"no {template} email received"
    return found


def _received(app: Any, smtp: Any, template: str) -> list[EmailMessage]:
    return [message for message, _ in _received_raw(app, smtp, template)]


def _request_unsubscribe_link(client: Any, admin_api: Any) -> None:
    assert client.post("/unsubscribe", data={"email": ADDRESS}).status_code == 200


def _request_privacy_verification(client: Any, admin_api: Any) -> None:
    answer = client.post("/privacy/requests", data={"email": ADDRESS, "kind": "access"})
    assert answer.status_code == 200


def _publish_a_major_policy(client: Any, admin_api: Any) -> None:
    published = admin_api.post(
        "/api/v1/policies", json={"version": "2.0", "major": True, "url": POLICY_URL}
    )
    assert published.status_code == 201, published.json


# Every transactional email that goes to an address that may never have been its
# owner's: what follows a signup, and what anyone can ask for by typing an address.
FLOWS = {
    "confirm": None,
    "unsubscribe_link": _request_unsubscribe_link,
    "privacy_verify": _request_privacy_verification,
    "policy_notice": _publish_a_major_policy,
}


@pytest.mark.parametrize("template", FLOWS)
@pytest.mark.parametrize(("name", "company"), POSTED, ids=POSTED_IDS)
def test_mail_to_an_unconfirmed_address_carries_nothing_the_form_poster_chose(
    app, client, admin_api, smtp, mail_worker, template, name, company
) -> None:
    assert signup(client, ADDRESS, name=name, company=company).status_code == 200
    mail_worker.drain()
    flow = FLOWS[template]
    if flow is not None:
        eleven_minutes_pass(app)  # one email a form can cause per mailbox per ten minutes
        flow(client, admin_api)
        mail_worker.drain()

    for message, raw in _received_raw(app, smtp, template):
        [to] = message["To"].addresses
        assert to.addr_spec == ADDRESS
        assert MARK not in _everything_shown(message).lower()
        assert MARK.encode() not in raw.lower()


def _links(message: EmailMessage) -> list[str]:
    """The targets of every link in the HTML parts."""
    found = []
    for part in message.walk():
        if part.get_content_type() == "text/html":
            html = part.get_content()
            targets = re.findall(r"""<a\s[^>]*?href=["']([^"']*)""", html, flags=re.IGNORECASE)
            assert len(targets) == len(re.findall(r"<a\b", html, flags=re.IGNORECASE))
            found += targets
    return found


@pytest.mark.parametrize(("name", "company"), POSTED, ids=POSTED_IDS)
def test_no_mail_turns_a_contact_s_text_into_a_link(
    app, client, admin_api, smtp, mail_worker, name, company
) -> None:
    """The mail that may name the person once the address has proved itself (the
    welcome after confirming, the copy of their data after verifying), a
    campaign and the policy notice: their links are the service's and the
    staff's, and the name is text."""
    assert signup(client, ADDRESS, name=name, company=company).status_code == 200
    mail_worker.drain()
    [confirmation] = smtp.wait_for(1)
    assert client.post(link(confirmation, "/confirm/")).status_code == 200
    mail_worker.drain()
    eleven_minutes_pass(app)
    _request_privacy_verification(client, admin_api)
    mail_worker.drain()
    [verification] = _received(app, smtp, "privacy_verify")
    assert client.post(link(verification, "/privacy/verify/")).status_code == 200
    with app.app_context():
        texts = CampaignInput(
            topic="newsletter",
            subject_sv="Nyheter",
            body_sv=f"Läs mer på {STAFF_URL} i dag.",
            subject_en="News",
            body_en=f"Read more at {STAFF_URL} today.",
        )
        campaigns.send_campaign(STAFF, campaigns.create_campaign(STAFF, texts).id)
        db.session.remove()
    _publish_a_major_policy(client, admin_api)
    mail_worker.drain()

    [welcome] = _received(app, smtp, "welcome")
    [export] = _received(app, smtp, "privacy_export")
    [campaign] = _received(app, smtp, "campaign")
    [notice] = _received(app, smtp, "policy_notice")
    for message in smtp.messages:
        assert not [url for url in _links(message) if MARK in url.lower()], message["Subject"]
        for part in message.walk():
            if part.get_content_type() == "text/html":
                assert "<a href=" + '"https://evil' not in part.get_content()
    # The person's own links and the staff's still work as links.
    assert any("/unsubscribe/" in url for url in _links(welcome))
    assert STAFF_URL.replace("&", "&amp;") in _links(campaign) or STAFF_URL in _links(campaign)
    assert POLICY_URL in _links(notice)
    assert "your-data.json" in {part.get_filename() for part in export.iter_attachments()}
    assert text_of(welcome)  # the welcome still greets, with or without the name
