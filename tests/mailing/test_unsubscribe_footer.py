"""Every campaign email carries the unsubscribe footer, in the contact's language (R6).

The footer is the person's way out of marketing: why they receive the email,
a signed link that unsubscribes them, and the preference centre. Each
language's campaign template includes its own footer, so each language is
pinned here, through the whole path: the campaign API, the worker, SMTP and
the link followed back to the service.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.mailing.conftest import text_of
from tests.mailing.helpers import consented_contacts, decision

CAMPAIGN = {
    "topic": "newsletter",
    "subject_sv": "Nyheter i mars",
    "body_sv": "Hej! Här är månadens nyheter.",
    "subject_en": "News in March",
    "body_en": "Hello! Here is this month's news.",
}

# templates/email/footer.<lang>.txt, rendered for the newsletter.
FOOTERS = {
    "sv": {
        "why": "Du får det här meddelandet eftersom du prenumererar på nyhetsbrev.",
        "unsubscribe": "Avsluta prenumerationen: ",
        "preferences": "Hantera dina e-postinställningar: ",
    },
    "en": {
        "why": "You receive this email because you subscribed to newsletter.",
        "unsubscribe": "Unsubscribe: ",
        "preferences": "Manage your email preferences: ",
    },
}
LANGUAGES = [pytest.param("sv", id="swedish"), pytest.param("en", id="english")]
UNSUBSCRIBE_URL = re.compile(r"http://localhost/unsubscribe/[^\s<>\"/]+")


def _campaign_email(
    app: Any, api_as: Any, mail_worker: Any, smtp: Any, language: str
) -> tuple[int, Any]:
    """(contact id, message) of a newsletter campaign sent to one subscriber
    who reads ``language``."""
    address = f"sara.{language}@example.se"
    (contact_id,) = consented_contacts(app, [(address, "Sara", language)])
    marketing = api_as("marketing")
    created = marketing.post("/api/v1/campaigns", json=CAMPAIGN)
    assert created.status_code == 201, created.json
    sent = marketing.post(f"/api/v1/campaigns/{created.json['id']}/send")
    assert sent.status_code == 202, sent.json
    mail_worker.drain()
    (message,) = smtp.to(address)
    return contact_id, message


def _footer_unsubscribe_url(text: str, language: str) -> str:
    """The URL on the footer's unsubscribe line."""
    label = FOOTERS[language]["unsubscribe"]
    lines = [line for line in text.splitlines() if line.startswith(label)]
    assert len(lines) == 1, f"no single {label!r} line in:\n{text}"
    found = UNSUBSCRIBE_URL.fullmatch(lines[0].removeprefix(label))
    assert found is not None, lines[0]
    return found.group(0)


@pytest.mark.parametrize("language", LANGUAGES)
def test_campaign_email_text_ends_with_the_footer_in_the_contacts_language(
    app, api_as, mail_worker, smtp, language: str
) -> None:
    """The plain-text part closes with the footer of the contact's language:
    why they receive it, the unsubscribe link, the preference centre."""
    _, message = _campaign_email(app, api_as, mail_worker, smtp, language)
    lines = text_of(message).strip().splitlines()
    footer = FOOTERS[language]
    assert lines[-4:-2] == ["--", footer["why"]]
    assert UNSUBSCRIBE_URL.fullmatch(lines[-2].removeprefix(footer["unsubscribe"]))
    assert lines[-1].startswith(footer["preferences"] + "http://localhost/preferences/")


@pytest.mark.parametrize("language", LANGUAGES)
def test_campaign_email_html_part_links_the_footers_unsubscribe_url(
    app, api_as, mail_worker, smtp, language: str
) -> None:
    """A reader of the HTML part gets the same footer, with the unsubscribe URL
    as a link."""
    _, message = _campaign_email(app, api_as, mail_worker, smtp, language)
    url = _footer_unsubscribe_url(text_of(message), language)
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert FOOTERS[language]["why"] in html
    assert f'{FOOTERS[language]["unsubscribe"]}<a href="{url}">{url}</a>' in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_footers_unsubscribe_link_unsubscribes_the_contact_from_the_campaign_topic(
    app, client, admin_api, api_as, mail_worker, smtp, language: str
) -> None:
    """The footer's link is signed and live: it opens the unsubscribe page in the
    contact's language, and confirming there ends the newsletter for them."""
    contact_id, message = _campaign_email(app, api_as, mail_worker, smtp, language)
    path = _footer_unsubscribe_url(text_of(message), language).removeprefix("http://localhost")
    page = client.get(path)
    assert page.status_code == 200
    assert f'<html lang="{language}">' in page.get_data(as_text=True)
    assert decision(admin_api, contact_id, "newsletter")["allowed"] is True
    assert client.post(path, data={"scope": "topic"}).status_code == 200
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "unsubscribed"
