"""The signup, confirm, unsubscribe and preference flows with the keyboard alone.

No click and no mouse: Tab moves, the keyboard types, Space ticks, Enter sends.
The only other step is opening a link from an email, as a person does in
their mail program. At every stop the focus must be visible (WCAG 2.4.7): the
focused element has a computed outline or box-shadow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consent.services import check_permissions
from extensions import db
from tests.conftest import new_page, sign_in

pytestmark = pytest.mark.browser

# Which element has the focus, and how it shows: what a test reads at each stop.
_FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  return {
    tag: el.tagName.toLowerCase(), id: el.id, type: el.type || "", name: el.name || "",
    text: (el.textContent || "").trim(), checked: !!el.checked, value: el.value || "",
    visible: outline || style.boxShadow !== "none",
  };
}"""


def focused(page: Any) -> dict[str, Any]:
    return page.evaluate(_FOCUSED)  # type: ignore[no-any-return]


def tab_to(page: Any, wanted: Callable[[dict[str, Any]], bool], most: int = 15) -> dict[str, Any]:
    """Press Tab until the focused element is ``wanted``; every stop on the way
    must show its focus."""
    stops = []
    for _ in range(most):
        page.keyboard.press("Tab")
        now = focused(page)
        stops.append(now)
        assert now["visible"], f"focus not visible on {now}"
        if wanted(now):
            return now
    raise AssertionError(f"never reached by Tab; the stops were {stops}")


def by_id(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda el: el["id"] == name


def button(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda el: el["tag"] == "button" and el["text"] == text


def press_enter_and_wait(page: Any) -> None:
    with page.expect_navigation():
        page.keyboard.press("Enter")


def decision(app: Any, address: str, topic: str) -> tuple[bool, str]:
    with app.app_context():
        [answer] = check_permissions([address], topic)
        db.session.remove()
    return answer.allowed, answer.reason


def test_the_skip_link_is_the_first_stop_and_moves_focus_to_the_content(
    browser, live_server
) -> None:
    page = new_page(browser)
    for path in ("/subscribe?lang=en", "/privacy/requests?lang=en", "/staff/login"):
        page.goto(live_server + path)
        page.keyboard.press("Tab")
        first = focused(page)
        assert (first["tag"], first["text"]) == ("a", "Skip to content"), path
        assert first["visible"], f"the skip link's focus is not visible on {path}"
        assert page.locator("a.skip").is_visible(), "the focused skip link stays off screen"
        page.keyboard.press("Enter")
        assert focused(page)["id"] == "main", path
    # Signed in, past the navigation.
    sign_in(page, live_server, "sales@example.com")
    page.keyboard.press("Tab")
    assert focused(page)["text"] == "Skip to content"
    page.keyboard.press("Enter")
    assert focused(page)["id"] == "main"
    page.context.close()


def test_sign_up_confirm_and_unsubscribe_with_the_keyboard_alone(
    app, browser, live_server, mail_links: Callable[[str, str], str]
) -> None:
    address = "keys@example.se"
    page = new_page(browser)
    page.goto(f"{live_server}/subscribe?topics=newsletter&lang=en")

    tab_to(page, by_id("email"))
    page.keyboard.type(address)
    tab_to(page, by_id("name"))
    page.keyboard.type("Kim Keys")
    tab_to(page, by_id("consent"))
    page.keyboard.press("Space")
    assert focused(page)["checked"]
    tab_to(page, button("Subscribe"))
    press_enter_and_wait(page)
    assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"
    assert decision(app, address, "newsletter") == (False, "pending_confirmation")

    page.goto(mail_links(address, "/confirm/"))  # opened from the email
    tab_to(page, button("Confirm"))
    press_enter_and_wait(page)
    assert page.get_by_role("heading", level=1).inner_text() == "Subscription confirmed"
    assert decision(app, address, "newsletter") == (True, "consent")

    page.goto(mail_links(address, "/unsubscribe/"))
    chosen = tab_to(page, lambda el: el["type"] == "radio")
    assert chosen["id"] == "scope-topic" and chosen["checked"]
    page.keyboard.press("ArrowDown")  # a radio group: the arrows choose
    assert focused(page)["id"] == "scope-all" and focused(page)["checked"]
    tab_to(page, button("Unsubscribe"))
    press_enter_and_wait(page)
    assert page.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
    assert "no longer receive marketing email" in page.locator("main").inner_text()
    # "All marketing email" puts the address on the suppression list (R22).
    assert decision(app, address, "newsletter") == (False, "suppressed")
    page.context.close()


def test_change_preferences_with_the_keyboard_alone(
    app, browser, live_server, mail_links: Callable[[str, str], str]
) -> None:
    address = "prefs.keys@example.se"
    client = app.test_client()
    client.post(
        "/subscribe",
        data={"form_id": "hosted", "consent": "on", "language": "en"}
        | {"topics": "newsletter", "email": address},
    )
    page = new_page(browser)
    page.goto(mail_links(address, "/confirm/"))
    tab_to(page, button("Confirm"))
    press_enter_and_wait(page)
    assert decision(app, address, "newsletter") == (True, "consent")

    page.goto(mail_links(address, "/preferences/"))  # from the welcome email
    box = tab_to(page, lambda el: el["type"] == "checkbox" and el["value"] == "newsletter")
    assert box["checked"]
    page.keyboard.press("Space")
    assert not focused(page)["checked"]
    tab_to(page, lambda el: el["tag"] == "button" and el["value"] == "save")
    press_enter_and_wait(page)
    assert page.get_by_role("heading", level=1).inner_text() == "Your choices are saved"
    assert "Turned off: the newsletter." in page.locator("main").inner_text()
    assert decision(app, address, "newsletter") == (False, "unsubscribed")
    page.context.close()
