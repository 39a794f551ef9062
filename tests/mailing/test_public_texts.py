"""The public pages speak the contact's language from the catalogs, and read well:

- every public page, in English and in Swedish, shows its catalog's text;
- a third catalog is enough for a third language (no code names a language);
- checkboxes and radio buttons sit inside their labels (beside the text);
- the unsubscribe page says what is already off and offers only what changes something;
- topics read naturally inside sentences; the brand and the skip link follow the page.
"""

from __future__ import annotations

import html
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consent.topics import Topic, names_in_text
from extensions import db
from kernel import i18n
from tests.mailing.helpers import SITE_ORIGIN, consented_contacts, signup

LANGS = ("en", "sv")


def said(lang: str, msgid: str, **values: Any) -> str:
    """``msgid`` as ``lang``'s catalog says it (English: the msgid itself)."""
    text = i18n.text_in(lang, msgid)
    return text % values if values else text


def text_of(response: Any) -> str:
    """The page's text, entities decoded and white space collapsed."""
    return " ".join(html.unescape(response.get_data(as_text=True)).split())


def shows(page: str, lang: str, *msgids: str) -> None:
    for msgid in msgids:
        expected = said(lang, msgid)
        assert expected in page, f"{lang}: {expected!r} missing"
        if lang != i18n.SOURCE_LANGUAGE:
            assert expected != msgid, f"{lang} has no entry for {msgid!r}"


def _contact(app: Any, lang: str, address: str | None = None) -> int:
    return consented_contacts(app, [(address or f"{lang}@example.se", "Sam", lang)])[0]


def _token(app: Any, purpose: str, payload: dict[str, Any]) -> str:
    from consent.tokens import Purpose, make_token

    with app.app_context():
        return make_token(Purpose[purpose], payload)


def _confirm_token(app: Any, client: Any, lang: str) -> str:
    from consent.models import SubscriptionRequest

    signup(client, f"new-{lang}@example.de", topics="newsletter", language=lang, country="DE")
    with app.app_context():
        request_id = db.session.scalar(sa.select(sa.func.max(SubscriptionRequest.id)))
        db.session.remove()
    return _token(app, "CONFIRM", {"r": request_id})


def _privacy_token(app: Any, lang: str) -> str:
    """The verification link of an access request (what the job behind the form does)."""
    from consent.models import PrivacyRequest
    from kernel.addresses import keyed_hash
    from mailing.privacy_requests import open_privacy_request

    _contact(app, lang, "private@example.se")
    with app.app_context():
        open_privacy_request(keyed_hash("private@example.se"), "access")
        request_id = db.session.scalar(sa.select(sa.func.max(PrivacyRequest.id)))
        db.session.remove()
    return _token(app, "VERIFY_ADDRESS", {"p": request_id})


# Every public page, in both languages ------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_the_signup_pages_show_the_catalogs_text(app, client, lang: str) -> None:
    form = text_of(client.get(f"/subscribe?topics=newsletter&lang={lang}"))
    shows(form, lang, "Subscribe", "Email address", "Name (optional)", "Company (optional)")
    shows(form, lang, "Fill in your email address. We send you an email with a link to confirm.")
    shows(form, lang, "Country (two letters, optional)", "Leave this field empty")
    inbox = text_of(signup(client, f"s-{lang}@example.de", language=lang, country="DE"))
    shows(inbox, lang, "Check your inbox")
    shows(
        inbox,
        lang,
        "Thank you. If the address needs to be confirmed, we have sent an email to it. "
        "Open it and follow the link to confirm. Nothing is sent until you do.",
    )


@pytest.mark.parametrize("lang", LANGS)
def test_the_confirmation_pages_show_the_catalogs_text(app, client, lang: str) -> None:
    token = _confirm_token(app, client, lang)
    asked = text_of(client.get(f"/confirm/{token}"))
    shows(asked, lang, "Confirm your subscription", "Confirm")
    shows(asked, lang, "Press the button to confirm that you want to receive:")
    done = text_of(client.post(f"/confirm/{token}", headers={"Origin": SITE_ORIGIN}))
    shows(done, lang, "Subscription confirmed", "Thank you. You are now subscribed to:")
    again = text_of(client.get(f"/confirm/{token}"))
    shows(again, lang, "Already confirmed")
    shows(again, lang, "This subscription is already confirmed. You need to do nothing more.")
    renewed = text_of(client.post(f"/confirm/{token}/renew", headers={"Origin": SITE_ORIGIN}))
    shows(renewed, lang, "A new link is on its way")


@pytest.mark.parametrize("lang", LANGS)
def test_a_broken_link_speaks_the_browsers_language(app, client, lang: str) -> None:
    page = text_of(client.get("/confirm/broken", headers={"Accept-Language": lang}))
    shows(page, lang, "This link does not work", "Unsubscribe")
    shows(
        page,
        lang,
        "The link is incomplete, has been changed, or is no longer valid. Nothing was changed. "
        "Copy the whole link from the email, or ask for a new email.",
    )


@pytest.mark.parametrize("lang", LANGS)
def test_the_unsubscribe_pages_show_the_catalogs_text(app, client, lang: str) -> None:
    contact_id = _contact(app, lang)
    path = "/unsubscribe/" + _token(app, "UNSUBSCRIBE", {"c": contact_id, "t": "newsletter"})
    page = text_of(client.get(path))
    shows(page, lang, "Unsubscribe", "Stop all marketing email to me")
    shows(page, lang, "Choose what you want to stop receiving. It takes effect at once.")
    shows(page, lang, "I object to all direct marketing: never use my data for marketing again")
    assert said(lang, "Unsubscribe") in page  # the heading; the button has its own entry
    done = text_of(client.post(path, data={"scope": "all"}, headers={"Origin": SITE_ORIGIN}))
    shows(done, lang, "You are unsubscribed")
    shows(done, lang, "You will no longer receive marketing email from us.")
    typed = text_of(client.get(f"/unsubscribe?lang={lang}"))
    shows(typed, lang, "Send me the link")
    shows(
        typed,
        lang,
        "Type your email address. We send a link to it, so that only the owner of the "
        "address can unsubscribe.",
    )


def test_the_unsubscribe_button_has_its_own_swedish(app, client) -> None:
    contact_id = _contact(app, "sv")
    path = "/unsubscribe/" + _token(app, "UNSUBSCRIBE", {"c": contact_id, "t": "newsletter"})
    page = client.get(path).get_data(as_text=True)
    assert "<h1>Avsluta prenumeration</h1>" in page
    assert '<button type="submit">Avsluta</button>' in page


@pytest.mark.parametrize("lang", LANGS)
def test_the_preference_pages_show_the_catalogs_text(app, client, lang: str) -> None:
    contact_id = _contact(app, lang)
    path = "/preferences/" + _token(app, "PREFERENCES", {"c": contact_id})
    page = text_of(client.get(path))
    shows(page, lang, "Your email preferences", "Save my choices", "Unsubscribe from all marketing")
    shows(page, lang, "Choose the topics you want to receive by email.")
    shows(page, lang, "Object to all direct marketing")
    saved = text_of(client.post(path, data={"action": "save"}, headers={"Origin": SITE_ORIGIN}))
    shows(saved, lang, "Your choices are saved", "Manage all your email preferences")
    newsletter = said(lang, "topic.newsletter")
    assert said(lang, "Turned off: %(topics)s.", topics=newsletter) in saved


@pytest.mark.parametrize("lang", LANGS)
def test_the_privacy_pages_show_the_catalogs_text(app, client, lang: str) -> None:
    form = text_of(client.get(f"/privacy/requests?lang={lang}"))
    shows(form, lang, "Your personal data", "What do you want?", "A copy of my data")
    shows(form, lang, "Erase my data", "Send the link")
    token = _privacy_token(app, lang)
    verify = text_of(client.get(f"/privacy/verify/{token}"))
    shows(verify, lang, "Confirm your request", "Confirm")
    shows(verify, lang, "Press the button and we email you a copy of everything we hold about you.")


@pytest.mark.parametrize("lang", LANGS)
def test_the_undo_page_shows_the_catalogs_text(app, client, lang: str) -> None:
    contact_id = _contact(app, lang)
    page = text_of(client.get("/undo/" + _token(app, "UNDO_SIGNUP", {"c": contact_id, "e": [0]})))
    shows(page, lang, "Undo your subscription", "Manage all your email preferences")


@pytest.mark.parametrize("lang", LANGS)
def test_a_refused_post_is_answered_in_the_forms_language(app, client, lang: str) -> None:
    refused = client.post(
        "/subscribe",
        data={"form_id": "hosted", "language": lang, "email": "a@example.se", "consent": "on"},
        headers={"Origin": "https://elsewhere.example"},
    )
    assert refused.status_code == 403
    page = text_of(refused)
    shows(page, lang, "This form cannot be sent from here")
    shows(page, lang, "You can sign up on our own signup page instead.")


@pytest.mark.parametrize("lang", LANGS)
def test_one_click_answers_in_the_contacts_language(app, client, lang: str) -> None:
    contact_id = _contact(app, lang)
    path = "/unsubscribe/" + _token(app, "UNSUBSCRIBE", {"c": contact_id, "t": "newsletter"})
    done = client.post(path + "/one-click", data={"List-Unsubscribe": "One-Click"})
    assert done.get_data(as_text=True) == said(lang, "You are unsubscribed.") + "\n"


# A third language is one catalog -------------------------------------------------------

_NORWEGIAN = {
    "Unsubscribe": "Meld deg av",
    "Stop sending me %(topic)s": "Slutt å sende meg %(topic)s",
    "Stop all marketing email to me": "Slutt å sende meg all markedsføring på e-post",
    "topic.newsletter": "nyhetsbrevet",
    "Skip to content": "Hopp til innholdet",
    "Consent service": "Samtykketjenesten",
    "Your unsubscribe link": "Lenken din for å melde deg av",
    "Hello,": "Hei,",
}


@pytest.fixture
def norwegian(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """A copy of the catalogs folder with a small Norwegian catalog beside them."""
    folder = tmp_path / "translations"
    shutil.copytree(i18n._catalog_folder(), folder)
    (folder / "nb" / "LC_MESSAGES").mkdir(parents=True)
    entries = "".join(f'msgid "{k}"\nmsgstr "{v}"\n\n' for k, v in _NORWEGIAN.items())
    header = (
        'msgid ""\nmsgstr ""\n"Language: nb\\n"\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
    )
    (folder / "nb" / "LC_MESSAGES" / "messages.po").write_text(header + entries, encoding="utf-8")
    monkeypatch.setattr(i18n, "_catalog_folder", lambda: folder)
    i18n._translations.cache_clear()
    i18n._offered_languages.cache_clear()
    monkeypatch.setattr(i18n, "LANGUAGES", i18n._offered_languages())
    yield
    monkeypatch.undo()
    i18n._translations.cache_clear()
    i18n._offered_languages.cache_clear()


def test_a_third_catalog_makes_a_public_page_speak_a_third_language(app, client, norwegian) -> None:
    assert "nb" in i18n.LANGUAGES
    contact_id = _contact(app, "nb")
    path = "/unsubscribe/" + _token(app, "UNSUBSCRIBE", {"c": contact_id, "t": "newsletter"})
    page = client.get(path).get_data(as_text=True)
    assert '<html lang="nb">' in page
    assert "<h1>Meld deg av</h1>" in page
    assert "Slutt å sende meg nyhetsbrevet" in page
    assert "Hopp til innholdet" in page
    # What the catalog does not hold yet reads in English, never in Swedish.
    assert "Choose what you want to stop receiving." in page


def test_a_third_catalog_makes_a_mail_speak_a_third_language(app, norwegian) -> None:
    from flask import render_template

    with app.test_request_context(), i18n.language("nb"):
        text = render_template(
            "email/unsubscribe_link.txt", unsubscribe_url="u", preferences_url="p"
        )
    assert text.startswith("Subject: Lenken din for å melde deg av\nHei,\n")


# Checkboxes and radio buttons beside their labels ------------------------------------------


class _Controls(HTMLParser):
    """Each checkbox and radio button with the text of the label around it
    (None when it stands outside any label)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str | None]] = []
        self._labels: list[list[str]] = []
        self._open: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        kind = dict(attrs).get("type")
        if tag == "label":
            self._labels.append([])
        elif tag == "input" and kind in ("checkbox", "radio"):
            self.found.append((str(dict(attrs).get("id") or kind), None))
            if self._labels:
                self._open.append(len(self.found) - 1)

    def handle_data(self, data: str) -> None:
        if self._labels:
            self._labels[-1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self._labels:
            text = " ".join("".join(self._labels.pop()).split())
            for index in self._open:
                self.found[index] = (self.found[index][0], text)
            self._open = []


def controls(response: Any) -> list[tuple[str, str | None]]:
    parser = _Controls()
    parser.feed(response.get_data(as_text=True))
    return parser.found


def test_every_checkbox_and_radio_button_on_the_public_forms_sits_in_its_label(app, client) -> None:
    contact_id = _contact(app, "en")
    pages = {
        "subscribe": client.get("/subscribe?topics=newsletter&lang=en"),
        "unsubscribe": client.get(
            "/unsubscribe/" + _token(app, "UNSUBSCRIBE", {"c": contact_id, "t": "newsletter"})
        ),
        "preferences": client.get("/preferences/" + _token(app, "PREFERENCES", {"c": contact_id})),
        "privacy": client.get("/privacy/requests?lang=en"),
    }
    for name, response in pages.items():
        found = controls(response)
        assert found, name
        for control, label in found:
            assert label, f"{name}: {control} stands outside a label"
        page = response.get_data(as_text=True)
        assert all('class="choice"' in m for m in re.findall(r"<label[^>]*>\s*<input", page))
    assert dict(controls(pages["unsubscribe"]))["scope-topic"] == "Stop sending me the newsletter"


# The unsubscribe page knows what is already off ------------------------------------------


def _unsubscribe_path(app: Any, lang: str = "en") -> str:
    contact_id = _contact(app, lang)
    return "/unsubscribe/" + _token(app, "UNSUBSCRIBE", {"c": contact_id, "t": "newsletter"})


def _offered(response: Any) -> list[str]:
    return re.findall(r'name="scope" value="(\w+)"', response.get_data(as_text=True))


def _already(response: Any) -> list[str]:
    return re.findall(r'data-already="(\w+)"', response.get_data(as_text=True))


def test_nothing_off_yet_offers_every_choice_and_says_nothing_is_off(app, client) -> None:
    page = client.get(_unsubscribe_path(app))
    assert _offered(page) == ["topic", "all", "object"]
    assert _already(page) == []


def test_a_topic_already_off_is_said_and_not_offered_again(app, client) -> None:
    path = _unsubscribe_path(app)
    client.post(path, data={"scope": "topic"}, headers={"Origin": SITE_ORIGIN})
    page = client.get(path)
    assert _already(page) == ["topic"]
    assert "You have already unsubscribed from the newsletter." in text_of(page)
    assert _offered(page) == ["all", "object"]
    assert 'value="all" checked' in page.get_data(as_text=True)


def test_everything_already_off_leaves_only_the_objection(app, client) -> None:
    path = _unsubscribe_path(app, "sv")
    client.post(path, data={"scope": "all"}, headers={"Origin": SITE_ORIGIN})
    page = client.get(path)
    assert _already(page) == ["all"]
    assert "Du har redan avslutat all marknadsföring via e-post." in text_of(page)
    assert _offered(page) == ["object"]
    assert 'value="object" checked' in page.get_data(as_text=True)


def test_an_objection_already_made_leaves_nothing_to_press(app, client) -> None:
    path = _unsubscribe_path(app)
    client.post(path, data={"scope": "object"}, headers={"Origin": SITE_ORIGIN})
    page = client.get(path)
    assert _already(page) == ["objected"]
    assert _offered(page) == []
    assert "<button" not in page.get_data(as_text=True)
    assert "Manage all your email preferences" in text_of(page)


# Topic names in running text; the brand and the skip link ----------------------------------


def test_a_topic_reads_in_running_text_as_the_catalog_gives_it(app_ctx) -> None:
    newsletter = Topic("newsletter", {"en": "Newsletter", "sv": "Nyhetsbrev"}, frozenset())
    assert newsletter.in_text("en") == "the newsletter"
    assert newsletter.in_text("sv") == "nyhetsbrevet"


def test_a_topic_the_catalog_does_not_name_reads_as_its_label_in_lower_case(app_ctx) -> None:
    assert Topic("partner", {"en": "Partner offers"}, frozenset()).in_text("en") == "partner offers"
    assert Topic("eu", {"en": "EU news"}, frozenset()).in_text("en") == "EU news"


def test_several_topics_are_joined_as_the_language_joins_a_list(app_ctx) -> None:
    topics = [
        Topic("newsletter", {"en": "Newsletter", "sv": "Nyhetsbrev"}, frozenset()),
        Topic("surveys", {"en": "Customer surveys", "sv": "Kundundersökningar"}, frozenset()),
        Topic("partner", {"en": "Partner offers", "sv": "Partnererbjudanden"}, frozenset()),
    ]
    assert names_in_text(topics, "en") == "the newsletter, customer surveys and partner offers"
    assert names_in_text(topics, "sv") == "nyhetsbrevet, kundundersökningar och partnererbjudanden"


@pytest.mark.parametrize("lang", LANGS)
def test_the_brand_and_the_skip_link_speak_the_pages_language(
    app, client, monkeypatch: pytest.MonkeyPatch, lang: str
) -> None:
    monkeypatch.setitem(app.config, "BRAND_NAME", "")
    page = client.get(f"/unsubscribe?lang={lang}").get_data(as_text=True)
    assert f'<a class="skip" href="#main">{said(lang, "Skip to content")}</a>' in page
    assert f'<span class="brand">{said(lang, "Consent service")}</span>' in page
    monkeypatch.setitem(app.config, "BRAND_NAME", "Acme AB")
    page = client.get(f"/unsubscribe?lang={lang}").get_data(as_text=True)
    assert '<span class="brand">Acme AB</span>' in page
