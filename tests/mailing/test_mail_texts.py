"""The mails read exactly as before in every language, now that each is one
template whose words come from the catalogs: every case of ``mail_samples``
rendered inside ``i18n.language(lang)`` equals, character for character, the
text the per-language templates gave for the same input (``mails_before/``)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import render_template

from kernel import i18n
from tests.mailing.mail_samples import STAFF_CASES, before_path, mail_cases

CASES = mail_cases()


@pytest.mark.parametrize(
    ("lang", "name", "template", "context"),
    CASES,
    ids=[f"{name}.{lang}" for lang, name, _, _ in CASES],
)
def test_each_mail_reads_as_it_did_before_in_each_language(
    app_ctx: Any, lang: str, name: str, template: str, context: dict[str, Any]
) -> None:
    with app_ctx.test_request_context(), i18n.language(lang):
        text = render_template(f"email/{template}.txt", **context)
    assert text == before_path(lang, name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(STAFF_CASES))
def test_the_staff_reset_mail_reads_as_it_did_before(app_ctx: Any, name: str) -> None:
    with app_ctx.test_request_context(), i18n.language("en"):
        text = render_template("staff_email/password_reset.txt", **STAFF_CASES[name])
    assert text == before_path("en", name).read_text(encoding="utf-8")


def test_the_staff_reset_mail_has_its_swedish_in_the_catalog(app_ctx: Any) -> None:
    with app_ctx.test_request_context(), i18n.language("sv"):
        text = render_template(
            "staff_email/password_reset.txt", **STAFF_CASES["password_reset-named"]
        )
    assert text.startswith("Subject: Välj ett nytt lösenord för Acme AB\nHej Eva Admin,")
    assert "i 60 minuter" in text
