"""Every public page passes axe-core at WCAG 2.1 AA with no violation, in
English and in Swedish.

The pages are reached as a person reaches them: the form is filled and sent,
the links come from the emails the real mail actor writes, and the refusals
(a link that ran out, a tampered link, a form we do not know) are met the way
they happen. The European Accessibility Act applies to these pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consent.tokens import Purpose, make_token, read_token
from tests.a11y.conftest import Axe

pytestmark = pytest.mark.browser

LOCALES = {"en": "en-GB", "sv": "sv-SE"}


def post_form(page: Any, action: str, fields: dict[str, str]) -> None:
    """Send a form from the page shown, as a form on our own site would."""
    with page.expect_navigation():
        page.evaluate(
            """([action, fields]) => {
              const form = document.createElement("form");
              form.method = "post";
              form.action = action;
              for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement("input");
                input.type = "hidden"; input.name = name; input.value = value;
                form.append(input);
              }
              document.body.append(form);
              form.submit();
            }""",
            [action, fields],
        )


def submit(page: Any) -> None:
    """Press the main form's first button and wait for the next page."""
    with page.expect_navigation():
        page.locator("main form button").first.click()


@pytest.mark.parametrize("lang", sorted(LOCALES))
def test_every_public_page_passes_axe(
    app, browser, live_server, axe: Axe, mail_links: Callable[[str, str], str], lang: str
) -> None:
    page = axe.page(browser, LOCALES[lang])
    address = f"axe.{lang}@example.se"

    # The signup form and its answer.
    page.goto(f"{live_server}/subscribe?topics=newsletter&lang={lang}")
    axe.check(page, "signup")
    page.locator("#email").fill(address)
    page.locator("#consent").check()
    submit(page)
    axe.check(page, "check your inbox")

    # Confirm from the email; confirmed; the link again: already confirmed.
    confirm = mail_links(address, "/confirm/")
    page.goto(confirm)
    axe.check(page, "confirm")
    submit(page)
    axe.check(page, "confirmed")
    page.goto(confirm)
    axe.check(page, "already confirmed")

    # The welcome email's links: preferences (and saved), unsubscribe (and done).
    page.goto(mail_links(address, "/preferences/"))
    axe.check(page, "preferences")
    submit(page)
    axe.check(page, "preferences saved")
    page.goto(mail_links(address, "/unsubscribe/"))
    axe.check(page, "unsubscribe")
    submit(page)
    axe.check(page, "unsubscribed")

    # A form that subscribes at once: its email's undo link, and undone.
    told = f"undo.{lang}@example.se"
    page.goto(f"{live_server}/subscribe?topics=events&lang={lang}")
    page.locator("#email").fill(told)
    page.locator("#country").fill("SE")
    page.locator("#consent").check()
    submit(page)
    page.goto(mail_links(told, "/undo/"))
    axe.check(page, "undo")
    submit(page)
    axe.check(page, "undone")

    # Unsubscribe by address (no link at hand), and its answer.
    page.goto(f"{live_server}/unsubscribe?lang={lang}")
    axe.check(page, "unsubscribe by address")
    page.locator("#email").fill(f"someone.{lang}@example.se")
    submit(page)
    axe.check(page, "unsubscribe link sent")

    # A privacy request, its answer, and the verification link in its email
    # (to the address that was not sent a confirmation: one such email a
    # mailbox in ten minutes).
    page.goto(f"{live_server}/privacy/requests?lang={lang}")
    axe.check(page, "privacy request")
    page.locator("#email").fill(told)
    submit(page)
    axe.check(page, "privacy request sent")
    page.goto(mail_links(told, "/privacy/verify/"))
    axe.check(page, "privacy verify")
    submit(page)
    axe.check(page, "privacy verified")

    # A confirmation link that ran out (and its renewal); one that was tampered with.
    with app.app_context():
        request_id = read_token(Purpose.CONFIRM, confirm.rsplit("/", 1)[1])["r"]
        old = make_token(Purpose.CONFIRM, {"r": request_id}, datetime.now(UTC) - timedelta(days=8))
    page.goto(f"{live_server}/confirm/{old}")
    axe.check(page, "link expired")
    submit(page)
    axe.check(page, "confirmation renewed")
    page.goto(f"{live_server}/confirm/not-a-real-link?lang={lang}")
    axe.check(page, "link invalid")

    # A refusal: a form we do not know. A page that does not exist.
    post_form(page, f"{live_server}/subscribe", {"form_id": "no-such-form", "language": lang})
    axe.check(page, "problem")
    page.goto(f"{live_server}/no-such-page")
    axe.check(page, "404")
    page.context.close()
    axe.assert_clean()
