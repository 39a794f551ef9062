"""The contact list in a real browser: filter, read each row's decision, export,
and an admin's bulk action, in English and Swedish, on a wide screen and a
phone. The live server and browser are tests/staff/conftest.py's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import new_page, sign_in

pytestmark = pytest.mark.browser

# The words each step clicks, in each language (translations/sv/...).
WORDS = {
    "en": {
        "nav": "Contact list",
        "topic": "Topic",
        "channel": "Channel",
        "decision": "Decision for the topic and channel",
        "filter": "Filter",
        "export": "Export for Excel (semicolons)",
        "export_csv": "Export CSV",
        "allowed": "Allowed: industry list",
        "heading": "Contact list",
    },
    "sv": {
        "nav": "Kontaktlista",
        "topic": "Ämne",
        "channel": "Kanal",
        "decision": "Beslut för ämnet och kanalen",
        "filter": "Filter",
        "export": "Exportera för Excel (semikolon)",
        "export_csv": "Exportera CSV",
        "allowed": "Tillåtet: branschregister",
        "heading": "Kontaktlista",
    },
}


def _to_list(page: Any, base: str, lang: str, email: str = "admin@example.com") -> dict[str, str]:
    sign_in(page, base, email)
    if lang == "sv":
        page.get_by_role("button", name="Svenska").click()
    words = WORDS[lang]
    if page.viewport_size["width"] < 600:
        page.goto(f"{base}/staff/contacts")
    else:
        page.get_by_role("link", name=words["nav"], exact=True).click()
    page.get_by_role("heading", name=words["heading"], level=1).wait_for()
    return words


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_admin_filters_the_list_and_exports_it(
    browser, live_server, shots: Path, lang: str, width: int
) -> None:
    page = new_page(browser, width=width)
    words = _to_list(page, live_server, lang)
    # Everyone at first: the demo's ten contacts, each linked to its page.
    assert page.locator("table.results tbody tr").count() == 10
    page.get_by_label(words["topic"], exact=True).select_option("events")
    page.get_by_label(words["channel"], exact=True).select_option("email")
    page.get_by_label(words["decision"]).select_option("industry_list")
    page.get_by_role("button", name=words["filter"], exact=True).click()
    page.wait_for_url("**decision=industry_list**")
    rows = page.locator("table.results tbody tr")
    assert rows.count() == 1
    assert words["allowed"] in rows.first.inner_text()
    suffix = "" if width == 1280 else "-mobile"
    page.screenshot(path=str(shots / f"contact-list-{lang}{suffix}.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name=words["export"]).click()
    data = Path(download.value.path()).read_bytes()
    assert data.startswith("\ufeff".encode())
    lines = data.decode("utf-8-sig").split("\r\n")
    assert lines[0].startswith("id;email;name;")
    assert [line.split(";")[1] for line in lines[1:] if line] == ["bo.bransch@bransch.example"]

    with page.expect_download() as download:
        page.get_by_role("link", name=words["export_csv"]).click()
    assert Path(download.value.path()).read_bytes().startswith(b"id,email,name,")

    # Each row opens the contact's own page.
    rows.first.get_by_role("link").click()
    page.get_by_role("heading", name="Bo Bransch", level=1).wait_for()
    page.context.close()


def test_a_bad_filter_says_why(browser, live_server) -> None:
    page = new_page(browser)
    _to_list(page, live_server, "en")
    page.get_by_label("Country", exact=True).fill("XX")
    page.get_by_role("button", name="Filter", exact=True).click()
    assert (
        "Unknown country 'XX'" in page.content() or "Unknown country &#39;XX&#39;" in page.content()
    )
    page.context.close()


def test_admin_sets_a_legal_hold_on_a_filtered_list(
    browser, live_server, stub_worker, shots: Path
) -> None:
    page = new_page(browser)
    sign_in(page, live_server, "admin@example.com")
    page.goto(f"{live_server}/staff/contacts?company=Kund")
    page.get_by_role("link", name="Set a legal hold").click()
    lead = page.locator(".lead").inner_text()
    count = int(re.fullmatch(r"This changes (\d+) contacts of the filtered list\.", lead).group(1))
    assert count >= 2
    page.get_by_label("Reason for the legal hold").fill("Tax audit 2026")
    page.screenshot(path=str(shots / "contact-list-bulk-confirm.png"), full_page=True)
    page.get_by_role("button", name=f"Yes, change {count} contacts").click()
    page.wait_for_url("**/staff/contacts/bulk/*")
    stub_worker.join("imports", fail_fast=True, timeout=60_000)
    page.reload()
    page.get_by_text(f"{count} / {count}").first.wait_for()
    # Nobody is left to hold: the same action now changes no one.
    page.goto(f"{live_server}/staff/contacts/bulk?action=set_legal_hold&company=Kund")
    page.get_by_text("No contact in the list would change.").wait_for()
    page.context.close()


def test_marketing_filters_the_list_but_sees_no_export(browser, live_server) -> None:
    """The list is marketing's; the export of everyone's address is the admin's (R25)."""
    page = new_page(browser)
    words = _to_list(page, live_server, "en", email="marketing@example.com")
    assert page.locator("table.results tbody tr").count() == 10
    assert page.get_by_role("link", name=words["export"]).count() == 0
    assert page.get_by_role("link", name=words["export_csv"]).count() == 0
    page.context.close()
