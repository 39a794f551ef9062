"""A person in Chromium: the hosted form, the confirmation email, the unsubscribe page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from extensions import db
from tests.conftest import new_page
from tests.mailing.conftest import text_of

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A page on the shared browser (tests/conftest.py), against its live server."""
    page = new_page(browser)
    yield page
    page.context.close()


def _link(message: Any, part: str) -> str:
    return next(word for word in text_of(message).split() if part in word)


def test_subscribe_on_the_hosted_form_confirm_from_the_email_and_unsubscribe(
    app, live_server, page, smtp, mail_worker
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{live_server}/subscribe?topics=newsletter&lang=en")
    page.get_by_label("Email address").fill("browser@example.se")
    page.get_by_label("Name (optional)").fill("Bo Browser")
    page.get_by_role("checkbox").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    mail_worker.drain()
    confirmation = smtp.wait_for(1)[0]
    page.goto(_link(confirmation, "/confirm/"))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Subscription confirmed")).to_be_visible()

    mail_worker.drain()
    welcome = smtp.wait_for(2)[1]
    page.goto(_link(welcome, "/unsubscribe/"))
    page.get_by_label("Stop sending me Newsletter").check()
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()

    with app.app_context():
        from consent.services import check_permissions

        [decision] = check_permissions(["browser@example.se"], "newsletter")
        db.session.remove()
    assert (decision.allowed, decision.reason) == (False, "unsubscribed")


def test_a_signup_told_by_email_is_undone_with_the_button_in_chromium(
    app, live_server, page, smtp, mail_worker
) -> None:
    """The undo page sends no Referer, so Chromium posts its button with
    ``Origin: null``: the page must still accept its own post."""
    from playwright.sync_api import expect

    client = app.test_client()
    client.post(
        "/subscribe",
        data={
            "form_id": "hosted",
            "consent": "on",
            "language": "en",
            "topics": "events",
            "country": "SE",
            "email": "undo@example.se",
        },
    )
    mail_worker.drain()
    [notice] = smtp.wait_for(1)
    page.goto(_link(notice, "/undo/"))
    page.get_by_role("button", name="Undo the subscription").click()
    expect(page.get_by_role("heading", name="Subscription undone")).to_be_visible()

    with app.app_context():
        from consent.services import check_permissions

        [decision] = check_permissions(["undo@example.se"], "events")
        db.session.remove()
    assert (decision.allowed, decision.reason) == (False, "unsubscribed")
