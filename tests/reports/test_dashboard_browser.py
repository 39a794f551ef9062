"""The dashboard in a real browser (Chromium through Playwright), with the staff
pages' strict Content-Security-Policy: the charts are seen, nothing is refused.

The live server, the browser and the screenshot folder are the staff browser
tests' own fixtures (tests/staff/test_browser.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from extensions import db
from kernel.timestamps import utcnow
from reports import snapshots
from tests.conftest import new_page, sign_in

pytestmark = pytest.mark.browser

CHARTS = ("reach", "weekly", "campaigns", "retention", "requests")
# The demo data has sent no campaign: that section says so instead of a chart.
DEMO_CHARTS = ("reach", "weekly", "retention", "requests")
PHONE = 390


@pytest.fixture
def counted(app: Any, live_server: str) -> str:
    """The demo data's dashboard, counted as the scheduler would."""
    with app.app_context():
        snapshots.refresh(utcnow())
        db.session.remove()
    return live_server


def _watch_console(page: Any) -> list[str]:
    """Every console error (a CSP violation is one: "Refused to apply inline
    style ...") and every answer of 400 or more, but the favicon nobody serves."""
    problems: list[str] = []

    def note_console(message: Any) -> None:
        # A failed load is reported by its answer below, with its address.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def note_answer(answer: Any) -> None:
        if answer.status >= 400 and not answer.url.endswith("/favicon.ico"):
            problems.append(f"{answer.status} {answer.url}")

    page.on("console", note_console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", note_answer)
    return problems


def _charts_drawn(page: Any) -> dict[str, int]:
    """Each chart image's drawn width: 0 when the browser could not show it."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('figure.chart img')].map(
            i => [i.getAttribute('src').split('/').pop(), i.complete ? i.naturalWidth : 0]))"""
    )


@pytest.mark.parametrize(
    ("language", "width", "heading", "shot"),
    [
        ("en", 1280, "Dashboard", "dashboard.png"),
        ("sv", 1280, "Översikt", "dashboard-sv.png"),
        ("en", PHONE, "Dashboard", "dashboard-mobile.png"),
        ("sv", PHONE, "Översikt", "dashboard-sv-mobile.png"),
    ],
)
def test_the_dashboard_shows_its_charts_under_the_strict_policy(
    browser,
    counted: str,
    shots: Path,
    language: str,
    width: int,
    heading: str,
    shot: str,
) -> None:
    page = new_page(browser, width=width)
    problems = _watch_console(page)
    sign_in(page, counted, "marketing@example.com")
    if language == "sv":
        page.get_by_role("button", name="Svenska").click()
        page.wait_for_load_state()
    page.goto(f"{counted}/staff/dashboard")
    page.get_by_role("heading", name=heading, level=1).wait_for()
    page.wait_for_load_state("networkidle")
    assert page.locator("html").get_attribute("lang") == language

    assert _charts_drawn(page) == {f"{name}.svg": 800 for name in DEMO_CHARTS}
    for image in page.locator("figure.chart img").all():
        assert image.is_visible()
        assert len(image.get_attribute("alt") or "") > 40
    assert page.locator("table#reach-table caption").is_visible()
    # The demo's objector appears among the counts of every topic by email.
    newsletter = page.locator('#reach-table tr[data-topic="newsletter"][data-channel="email"]')
    assert int(newsletter.locator('[data-reason="objection"]').inner_text()) >= 1
    if width == PHONE:
        # No sideways scrolling on a phone: the tables turn into labelled rows.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(shots / shot), full_page=True)
    assert problems == []
    page.context.close()


def test_a_chart_opened_on_its_own_runs_nothing_and_is_refused_nothing(
    browser,
    counted: str,
) -> None:
    page = new_page(browser)
    problems = _watch_console(page)
    sign_in(page, counted, "dpo@example.com")
    for name in CHARTS:
        answer = page.goto(f"{counted}/staff/dashboard/charts/{name}.svg")
        assert answer.status == 200 and answer.headers["content-type"].startswith("image/svg+xml")
        assert page.locator("svg").count() >= 1
    assert page.evaluate("typeof window.pygal") == "undefined"
    assert problems == []
    page.context.close()
