"""Signup forms are registered objects: the evidence proves what the person saw.

Each form is defined once in the policy file (``[forms.<id>]``). The server
computes the wording's hash and the policy version from that registration;
a post naming an unknown form, or a form from a site not allowed for it, is
refused and changes nothing.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_CONFIG, count_rows
from tests.mailing.helpers import contact_id_of, events, outbox

SITE = "https://www.example.se"
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "consent" / "default_policy.toml"
PARTNER_FORM = """
[forms.partner-webinar]
origins = ["https://partner.example"]
topics = ["events"]
languages = ["sv", "en"]
policy_version = "1.0"

[forms.partner-webinar.wording]
sv = "Ja, bjud in mig till era webbinarier via e-post (integritetspolicy {version})."
en = "Yes, invite me to your webinars by email (privacy policy {version})."
"""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def partner_app(app: Any, database_url: str, tmp_path: Path) -> Iterator[Any]:
    """An app on the suite's database whose policy file registers one more form,
    with an origin of its own; SIGNUP_ALLOWED_ORIGINS lists another site."""
    from app import create_app

    policy = tmp_path / "policy.toml"
    policy.write_text(DEFAULT_POLICY.read_text(encoding="utf-8") + PARTNER_FORM, encoding="utf-8")
    partner = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "POLICY_FILE": str(policy),
            "SIGNUP_ALLOWED_ORIGINS": ["https://other-partner.example"],
        }
    )
    yield partner


def test_a_copy_of_the_hosted_form_on_another_site_is_refused(app, client, monkeypatch) -> None:
    # www.example.se may post its own registered form; the hosted form's
    # fields copied onto its page still name our page's wording: refused.
    monkeypatch.setitem(app.config, "SIGNUP_ALLOWED_ORIGINS", [SITE])
    before = count_rows(app)
    response = client.post(
        "/subscribe",
        data={
            "form_id": "hosted",
            "consent": "on",
            "language": "en",
            "topics": "newsletter",
            "email": "copied@example.se",
        },
        headers={"Origin": SITE, "Referer": SITE + "/"},
    )
    assert response.status_code == 403
    assert count_rows(app) == before


def test_what_a_post_says_about_its_wording_and_version_is_not_evidence(
    app, client, admin_api, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SIGNUP_ALLOWED_ORIGINS", [SITE])
    response = client.post(
        "/subscribe",
        json={
            "form_id": "website-footer",
            "language": "sv",
            "topics": ["newsletter"],
            "email": "claims@example.se",
            "consent": True,
            "wording": "A sentence the page never showed.",
            "wording_hash": "f" * 64,
            "policy_version": "0.1",
        },
        headers={"Origin": SITE},
    )
    assert response.status_code == 202
    [requested] = [
        e
        for e in events(admin_api, contact_id_of(app, "claims@example.se"))
        if e["kind"] == "requested"
    ]
    registered = "Ja, skicka nyhetsbrev till mig via e-post. Jag kan avsluta när som helst."
    assert requested["wording_hash"] == _sha256(registered)
    assert requested["policy_version"] == "1.0"
    assert (requested["form_id"], requested["language"]) == ("website-footer", "sv")


@pytest.mark.parametrize("as_json", [False, True])
def test_an_unknown_form_is_refused_in_its_language_and_changes_nothing(
    app, client, as_json
) -> None:
    before = count_rows(app)
    body = {
        "form_id": "spring-campaign",
        "language": "sv",
        "topics": "events",
        "email": "unknown-form@example.se",
        "consent": "on",
        "wording": "Yes, send me events.",
    }
    if as_json:
        response = client.post("/subscribe", json=body, headers={"Origin": "http://localhost"})
        assert response.status_code == 422
        assert response.json["error"]["code"] == "unknown_form"
        assert "Formuläret används inte" in response.json["error"]["message"]
    else:
        response = client.post("/subscribe", data=body, headers={"Origin": "http://localhost"})
        assert response.status_code == 422
        page = response.get_data(as_text=True)
        assert '<html lang="sv">' in page
        assert "Formuläret används inte" in page
    assert count_rows(app) == before
    assert outbox(app) == []


def test_a_registered_form_is_refused_from_a_site_not_registered_for_it(
    app, partner_app, admin_api
) -> None:
    client = partner_app.test_client()
    post = {
        "form_id": "partner-webinar",
        "language": "sv",
        "topics": "events",
        "consent": "on",
        "page_url": "https://partner.example/webinars?utm=x",
        "wording": "Sent by old snippets; never read.",
    }
    before = count_rows(app)
    # Another site allowed to post other forms (SIGNUP_ALLOWED_ORIGINS) may not post this one.
    refused = client.post(
        "/subscribe",
        data={**post, "email": "stolen@example.se"},
        headers={"Origin": "https://other-partner.example"},
    )
    assert refused.status_code == 403
    assert "Formuläret kan inte skickas härifrån" in refused.get_data(as_text=True)
    assert count_rows(app) == before

    accepted = client.post(
        "/subscribe",
        data={**post, "email": "guest@example.se"},
        headers={"Origin": "https://partner.example"},
    )
    assert accepted.status_code == 200
    [requested] = [
        e
        for e in events(admin_api, contact_id_of(app, "guest@example.se"))
        if e["kind"] == "requested"
    ]
    shown = "Ja, bjud in mig till era webbinarier via e-post (integritetspolicy 1.0)."
    assert requested["wording_hash"] == _sha256(shown)
    assert requested["form_id"] == "partner-webinar"
    assert requested["page_url"] == "https://partner.example/webinars?utm=x"


def test_the_page_a_form_names_must_lie_on_the_site_that_posted_it(
    app, client, admin_api, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SIGNUP_ALLOWED_ORIGINS", [SITE])
    client.post(
        "/subscribe",
        data={
            "form_id": "website-footer",
            "topics": "newsletter",
            "email": "page@example.se",
            "page_url": "https://elsewhere.example/trusted-looking-page",
            "wording": "Sent by old snippets; never read.",
        },
        headers={"Origin": SITE, "Referer": SITE + "/"},
    )
    [requested] = [
        e
        for e in events(admin_api, contact_id_of(app, "page@example.se"))
        if e["kind"] == "requested"
    ]
    assert requested["page_url"] == SITE + "/"


def test_the_hosted_form_records_the_version_its_sentence_names(app, client, admin_api) -> None:
    published = admin_api.post(
        "/api/v1/policies", json={"version": "2.0", "url": "https://www.example.se/privacy"}
    )
    assert published.status_code == 201
    page = client.get("/subscribe?topics=newsletter&lang=en").get_data(as_text=True)
    shown = html.unescape(
        re.search(r'<label class="choice" for="consent"><input [^>]*>(.*?)</label>', page, re.S)[1]
    )
    assert "(version 2.0)" in shown

    from tests.mailing.helpers import signup

    signup(client, "versioned@example.se")
    [requested] = [
        e
        for e in events(admin_api, contact_id_of(app, "versioned@example.se"))
        if e["kind"] == "requested"
    ]
    assert (requested["policy_version"], requested["wording_hash"]) == ("2.0", _sha256(shown))


def test_the_snippet_for_a_form_is_accepted_and_proves_its_sentence(
    app, client, admin_api, runner_for, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "SIGNUP_ALLOWED_ORIGINS", [SITE])
    result = runner_for(app).invoke(args=["forms", "snippet", "website-footer", "--lang", "en"])
    assert result.exit_code == 0, result.output
    snippet = result.output
    assert 'action="http://localhost/subscribe"' in snippet
    assert "location.href" in snippet  # the script that fills in page_url
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', snippet))
    sentence = html.unescape(
        re.search(r'name="consent" value="on" required> (.*?)</label>', snippet)[1]
    )
    # As a browser on the partner's page posts it once the script ran.
    posted = client.post(
        "/subscribe",
        data={**fields, "page_url": SITE + "/news", "email": "pasted@example.se", "consent": "on"},
        headers={"Origin": SITE},
    )
    assert posted.status_code == 200
    recorded = [
        e
        for e in events(admin_api, contact_id_of(app, "pasted@example.se"))
        if e["kind"] == "requested"
    ]
    assert {e["wording_hash"] for e in recorded} == {_sha256(sentence)}
    assert {e["topic"] for e in recorded} == {"newsletter", "events"}
    assert {e["page_url"] for e in recorded} == {SITE + "/news"}


@pytest.mark.parametrize(
    ("form", "complaint"),
    [
        ('[forms.hosted]\norigins = ["https://x.example"]\n[forms.hosted.wording]\nen = "Yes."\n',
         "hosted form is posted from this service only"),
        ('[forms.f]\ntopics = ["no-such-topic"]\n[forms.f.wording]\nen = "Yes."\n',
         "not a topic that takes consent"),
        ('[forms.f]\ntopics = ["events"]\n[forms.f.wording]\nen = "Yes, {name}."\n',
         "only {topics} and {version}"),
        ('[forms.f]\ntopics = ["events"]\nlanguages = ["sv"]\n[forms.f.wording]\nen = "Yes."\n',
         "the exact text for each of"),
        ('[forms.f]\ntopics = ["events"]\norigins = ["www.example.se"]\n'
         '[forms.f.wording]\nen = "Yes."\n', "an origin is scheme://host"),
    ],
)  # fmt: skip
def test_a_mistaken_form_stops_the_service_at_start(
    app, database_url, tmp_path, form, complaint
) -> None:
    from app import create_app

    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    if form.startswith("[forms.hosted]"):
        # Replace the default hosted form rather than defining it twice.
        text = text[: text.index("[forms.hosted]")] + text[text.index("[forms.website-footer]") :]
    policy = tmp_path / "policy.toml"
    policy.write_text(text + "\n" + form, encoding="utf-8")
    with pytest.raises(RuntimeError, match=re.escape(complaint)):
        create_app(
            {**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, "POLICY_FILE": str(policy)}
        )
