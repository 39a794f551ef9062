"""Every contact mail with the inputs that change its words: the cases
``test_mail_texts.py`` renders in each language and compares, character for
character, with what the per-language templates made before the mails moved
into the catalogs (``mails_before/``, written by ``record_mails_before``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailing.why import Why

BEFORE = Path(__file__).parent / "mails_before"
LANGUAGES = ("en", "sv")

_LINKS = {
    "confirm_url": "https://example.test/confirm/TOKEN",
    "unsubscribe_url": "https://example.test/unsubscribe/TOKEN",
    "preferences_url": "https://example.test/preferences/TOKEN",
    "verify_url": "https://example.test/privacy/verify/TOKEN",
    "undo_url": "https://example.test/undo/TOKEN",
    "object_url": "https://example.test/unsubscribe/OBJECT",
}
_BASE: dict[str, Any] = {**_LINKS, "brand": "Acme AB", "name": None, "params": {}}
_TOPICS = {"en": ["Newsletter", "Customer surveys"], "sv": ["Nyhetsbrev", "Kundundersökningar"]}
_LABEL = {"en": "Product updates and advice", "sv": "Produktnyheter och råd"}
_WHYS: dict[str, Why | None] = {
    "no-why": None,
    "consent": Why("consent", "2026-03-01"),
    "consent-undated": Why("consent"),
    "customer": Why("customer", "Kund & Co <AB>"),
    "customer-unnamed": Why("customer"),
    "list": Why("industry_list", "Branschlistan 2026"),
    "list-unnamed": Why("industry_list"),
}


def _cases(lang: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Name -> (template, context) for one language."""
    topics, label = _TOPICS[lang], _LABEL[lang]
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "confirm": ("confirm", {"topics": topics}),
        "confirm-one": ("confirm", {"topics": topics[:1]}),
        "unsubscribe_link": ("unsubscribe_link", {}),
        "privacy_verify-copy": ("privacy_verify", {"is_erasure": False}),
        "privacy_verify-erasure": ("privacy_verify", {"is_erasure": True}),
        "privacy_export-named": ("privacy_export", {"name": "Åsa Öberg"}),
        "privacy_export-unnamed": ("privacy_export", {}),
        "subscribed-named": ("subscribed", {"topics": topics, "name": "Bo"}),
        "subscribed-unnamed": ("subscribed", {"topics": topics[:1]}),
        "policy_notice-url": (
            "policy_notice",
            {"params": {"version": "2.0", "url": "https://example.test/policy"}},
        ),
        "policy_notice-no-url": ("policy_notice", {"params": {"version": "2.1"}}),
        "repermission-url": (
            "repermission",
            {
                "topics": topics,
                "params": {
                    "version": "3.0",
                    "url": "https://example.test/policy",
                    "wording": "Yes, send me news",
                },
            },
        ),
        "repermission-no-url": (
            "repermission",
            {"topics": topics[:1], "params": {"version": "3.1", "wording": "Ja tack"}},
        ),
        "source_notice-customer": (
            "source_notice",
            {
                "params": {
                    "kind": "customer",
                    "company": "Kund AB",
                    "source": "crm-sync",
                    "policy_url": "https://example.test/policy",
                }
            },
        ),
        "source_notice-customer-bare": ("source_notice", {"params": {"kind": "customer"}}),
        "source_notice-list": (
            "source_notice",
            {"params": {"kind": "industry_list", "source": "Branschlistan", "company": "Bolaget"}},
        ),
    }
    for why_name, why in _WHYS.items():
        marketing = {"topic_label": label, "why": why, "art14_notice": False, "policy_url": None}
        cases[f"welcome-{why_name}"] = (
            "welcome",
            {**marketing, "topics": topics, "name": "Bo", "topic_label": ", ".join(topics)},
        )
        cases[f"bulletin-{why_name}"] = (
            "bulletin",
            {**marketing, "params": {"subject": "Nytt i mars", "body": "Hej!\n\nText."}},
        )
        for notice, policy_url in (
            ("", None),
            ("-notice", None),
            ("-notice-url", "https://p.test"),
        ):
            cases[f"campaign-{why_name}{notice}"] = (
                "campaign",
                {
                    **marketing,
                    "subject": "Spring news",
                    "body": "Hello,\n\nA campaign text.",
                    "art14_notice": bool(notice),
                    "policy_url": policy_url,
                },
            )
    return cases


def mail_cases() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(language, case name, template, context) for every case in every language."""
    return [
        (lang, name, template, {**_BASE, "lang": lang, **context})
        for lang in LANGUAGES
        for name, (template, context) in _cases(lang).items()
    ]


# The staff mail exists in English only (staff users have no stored language).
STAFF_CASES: dict[str, dict[str, Any]] = {
    "password_reset-named": {
        "brand": "Acme AB",
        "name": "Eva Admin",
        "email": "eva@example.test",
        "reset_url": "https://example.test/staff/password-reset/TOKEN",
        "minutes": 60,
    },
    "password_reset-unnamed": {
        "brand": "the consent service",
        "name": None,
        "email": "ops@example.test",
        "reset_url": "https://example.test/staff/password-reset/TOKEN",
        "minutes": 30,
    },
}


def before_path(lang: str, name: str) -> Path:
    return BEFORE / f"{name}.{lang}.txt"


def record_mails_before() -> None:  # pragma: no cover - ran once, before the move
    """Render every case with the per-language templates (``email/<t>.<lang>.txt``)
    of the time and keep the text: what the mails must still read."""
    from flask import render_template

    from app import create_app
    from tests.conftest import TEST_CONFIG

    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    BEFORE.mkdir(exist_ok=True)
    with app.test_request_context():
        for lang, name, template, context in mail_cases():
            text = render_template(f"email/{template}.{lang}.txt", **context)
            before_path(lang, name).write_text(text, encoding="utf-8")
        for name, context in STAFF_CASES.items():
            text = render_template("staff_email/password_reset.txt", **context)
            before_path("en", name).write_text(text, encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    record_mails_before()
