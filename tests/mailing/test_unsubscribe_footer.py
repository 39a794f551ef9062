"""Every campaign email carries the unsubscribe footer, in the contact's language (R6).

The footer is the person's way out of marketing: why they receive the email,
a signed link that unsubscribes them, and the preference centre. Each
language's campaign template includes its own footer, so each language is
pinned here, through the whole path: the campaign API, the worker, SMTP and
the link followed back to the service.
"""

from __future__ import annotations

import re
import time
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
        "why": "Du får det här meddelandet eftersom du har samtyckt till att få nyhetsbrev "
        "från oss via e-post den {date}.",
        "unsubscribe": "Avsluta prenumerationen: ",
        "preferences": "Hantera dina e-postinställningar: ",
    },
    "en": {
        "why": "You receive this email because you agreed to receive newsletter from us "
        "by email on {date}.",
        "unsubscribe": "Unsubscribe: ",
        "preferences": "Manage your email preferences: ",
    },
}
LANGUAGES = [pytest.param("sv", id="swedish"), pytest.param("en", id="english")]


def _today() -> str:
    """The day the helpers' consents are given: the footer names it."""
    from kernel.timestamps import utcnow

    return utcnow().date().isoformat()


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
    assert lines[-4:-2] == ["--", footer["why"].format(date=_today())]
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
    assert FOOTERS[language]["why"].format(date=_today()) in html
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


# Why each person gets the email: the decision behind the send --------------------------

EVENTS = {**CAMPAIGN, "topic": "events"}
WHY_CUSTOMER = {
    "sv": "Du får det här meddelandet eftersom du är kontaktperson hos Kund AB, en av våra "
    "kunder: vi skickar evenemang, seminarier och webbinarier till våra kunder med stöd av "
    "vårt berättigade intresse.",
    "en": "You receive this email because you are a contact person at Kund AB, a customer of "
    "ours: we send events, seminars and webinars to our customers on our legitimate interest.",
}
WHY_LIST = {
    "sv": "Du får det här meddelandet eftersom vi fick din jobbadress från branschlistan "
    '"Branschregistret 2026": vi skickar evenemang, seminarier och webbinarier till sådana '
    "adresser med stöd av vårt berättigade intresse.",
    "en": "You receive this email because we got your business address from the industry "
    'list "Branschregistret 2026": we send events, seminars and webinars to such addresses '
    "on our legitimate interest.",
}


def _events_campaign_to(api_as: Any, mail_worker: Any, smtp: Any, address: str) -> Any:
    marketing = api_as("marketing")
    created = marketing.post("/api/v1/campaigns", json=EVENTS)
    assert created.status_code == 201, created.json
    assert marketing.post(f"/api/v1/campaigns/{created.json['id']}/send").status_code == 202
    mail_worker.drain()
    return smtp.to(address)[-1]


def _why_line(message: Any) -> str:
    lines = text_of(message).strip().splitlines()
    return lines[lines.index("--") + 1]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_customer_contact_is_told_it_is_a_contact_person_at_the_customer(
    app, admin_api, api_as, mail_worker, smtp, language: str
) -> None:
    """Not "you subscribed": the customer relationship (R1) and its company."""
    customer = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}
    created = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": f"kund.{language}@kundab.se",
            "language": language,
            "country": "SE",
            "company": {"name": "Kund AB", "customer_since": "2020-01-01"},
            "basis": customer,
        },
    )
    assert created.status_code in (200, 201), created.json
    message = _events_campaign_to(api_as, mail_worker, smtp, f"kund.{language}@kundab.se")
    assert _why_line(message) == WHY_CUSTOMER[language]
    html = message.get_body(preferencelist=("html",)).get_content()
    assert WHY_CUSTOMER[language] in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_industry_list_contact_is_told_the_list_its_address_came_from(
    app, api_as, mail_worker, smtp, tmp_path, language: str
) -> None:
    """R3: the list, by the name the import gave its source."""
    path = tmp_path / "list.csv"
    path.write_text(
        f"email,name,company,organisation number,country,language\n"
        f"lista.{language}@bransch.se,Lisa,Bransch AB,,SE,{language}\n",
        encoding="utf-8",
    )
    imported = app.test_cli_runner().invoke(
        args=[
            "contacts", "import", str(path), "--basis", "industry_list",
            "--source", "Branschregistret 2026",
        ]
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    message = _events_campaign_to(api_as, mail_worker, smtp, f"lista.{language}@bransch.se")
    assert _why_line(message) == WHY_LIST[language]


def test_a_list_contact_whose_company_was_a_customer_is_told_the_list_not_the_company(
    app, admin_api, api_as, mail_worker, smtp, tmp_path
) -> None:
    """R3, R5: an address from an industry list whose company later became a
    customer and then stopped being one is mailed on the list again, and the
    decision and the footer name the list's import, not the customer's grant."""
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,company,organisation number,country,language\n"
        "lista.kund@bransch.se,Lisa,Bransch AB,,SE,en\n",
        encoding="utf-8",
    )
    imported = app.test_cli_runner().invoke(
        args=[
            "contacts", "import", str(path), "--basis", "industry_list",
            "--source", "Branschregistret 2026",
        ]
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    customer = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}
    company = {"name": "Bransch AB", "customer_since": "2020-01-01"}
    for body in (
        {"company": company, "basis": customer},
        {"company": {**company, "relationship_ended_at": "2024-01-01"}},
    ):
        response = admin_api.post(
            "/api/v1/contacts", json={"email": "lista.kund@bransch.se", **body}
        )
        assert response.status_code in (200, 201), response.json
    contact_id = response.json["id"]

    decisions = admin_api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]
    events_email = next(d for d in decisions if (d["topic"], d["channel"]) == ("events", "email"))
    assert events_email["reason"] == "industry_list"
    ledger = admin_api.get(f"/api/v1/contacts/{contact_id}/events").json
    named = next(e for e in ledger if e["id"] == events_email["event_id"])
    assert (named["kind"], named["interest_kind"]) == ("basis_granted", "industry_list")
    message = _events_campaign_to(api_as, mail_worker, smtp, "lista.kund@bransch.se")
    assert _why_line(message) == WHY_LIST["en"]


@pytest.mark.parametrize(
    "why",
    [
        ("consent", "2026-01-01"),
        ("customer", "Kund AB"),
        ("customer", None),
        ("industry_list", "Branschregistret 2026"),
        ("industry_list", "Bransch & <Co>"),  # escaped in HTML: built in full
        ("industry_list", "Åre företagsregister"),  # not ASCII: built in full
        ("industry_list", "https://lists.example.com/x"),  # a URL: built in full
    ],
)
def test_a_campaign_message_with_its_reason_from_the_blank_equals_the_one_built(
    app, why: tuple[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blank (one per campaign text, language and kind of reason) filled in
    with one person's reason is byte for byte what ``build_message`` makes."""
    import email as email_package
    import email.policy

    import sqlalchemy as sa
    from itsdangerous import TimestampSigner

    # The links' tokens carry the second they were signed in: the two builds
    # below must not fall on either side of a second's turn.
    signed_at = int(time.time())
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at)

    from crm.models import Contact
    from extensions import db
    from mailing import messages
    from mailing.models import OutboxMessage
    from mailing.why import Why
    from tests.mailing.test_delivery_batches import _queued_campaign

    consented_contacts(app, [("blank@example.se", "Berit", "sv")])
    [outbox_id] = _queued_campaign(app)
    with app.app_context():
        row = db.session.get(OutboxMessage, outbox_id)
        contact = db.session.scalar(sa.select(Contact))
        reason = Why(*why)
        prepared = messages.prepare_message(row, contact, reason)
        built = messages.build_message(row, contact, reason)
        detail = why[1] or ""
        fits_the_blank = detail.isascii() and "&" not in detail and "://" not in detail
        assert isinstance(prepared, messages.PreparedMessage) == fits_the_blank
        if isinstance(prepared, messages.PreparedMessage):
            policy = email_package.policy.default
            sent = email_package.message_from_bytes(prepared.data, policy=policy)
            built.set_boundary(sent.get_boundary())
            assert prepared.data == built.as_bytes(policy=messages.WIRE_POLICY)
        assert (why[1] or "") in built.get_body(preferencelist=("plain",)).get_content()
        db.session.remove()
