"""Refusals a person meets on the public pages, and the pages that hold a token.

A refusal (a form posted from elsewhere, a form we do not know, too many
attempts, a link that ran out) is a page written for a person, in the form's
or the contact's language, naming the brand (``BRAND_NAME``); a script that
posted JSON gets the JSON error. A page whose URL holds a signed token sends
no Referer and may not be framed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from consent.tokens import Purpose, make_token
from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import TEST_CONFIG, count_rows
from tests.mailing.helpers import contact_id_of, signup

BRAND = "Acme Nordic"
# The link purposes (consent.tokens.Purpose values).
CONFIRM, UNSUBSCRIBE, PREFERENCES = "confirm", "unsubscribe", "preferences"
UNDO, VERIFY = "undo-signup", "verify-address"
ENGLISH_BROWSER = {"Accept-Language": "en-GB,en;q=0.9"}


@pytest.fixture(autouse=True)
def _brand(app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "BRAND_NAME", BRAND)


def _swedish_links(app: Any, client: Any) -> dict[str, Callable[..., str]]:
    """A Swedish contact with a pending signup and a privacy request, and a maker
    of each kind of signed link for them (``issued_at`` to age it)."""
    from consent.models import SubscriptionRequest
    from consent.rights import open_privacy_request
    from crm.services import get_contact

    assert signup(client, "sara@example.se", language="sv").status_code == 200
    contact_id = contact_id_of(app, "sara@example.se")
    with app.app_context():
        request_id = db.session.query(SubscriptionRequest.id).scalar()
        privacy_id = open_privacy_request(get_contact(contact_id), "access", utcnow()).id
        db.session.commit()
        db.session.remove()
    # Keyed by the purpose's value: Purpose itself is looked up only when a link is made.
    payloads: dict[str, dict[str, Any]] = {
        CONFIRM: {"r": request_id},
        UNSUBSCRIBE: {"c": contact_id, "t": "newsletter"},
        PREFERENCES: {"c": contact_id},
        UNDO: {"c": contact_id, "e": [1]},
        VERIFY: {"p": privacy_id},
    }

    def maker(purpose: str) -> Callable[..., str]:
        def make(issued_at: Any = None) -> str:
            with app.app_context():
                return make_token(Purpose(purpose), payloads[purpose], issued_at=issued_at)

        return make

    return {purpose: maker(purpose) for purpose in payloads}


PATHS = {
    CONFIRM: "/confirm/{}",
    UNSUBSCRIBE: "/unsubscribe/{}",
    PREFERENCES: "/preferences/{}",
    UNDO: "/undo/{}",
    VERIFY: "/privacy/verify/{}",
}


@pytest.mark.parametrize(
    ("purpose", "status", "title"),
    [
        (CONFIRM, 410, "Länken har gått ut"),
        (UNSUBSCRIBE, 400, "Länken fungerar inte"),
        (PREFERENCES, 400, "Länken fungerar inte"),
        (UNDO, 400, "Länken fungerar inte"),
        (VERIFY, 400, "Länken fungerar inte"),
    ],
)
def test_an_expired_link_speaks_the_contacts_language(app, client, purpose, status, title) -> None:
    links = _swedish_links(app, client)
    expired = links[purpose](issued_at=utcnow() - timedelta(days=400))
    before = count_rows(app)
    for method in ("get", "post"):
        page = getattr(client, method)(PATHS[purpose].format(expired), headers=ENGLISH_BROWSER)
        assert page.status_code == status
        text = page.get_data(as_text=True)
        assert '<html lang="sv">' in text
        assert title in text
        assert BRAND in text
    assert count_rows(app) == before


def _site_form(language: str = "sv", **extra: Any) -> dict[str, Any]:
    return {
        "form_id": "website-footer",
        "language": language,
        "topics": "events",
        "email": "vera@example.se",
        "consent": "on",
        **extra,
    }


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize(
    ("case", "status", "code", "swedish"),
    [
        ("origin", 403, "origin_not_allowed", "Formuläret kan inte skickas härifrån"),
        ("unknown_form", 422, "unknown_form", "Formuläret används inte"),
        ("origin_behind_a_link", 403, "origin_not_allowed", "Formuläret kan inte skickas härifrån"),
    ],
)
def test_refusals_are_in_the_forms_or_the_contacts_language_and_name_the_brand(
    app, client, case, status, code, swedish, as_json
) -> None:
    if case == "origin_behind_a_link":
        path = PATHS[UNSUBSCRIBE].format(_swedish_links(app, client)[UNSUBSCRIBE]())
        body: dict[str, Any] = {"scope": "all"}
    else:
        path = "/subscribe"
        body = _site_form(form_id="spring" if case == "unknown_form" else "website-footer")
    before = count_rows(app)
    headers = {"Origin": "https://evil.example", **ENGLISH_BROWSER}
    if as_json:
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == status
        assert response.json["error"]["code"] == code
        message = response.json["error"]["message"]
        assert swedish in message and BRAND in message
    else:
        response = client.post(path, data=body, headers=headers)
        assert response.status_code == status
        page = response.get_data(as_text=True)
        assert '<html lang="sv">' in page
        assert swedish in page and BRAND in page
    assert count_rows(app) == before


@pytest.mark.parametrize("as_json", [False, True])
def test_too_many_attempts_are_told_in_the_forms_language(app, database_url, as_json) -> None:
    from app import create_app
    from extensions import limiter

    limited = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "RATELIMIT_ENABLED": True,
            "SIGNUP_LIMIT_PER_ADDRESS": "1 per hour",
            "BRAND_NAME": BRAND,
        }
    )
    try:
        client = limited.test_client()
        form = {"form_id": "hosted", "consent": "on", "topics": "newsletter", "language": "sv"}
        form["email"] = "busy@example.se"
        post = (lambda: client.post("/subscribe", json=form)) if as_json else (
            lambda: client.post("/subscribe", data=form, headers=ENGLISH_BROWSER)
        )  # fmt: skip
        assert post().status_code in (200, 202)
        refused = post()
    finally:
        limiter.enabled = False
        with limited.app_context():
            limiter.reset()
    assert refused.status_code == 429
    if as_json:
        assert refused.json["error"]["code"] == "rate_limited"
        assert "För många försök" in refused.json["error"]["message"]
    else:
        page = refused.get_data(as_text=True)
        assert '<html lang="sv">' in page
        assert "För många försök" in page and BRAND in page


@pytest.mark.parametrize(
    ("method", "purpose", "suffix", "data"),
    [
        ("get", CONFIRM, "", None),
        ("post", CONFIRM, "", None),
        ("post", CONFIRM, "/renew", None),
        ("get", UNSUBSCRIBE, "", None),
        ("post", UNSUBSCRIBE, "", {"scope": "topic"}),
        ("post", UNSUBSCRIBE, "/one-click", {"List-Unsubscribe": "One-Click"}),
        ("get", PREFERENCES, "", None),
        ("get", VERIFY, "", None),
        ("get", UNDO, "", None),
        ("post", UNDO, "", None),
        ("get", None, "", None),  # a tampered link: the refusal holds the token too
    ],
)
def test_pages_behind_a_token_send_no_referrer_and_refuse_framing(
    app, client, method, purpose, suffix, data
) -> None:
    links = _swedish_links(app, client)
    if purpose is None:
        path = "/unsubscribe/not-a-real-token.at-all"
    else:
        path = PATHS[purpose].format(links[purpose]()) + suffix
    response = getattr(client, method)(path, data=data)
    assert response.status_code < 500
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_the_brand_defaults_to_the_name_our_emails_come_from(app, database_url) -> None:
    from app import create_app

    named = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "MAIL_FROM": "Kund AB <nyheter@kund.example>",
        }
    )
    assert named.config["BRAND_NAME"] == "Kund AB"
    page = named.test_client().get("/subscribe?lang=sv").get_data(as_text=True)
    assert '<span class="brand">Kund AB</span>' in page
    assert "<title>Prenumerera · Kund AB</title>" in page


@pytest.mark.parametrize(
    ("fetch_site", "status"),
    [
        ("same-origin", 200),  # our own page: it sends no Referer, so the browser says "null"
        (None, 200),  # a browser without fetch metadata: the signed link decides
        ("cross-site", 403),  # a sandboxed frame elsewhere
    ],
)
def test_a_post_from_our_own_page_without_a_referrer_is_ours(
    app, client, fetch_site, status
) -> None:
    path = PATHS[UNSUBSCRIBE].format(_swedish_links(app, client)[UNSUBSCRIBE]())
    headers = {"Origin": "null"}
    if fetch_site:
        headers["Sec-Fetch-Site"] = fetch_site
    response = client.post(path, data={"scope": "topic"}, headers=headers)
    assert response.status_code == status


def test_origin_null_is_never_ours_on_a_page_without_a_token(app, client) -> None:
    # No token to prove anything: a "null" origin without fetch metadata is refused.
    before = count_rows(app)
    data = {"form_id": "hosted", "consent": "on", "topics": "newsletter", "email": "n@example.se"}
    assert client.post("/subscribe", data=data, headers={"Origin": "null"}).status_code == 403
    assert count_rows(app) == before
