"""A marketer in Chromium, in English and in Swedish: saves a segment, targets a
campaign at it, reads the preview's counts per reason, sends, and sees the
report count the unsubscribe made through the campaign's own email.

Screenshots as tests/staff/test_browser.py takes them (``$STAFF_SCREENSHOTS``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from extensions import db
from tests.mailing.conftest import link
from tests.staff.test_browser import browser, live_server, new_page, shots, sign_in

__all__ = ["browser", "live_server", "shots"]  # the fixtures this module uses

pytestmark = pytest.mark.browser

# The demo's contacts at Kund AB: Anna (a customer), Erik (objected), Gustav
# (restricted), Hanna (undeliverable).
AT_KUND = 4


def _expected_preview(app: Any, campaign_id: int) -> Any:
    from mailing import campaigns

    with app.app_context():
        preview = campaigns.preview_campaign(campaign_id)
        db.session.remove()
    return preview


def _deliver(app: Any, campaign_id: int) -> None:
    """What the worker does: deliver each queued message (the policy checks each)."""
    from mailing import delivery
    from mailing.models import OutboxMessage

    with app.app_context():
        ids = db.session.scalars(
            sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign_id)
        ).all()
        delivery.deliver_many(list(ids))
        db.session.remove()


@pytest.mark.parametrize("lang", ["en", "sv"])
def test_a_segment_narrows_a_campaign_and_its_report_counts_the_unsubscribe(
    app, browser, live_server, shots: Path, smtp, lang: str
) -> None:
    page = new_page(browser)
    sign_in(page, live_server, "marketing@example.com")
    if lang == "sv":
        page.locator("form.lang button[value=sv]").click()
        page.wait_for_selector('html[lang="sv"]')

    # A segment: everyone at Kund AB. Its live count shows on its page.
    page.goto(f"{live_server}/staff/segments")
    page.locator("#s-name").fill("Kund AB")
    page.locator("#s-company").fill("Kund")
    page.locator("form.filters button[type=submit]").click()
    page.wait_for_selector(".segment-count")
    assert page.locator(".segment-count").inner_text() == str(AT_KUND)
    page.screenshot(path=str(shots / f"segment-{lang}.png"), full_page=True)

    # A campaign on product updates (customers may get them), narrowed to the segment.
    page.goto(f"{live_server}/staff/campaigns")
    page.locator("#topic").select_option("product-updates")
    page.locator("#segment_id").select_option(label="Kund AB")
    for field, text in (
        ("#subject_sv", "Kundnytt"),
        ("#body_sv", "Hej!"),
        ("#subject_en", "Customer news"),
        ("#body_en", "Hello!"),
    ):
        page.locator(field).fill(text)
    page.locator("form[action$='/staff/campaigns'] button[type=submit]").click()
    page.wait_for_selector("#segment-h")
    campaign_id = int(page.url.rstrip("/").rpartition("/")[2])

    # The preview: how many in the segment, how many allowed, why the rest are not.
    page.locator("a[href*='preview=1']").click()
    page.wait_for_selector(".preview-in-segment")
    expected = _expected_preview(app, campaign_id)
    assert page.locator(".preview-in-segment").inner_text() == str(AT_KUND)
    assert page.locator(".preview-audience").inner_text() == str(expected.audience)
    assert expected.audience >= 1 and expected.in_segment == AT_KUND
    shown = page.locator("tr.preview-reason td:nth-child(2)").all_inner_texts()
    assert sorted(int(n) for n in shown) == sorted(expected.not_allowed.values())
    assert {"objection", "restricted", "undeliverable"} <= expected.not_allowed.keys()
    page.screenshot(path=str(shots / f"campaign-preview-{lang}.png"), full_page=True)

    # Send, and let the worker's part run.
    page.locator("form[action$='/send'] input[name=confirm]").check()
    page.locator("form[action$='/send'] button[type=submit]").click()
    page.wait_for_selector(".campaign-segment")
    _deliver(app, campaign_id)
    assert len(smtp.messages) == expected.audience

    # One recipient unsubscribes through the email's own link.
    path = link(smtp.messages[0], "/unsubscribe/")
    person = new_page(browser)
    person.goto(live_server + path)
    person.locator("form button[type=submit]").click()
    person.wait_for_load_state()
    person.context.close()

    page.goto(f"{live_server}/staff/campaigns/{campaign_id}")
    assert page.locator("dd.sent").inner_text() == str(expected.audience)
    assert page.locator("tr.caused-unsubscribes td.count").inner_text() == "1"
    assert page.locator("tr.caused-objections td.count").inner_text() == "0"
    page.screenshot(path=str(shots / f"campaign-report-{lang}.png"), full_page=True)
    page.context.close()
