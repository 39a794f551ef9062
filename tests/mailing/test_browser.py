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
    page.get_by_label("Stop sending me the newsletter").check()
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


# Each checkbox or radio button and its label's first line share a line; the label's
# text starts to the right of the control. Measured in the page, on its own layout.
_BESIDE = """(input) => {
  const label = input.closest("label");
  if (!label) return null;
  const walker = document.createTreeWalker(label, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => node.textContent.trim() ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP,
  });
  const words = walker.nextNode();
  const range = document.createRange();
  range.selectNodeContents(words);
  const line = range.getClientRects()[0];
  const box = input.getBoundingClientRect();
  return {
    overlap: Math.min(box.bottom, line.bottom) - Math.max(box.top, line.top),
    height: Math.min(box.height, line.height),
    gap: line.left - box.right,
  };
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_checkboxes_and_radio_buttons_share_a_line_with_their_labels(
    app, live_server, page, width: int
) -> None:
    from consent.tokens import Purpose, make_token
    from tests.mailing.helpers import consented_contacts

    [contact_id] = consented_contacts(app, [("beside@example.se", "Bo", "sv")])
    with app.app_context():
        unsubscribe = make_token(Purpose.UNSUBSCRIBE, {"c": contact_id, "t": "newsletter"})
        preferences = make_token(Purpose.PREFERENCES, {"c": contact_id})
    page.set_viewport_size({"width": width, "height": 900})
    paths = [
        "/subscribe?topics=newsletter,events&lang=sv",
        f"/unsubscribe/{unsubscribe}",
        f"/preferences/{preferences}",
        "/privacy/requests?lang=sv",
    ]
    for path in paths:
        page.goto(live_server + path)
        inputs = page.locator("input[type=checkbox], input[type=radio]")
        assert inputs.count() > 0, path
        for index in range(inputs.count()):
            placed = inputs.nth(index).evaluate(_BESIDE)
            assert placed is not None, f"{path}: control {index} outside a label"
            assert placed["overlap"] >= placed["height"] * 0.5, f"{path} {index}: {placed}"
            assert 0 <= placed["gap"] <= 24, f"{path} {index}: {placed}"
