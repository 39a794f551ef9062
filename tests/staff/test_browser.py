"""The staff pages in a real browser: Playwright driving the machine's Chromium
against the app served by a real HTTP server thread on the test database.

Screenshots go to ``$STAFF_SCREENSHOTS`` when set (docs/screenshots/ is made
this way), else to the test's temporary folder. The live server and the
browser are the shared fixtures of tests/conftest.py; the screenshot folder
is tests/staff/conftest.py's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from consent.demo import DEMO_PASSWORD
from tests.conftest import new_page, sign_in

pytestmark = pytest.mark.browser


def open_contact(
    page: Any, query: str, name: str, label: str = "Email, name or company", button: str = "Search"
) -> None:
    page.get_by_label(label).fill(query)
    page.get_by_role("button", name=button, exact=True).click()
    page.get_by_role("link", name=name).click()
    page.get_by_role("heading", name=name, level=1).wait_for()


def verdict(page: Any, topic: str, channel: str = "email") -> str:
    card = page.locator(f'article[data-topic="{topic}"][data-channel="{channel}"]')
    return re.sub(r"[✓✕]", "", card.locator(".verdict").inner_text()).strip()


@pytest.mark.parametrize(
    ("email", "admin_links"),
    [
        ("sales@example.com", False),
        ("marketing@example.com", False),
        ("admin@example.com", True),
    ],
)
def test_each_role_signs_in_and_sees_its_navigation(
    browser, live_server, email: str, admin_links: bool
) -> None:
    page = new_page(browser)
    sign_in(page, live_server, email)
    nav = page.get_by_role("navigation", name="Main navigation")
    assert nav.get_by_role("link", name="Contacts").is_visible()
    assert nav.get_by_role("link", name="Users").count() == (1 if admin_links else 0)
    assert "Signed in as" in page.locator("header").inner_text()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/staff/login$"))
    assert "You are signed out." in page.content()
    page.context.close()


def test_sales_finds_a_contact_reads_why_and_records_an_objection(
    browser, live_server, shots: Path
) -> None:
    page = new_page(browser)
    page.goto(f"{live_server}/staff/")
    page.screenshot(path=str(shots / "sign-in.png"))
    sign_in(page, live_server, "sales@example.com")

    page.get_by_label("Email, name or company").fill("kund")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Anna Kund").wait_for()
    page.screenshot(path=str(shots / "search.png"), full_page=True)
    page.get_by_role("link", name="Anna Kund").click()

    assert verdict(page, "product-updates") == "Allowed: customer"
    card = page.locator('article[data-topic="product-updates"][data-channel="email"]')
    assert "legitimate interest" in card.inner_text()
    # The evidence is the company's relationship (R1): the grant it caused.
    assert "company (company:" in card.inner_text()
    assert "company became a customer on 2020-03-01" in card.inner_text()
    page.screenshot(path=str(shots / "contact.png"), full_page=True)

    form = page.locator("#objection-form")
    form.get_by_label("Received via").select_option("phone")
    form.get_by_label("Note").fill("Called and asked us to stop.")
    form.get_by_role("button", name="Record objection").click()
    page.get_by_text("Objection recorded.").wait_for()

    for topic in ("newsletter", "product-updates", "events", "surveys"):
        assert verdict(page, topic) == "Not allowed: objection"
    assert "Demo sales (sales@example.com)" in card.inner_text()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", card.inner_text())
    assert "phone" in card.inner_text()
    page.screenshot(path=str(shots / "contact-after-objection.png"), full_page=True)
    page.context.close()


def test_sales_is_refused_what_only_admins_may_do(browser, live_server) -> None:
    page = new_page(browser)
    sign_in(page, live_server, "sales@example.com")
    open_contact(page, "anna", "Anna Kund")
    assert page.get_by_role("button", name="Restrict").count() == 0

    response = page.goto(f"{live_server}/staff/admin/users")
    assert response.status == 403
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    assert "Your role may not do this." in page.content()

    # Even a hand-made request with a valid CSRF token is refused by the server.
    page.go_back()
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    contact_path = page.url.removeprefix(live_server)
    refused = page.request.post(
        f"{live_server}{contact_path}/restriction",
        form={"csrf_token": token, "note": "sneaky"},
        max_redirects=0,
    )
    assert refused.status == 403
    page.reload()
    assert verdict(page, "product-updates") == "Allowed: customer"
    page.context.close()


def test_admin_restricts_a_contact_and_sees_the_admin_pages(
    browser, live_server, shots: Path
) -> None:
    page = new_page(browser)
    sign_in(page, live_server, "admin@example.com")
    open_contact(page, "bo", "Bo Bransch")
    assert verdict(page, "product-updates") == "Allowed: industry list"
    page.locator("#restrict-note").fill("Disputes the accuracy (art. 18)")
    page.get_by_role("button", name="Restrict").click()
    page.get_by_text("Restriction recorded.").wait_for()
    assert verdict(page, "product-updates") == "Not allowed: restricted"

    for path, name in (
        ("/staff/admin/users", "users"),
        ("/staff/admin/tokens", "tokens"),
        ("/staff/admin/audit", "audit"),
    ):
        page.goto(f"{live_server}{path}")
        page.screenshot(path=str(shots / f"admin-{name}.png"), full_page=True)

    page.goto(f"{live_server}/staff/admin/tokens")
    page.get_by_label("Name").fill("crm-sync")
    page.get_by_role("button", name="Create token").click()
    assert page.locator("#new-token-secret").inner_text().startswith("cst_")
    page.context.close()


def test_marketing_imports_a_list_and_reads_its_report(
    browser, live_server, shots: Path, tmp_path: Path, import_worker
) -> None:
    csv_file = tmp_path / "massan.csv"
    csv_file.write_text(
        "e-post;namn;företag;land\n"
        "greta@massan.example;Greta Gäst;Mässbolaget AB;SE\n"
        "inte-en-adress;Hugo;;SE\n"
        "ines@massan.example;Ines;Mässbolaget AB;SE\n",
        encoding="utf-8",
    )
    page = new_page(browser)
    sign_in(page, live_server, "marketing@example.com")
    page.get_by_role("navigation", name="Main navigation").get_by_role(
        "link", name="Imports"
    ).click()
    page.get_by_label("File", exact=True).set_input_files(str(csv_file))
    page.get_by_label("An industry list", exact=False).check()
    page.get_by_label("Source of the list").fill("Mässan 2026")
    page.get_by_role("button", name="Import", exact=True).click()

    page.get_by_text("File received: the import runs in the background.").wait_for()
    # The page reloads itself until the worker has run the import.
    page.locator("dd.status", has_text="done").wait_for(timeout=60_000)
    assert page.locator("dd.created").inner_text() == "2"
    assert page.locator("dd.rejected").inner_text() == "1"
    assert page.locator("tr.rejection td").first.inner_text() == "3"
    page.screenshot(path=str(shots / "import-report.png"), full_page=True)
    page.get_by_role("link", name="All imports").click()
    assert page.locator("tr.batch").count() == 1
    assert "Mässan 2026" in page.locator("tr.batch").inner_text()
    page.screenshot(path=str(shots / "imports.png"), full_page=True)
    page.context.close()


def test_swedish_and_a_narrow_screen(browser, live_server, shots: Path) -> None:
    page = new_page(browser, width=390)
    sign_in(page, live_server, "sales@example.com")
    page.get_by_role("button", name="Svenska").click()
    page.get_by_role("heading", name="Hitta en kontakt").wait_for()
    open_contact(page, "erik", "Erik Invänder", "E-post, namn eller företag", "Sök")
    assert verdict(page, "events") == "Inte tillåtet: invändning"
    assert page.locator("html").get_attribute("lang") == "sv"
    page.screenshot(path=str(shots / "contact-sv-mobile.png"), full_page=True)
    page.context.close()


def test_sign_in_and_search_by_keyboard_alone(browser, live_server) -> None:
    page = new_page(browser)
    page.goto(f"{live_server}/staff/login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_label("Email").focus()
    page.keyboard.type("sales@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server}/staff/")
    page.get_by_label("Email, name or company").focus()
    page.keyboard.type("cecilia")
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Cecilia Samtycke").focus()
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Cecilia Samtycke").wait_for()
    assert verdict(page, "newsletter") == "Allowed: consent"
    card = page.locator('article[data-topic="newsletter"][data-channel="email"]').inner_text()
    assert "website-footer" in card and "1.0" in card  # the form and the policy version
    page.context.close()


def test_markup_in_a_name_is_shown_and_never_run(browser, live_server, app) -> None:
    from tests.staff.helpers import make_contact

    make_contact(app, "xss@example.se", "<img src=x onerror=alert(1)>Mallory", "<b>Evil</b> AB")
    page = new_page(browser)
    sign_in(page, live_server, "sales@example.com")
    page.get_by_label("Email, name or company").fill("xss@")
    page.get_by_role("button", name="Search").click()
    link = page.get_by_role("link", name="<img src=x onerror=alert(1)>Mallory")
    link.click()
    assert (
        page.get_by_role("heading", level=1).inner_text() == "<img src=x onerror=alert(1)>Mallory"
    )
    assert "<b>Evil</b> AB" in page.locator(".lead").inner_text()
    assert page.dialogs == []
    page.context.close()


def test_a_user_turns_on_two_factor_sign_in_and_signs_in_with_a_code(browser, live_server) -> None:
    import pyotp

    page = new_page(browser)
    sign_in(page, live_server, "sales@example.com")
    page.locator("header .who a").click()
    page.get_by_role("heading", name="Your account", level=1).wait_for()
    page.get_by_role("link", name="Turn on two-factor sign-in").click()
    secret = page.locator("#totp-secret").inner_text().strip()
    assert page.locator("#totp-uri").inner_text().startswith("otpauth://totp/")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    page.wait_for_url(f"{live_server}/staff/account")
    assert "Two-factor sign-in is on." in page.content()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/staff/login$"))

    page.get_by_label("Email").fill("sales@example.com")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/staff/login/code")
    # The enrolment's code is spent; the next window's signs in.
    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(seconds=30)
    page.get_by_label("The code from your authenticator app").fill(pyotp.TOTP(secret).at(later))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/staff/")
    assert "Signed in as" in page.locator("header").inner_text()
    assert page.dialogs == []
