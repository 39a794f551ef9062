"""Every staff page passes axe-core at WCAG 2.1 AA with no violation.

The pages are found in ``app.url_map``, not listed by hand: a page added later
is checked as soon as it exists. Ids in a route's URL come from the data the
test makes (the demo data, a campaign, an import, a privacy request, a
webhook) or, for a route this file does not know, from a link to it on a page
already visited. A staff GET route that is neither visited nor excluded below
with a reason fails ``test_every_staff_page_passes_axe_for_the_admin``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from werkzeug.exceptions import HTTPException

from crm.models import Contact
from extensions import db
from kernel.access import create_api_token, may
from kernel.models import StaffUser
from tests.a11y.conftest import Axe
from tests.conftest import sign_in
from tests.staff.helpers import ROLES
from tests.staff.test_role_matrix import (
    make_bulk_run,
    make_campaign,
    make_import,
    make_privacy_request,
    make_segment,
    make_webhook,
)

# Reached without signing in: checked as a visitor sees them.
ANONYMOUS = {"staff.login", "accounts.forgot_password", "accounts.reset_password"}
# Reached only halfway through a sign-in: checked on the way there.
HALFWAY = {"accounts.second_factor", "accounts.enrol_at_sign_in"}
# GET routes under /staff that are not pages (nothing to check), with why.
EXCLUDED: dict[str, str] = {
    "contact_list.export": "a CSV file to download, not a page",
    "staff.export_audit_log": "a CSV file to download, not a page",
    "dashboard_charts.chart": (
        "an SVG chart the dashboard shows as an image; the dashboard page is checked, "
        "with its alt texts and tables"
    ),
}
# The URLs' query strings a page is visited with (default: none): states of a
# page that show other markup, or what a page cannot be shown without.
VARIANTS: dict[str, list[str]] = {
    "staff_contacts.search": ["", "?q=kund", "?q=nobody-matches-this"],
    "staff.retention_page": ["", "?as_of=2027-01-01"],
    "staff_campaigns.campaign_page": ["", "?preview=1"],
    "staff_requests.inbox": ["", "?show=all"],
    "staff_imports.import_page": ["", "?after_row=1"],
    "contact_list.contacts": ["", "?country=SE"],
    "contact_list.confirm_bulk": ["?action=set_legal_hold&company=Kund+AB"],
}
# The pages that differ by role (navigation, evidence, actions offered), for
# the roles that see them differently from the admin.
ROLE_PAGES: dict[str, list[str]] = {
    "sales": ["/staff/", "/staff/?q=kund", "/staff/contacts/{contact_id}", "/staff/admin/users"],
    "marketing": ["/staff/", "/staff/contacts/{contact_id}", "/staff/campaigns"],
    "dpo": [
        "/staff/",
        "/staff/contacts/{contact_id}",
        "/staff/admin/audit",
        "/staff/admin/privacy-requests?show=all",
    ],
}


def staff_get_routes(app: Any) -> dict[str, Any]:
    """Each staff endpoint answering GET, with its rule."""
    return {
        rule.endpoint: rule
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/staff") and "GET" in (rule.methods or ())
    }


def make_staff_data(app: Any) -> dict[str, int]:
    """Data behind every kind of staff page, on top of the demo; the ids by URL argument."""
    with app.app_context():
        contact_id = db.session.scalar(
            sa.select(Contact.id).where(Contact.email == "anna.kund@kund.example")
        )
        user_id = db.session.scalar(
            sa.select(StaffUser.id).where(StaffUser.email == "sales@example.com")
        )
        token, _ = create_api_token("crm-sync", "sales")
        ids = {
            "contact_id": contact_id,
            "user_id": user_id,
            "token_id": token.id,
            "campaign_id": make_campaign(),
            "batch_id": make_import(),
            "request_id": make_privacy_request(contact_id),
            "run_id": make_bulk_run(),
            "segment_id": make_segment(),
        }
        ids["webhook_id"], ids["delivery_id"] = make_webhook(contact_id)
        db.session.remove()
    return ids


def test_every_exclusion_says_why(app) -> None:
    # Every excluded endpoint exists: an exclusion left behind by a renamed or
    # removed route would otherwise excuse nothing, silently.
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    for endpoint, reason in EXCLUDED.items():
        assert reason.strip(), f"{endpoint} is excluded without a reason"
        assert endpoint in endpoints, f"{endpoint} is excluded but is no route"
    assert staff_get_routes(app).keys() >= ANONYMOUS | HALFWAY, "sign-in pages that do not exist"


def _links(page: Any, base: str) -> Iterable[str]:
    for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
        if href.startswith(base):
            yield href.removeprefix(base)


def viewer(app: Any, endpoint: str) -> str:
    """Who visits a page: the admin, or for a page the admin may not see, the
    first role that may (a view of the DPO's own, say)."""
    action = getattr(app.view_functions[endpoint], "_required_action", None)
    if action is None or may("admin", action):
        return "admin"
    return next((role for role in ROLES if may(role, action)), "admin")


@pytest.mark.browser
def test_every_staff_page_passes_axe_for_the_admin(app, browser, live_server, axe: Axe) -> None:
    ids = make_staff_data(app)
    routes = staff_get_routes(app)
    adapter = app.url_map.bind("localhost")
    pages: dict[str, Any] = {}

    def signed_in(role: str) -> Any:
        if role not in pages:
            pages[role] = axe.page(browser)
            sign_in(pages[role], live_server, f"{role}@example.com")
        return pages[role]

    found: dict[str, str] = {}  # endpoint: a path seen in a link to it
    visited: set[str] = set()
    not_pages: dict[str, str] = {}  # endpoint: the content type it answers
    pending = [e for e in routes if e not in ANONYMOUS | HALFWAY | EXCLUDED.keys()]
    # Pages without ids first: their links name the ids of the others.
    pending.sort(key=lambda e: (len(routes[e].arguments), e))
    for endpoint in pending:
        rule = routes[endpoint]
        values = {name: ids[name] for name in rule.arguments if name in ids}
        if len(values) == len(rule.arguments):
            path = adapter.build(endpoint, values)
        elif endpoint in found:
            path = found[endpoint]
        else:
            continue
        role = viewer(app, endpoint)
        page = signed_in(role)
        answer = page.request.get(f"{live_server}{path}")
        if not answer.headers.get("content-type", "").startswith("text/html"):
            not_pages[endpoint] = answer.headers.get("content-type", "")
            continue
        for suffix in VARIANTS.get(endpoint, [""]):
            response = page.goto(f"{live_server}{path}{suffix}")
            assert response.status == 200, f"{endpoint} {path}{suffix}: {response.status}"
            axe.check(page, f"{role} {endpoint}{suffix}")
            for link in _links(page, live_server):
                try:
                    target, _ = adapter.match(urlsplit(link).path, method="GET")
                except HTTPException:  # a link to no GET page (a static file, elsewhere)
                    continue
                found.setdefault(target, urlsplit(link).path)
        visited.add(endpoint)

    # The admin's pages in Swedish too: the lang attribute, longer words.
    page = signed_in("admin")
    page.get_by_role("button", name="Svenska").click()
    for path in ("/staff/", f"/staff/contacts/{ids['contact_id']}", "/staff/admin/users"):
        page.goto(f"{live_server}{path}")
        axe.check(page, f"admin (sv) {path}")
    page.goto(f"{live_server}/staff/no-such-page")
    axe.check(page, "admin 404")
    for each in pages.values():
        each.context.close()

    # One failure that says everything: coverage gaps, then each violation.
    if not_pages:
        axe.found.insert(
            0,
            f"staff GET routes that answer no HTML page: {not_pages}; add them to "
            "EXCLUDED with a reason",
        )
    missed = set(pending) - visited - not_pages.keys()
    if missed:
        axe.found.insert(
            0,
            f"staff GET routes neither checked nor excluded: {sorted(missed)}; give their "
            "URL arguments an id in make_staff_data, link to them from a visited page, or "
            "add them to EXCLUDED with a reason",
        )
    axe.assert_clean()


@pytest.mark.browser
@pytest.mark.parametrize("role", sorted(ROLE_PAGES))
def test_the_pages_a_role_sees_differently_pass_axe(
    app, browser, live_server, axe: Axe, role: str
) -> None:
    ids = make_staff_data(app)
    page = axe.page(browser)
    sign_in(page, live_server, f"{role}@example.com")
    for path in ROLE_PAGES[role]:
        page.goto(live_server + path.format(**ids))
        axe.check(page, f"{role} {path}")  # a 403 page is a page too
    page.context.close()
    axe.assert_clean()


@pytest.mark.browser
def test_the_sign_in_pages_pass_axe(app, browser, live_server, axe: Axe, monkeypatch) -> None:
    from crm.accounts import password_reset_token

    with app.app_context():
        marketing = db.session.scalar(
            sa.select(StaffUser).where(StaffUser.email == "marketing@example.com")
        )
        reset = password_reset_token(marketing)
        sales = db.session.scalar(
            sa.select(StaffUser).where(StaffUser.email == "sales@example.com")
        )
        sales.totp_secret = "JBSWY3DPEHPK3PXP"  # test data: a user with a second factor
        db.session.commit()
        db.session.remove()
    for locale in ("en-GB", "sv-SE"):
        page = axe.page(browser, locale)
        for path in ("/staff/login", "/staff/password-reset", f"/staff/password-reset/{reset}"):
            page.goto(live_server + path)
            axe.check(page, f"anonymous {locale} {path}")
        page.goto(f"{live_server}/staff/password-reset/not-a-link")
        axe.check(page, f"anonymous {locale} a reset link that is not one")
        page.goto(f"{live_server}/staff/login")
        page.locator("#email").fill("nobody@example.com")
        page.locator("#password").fill("wrong-password")
        page.locator("main form button").click()
        axe.check(page, f"anonymous {locale} a failed sign-in")
        page.context.close()

    # Halfway: a user with a second factor is asked for the code.
    page = axe.page(browser)
    page.goto(f"{live_server}/staff/login")
    page.get_by_label("Email").fill("sales@example.com")
    page.get_by_label("Password").fill(_demo_password())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/staff/login/code")
    axe.check(page, "halfway: the code")
    page.context.close()

    # Halfway: a role that must have a second factor enrols before any page.
    monkeypatch.setitem(app.config, "MFA_REQUIRED_ROLES", ["marketing"])
    page = axe.page(browser)
    page.goto(f"{live_server}/staff/login")
    page.get_by_label("Email").fill("marketing@example.com")
    page.get_by_label("Password").fill(_demo_password())
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/staff/login/two-factor")
    axe.check(page, "halfway: enrol the second factor")
    page.context.close()
    axe.assert_clean()


def _demo_password() -> str:
    from consent.demo import DEMO_PASSWORD

    return DEMO_PASSWORD
