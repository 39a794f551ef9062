"""Admin pages: staff users, API tokens, the audit log; and the translations."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from crm.models import AuditEntry
from extensions import db
from kernel.access import authenticate_token
from kernel.errors import NotAuthenticated
from kernel.models import ApiToken, StaffUser
from tests.staff.helpers import client_as, make_contact, make_user

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_admin_creates_a_user_who_can_sign_in(app) -> None:
    client = client_as(app, "admin")
    response = client.post(
        "/staff/admin/users",
        data={
            "email": "Maria@Example.se",
            "name": "Maria",
            "role": "marketing",
            "password": "a-long-password",
        },
    )
    page = client.get(response.location).get_data(as_text=True)
    assert "User created." in page and "maria@example.se" in page
    signed_in = app.test_client().post(
        "/staff/login", data={"email": "maria@example.se", "password": "a-long-password"}
    )
    assert signed_in.status_code == 303


def test_a_short_password_is_refused_with_the_reason(app) -> None:
    client = client_as(app, "admin")
    response = client.post(
        "/staff/admin/users",
        data={"email": "x@example.se", "role": "sales", "password": "short"},
    )
    assert "password" in client.get(response.location).get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(StaffUser)) == 1


def test_admin_changes_a_role_and_deactivates_a_user(app) -> None:
    client = client_as(app, "admin")
    other = make_user(app, "sales", email="seller@staff.example")
    client.post(f"/staff/admin/users/{other}/role", data={"role": "marketing"})
    client.post(f"/staff/admin/users/{other}/active", data={"active": "false"})
    with app.app_context():
        user = db.session.get(StaffUser, other)
        assert (user.role, user.is_active) == ("marketing", False)
        actions = db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["staff.user.role", "staff.user.deactivate"]


def test_the_last_admin_cannot_lock_everyone_out(app) -> None:
    client = client_as(app, "admin")
    with app.app_context():
        admin_id = db.session.scalar(sa.select(StaffUser.id))
    response = client.post(f"/staff/admin/users/{admin_id}/role", data={"role": "sales"})
    assert "last active admin" in client.get(response.location).get_data(as_text=True)
    response = client.post(f"/staff/admin/users/{admin_id}/active", data={"active": "false"})
    assert "cannot deactivate yourself" in client.get(response.location).get_data(as_text=True)
    with app.app_context():
        admin = db.session.get(StaffUser, admin_id)
        assert (admin.role, admin.is_active) == ("admin", True)


def test_a_token_is_shown_once_and_works_until_revoked(app) -> None:
    client = client_as(app, "admin")
    created = client.post("/staff/admin/tokens", data={"name": "crm-sync", "role": "sales"})
    assert created.status_code == 200
    assert created.headers["Cache-Control"] == "no-store"
    secret = re.search(r'id="new-token-secret">(cst_[^<]+)<', created.get_data(as_text=True))[1]
    assert client.get("/staff/admin/tokens").get_data(as_text=True).count(secret) == 0

    api = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/contacts/1", headers=headers).status_code == 404  # token accepted
    with app.app_context():
        token_id = db.session.scalar(sa.select(ApiToken.id))
    client.post(f"/staff/admin/tokens/{token_id}/revoke")
    assert api.get("/api/v1/contacts/1", headers=headers).status_code == 401
    with app.app_context():
        try:
            authenticate_token(secret)
            raise AssertionError("a revoked token was accepted")
        except NotAuthenticated:
            pass


def test_audit_log_lists_lookups_newest_first_with_names(app) -> None:
    contact_id = make_contact(app)
    make_user(app, "sales", name="Sara Sälj")
    seller = app.test_client()
    from tests.staff.helpers import sign_in

    with app.app_context():
        sales_id = db.session.scalar(sa.select(StaffUser.id).where(StaffUser.role == "sales"))
    sign_in(seller, app, sales_id)
    seller.get(f"/staff/contacts/{contact_id}")

    page = client_as(app, "admin").get("/staff/admin/audit").get_data(as_text=True)
    assert "contact.read" in page
    assert "Sara Sälj (sales@staff.example)" in page
    assert f'href="/staff/contacts/{contact_id}"' in page


def test_reading_the_audit_log_on_its_page_is_logged_like_any_other_read(app) -> None:
    admin = client_as(app, "admin")
    assert admin.get("/staff/admin/audit").status_code == 200

    with app.app_context():
        entries = db.session.execute(sa.select(AuditEntry.actor, AuditEntry.action)).all()
        db.session.remove()
    assert entries == [("user:admin@staff.example", "audit.read")]
    # The next look shows the first one, newest first.
    page = admin.get("/staff/admin/audit").get_data(as_text=True)
    assert "audit.read" in page and "Test admin (admin@staff.example)" in page


def test_navigation_shows_each_role_only_its_pages(app) -> None:
    nav = {}
    for role in ("sales", "marketing", "admin", "dpo"):
        page = client_as(app, role, email=f"nav-{role}@staff.example").get("/staff/")
        nav[role] = re.findall(r'<li[^>]*><a href="(/staff/[^"]*)"', page.get_data(as_text=True))
    assert nav["sales"] == ["/staff/"]
    assert nav["marketing"] == [
        "/staff/",
        "/staff/imports",
        "/staff/contacts",
        "/staff/campaigns",
        "/staff/segments",
        "/staff/dashboard",
    ]
    assert nav["admin"] == [
        "/staff/",
        "/staff/imports",
        "/staff/contacts",
        "/staff/campaigns",
        "/staff/segments",
        "/staff/dashboard",
        "/staff/admin/users",
        "/staff/admin/tokens",
        "/staff/admin/audit",
        "/staff/admin/retention",
        "/staff/admin/privacy-requests",
        "/staff/admin/webhooks",
        "/staff/dpo",
        "/staff/connectors",
    ]
    # The dpo reads what rights requests and complaints need, no marketing page;
    # the dashboard's counts (opt-outs, purges, request deadlines) are theirs too.
    assert nav["dpo"] == [
        "/staff/",
        "/staff/dashboard",
        "/staff/admin/audit",
        "/staff/admin/privacy-requests",
        "/staff/dpo",
    ]


def test_public_pages_do_not_show_the_staff_navigation(app, client) -> None:
    page = client.get("/no-such-page").get_data(as_text=True)
    assert "Sign out" not in page and "/staff/admin" not in page
    assert '<html lang="en">' in page


def test_an_unexpected_error_page_reads_in_the_staff_members_language(app, monkeypatch) -> None:
    import connectors.services

    def broken() -> None:
        raise RuntimeError("a bug behind the page")

    monkeypatch.setattr(connectors.services, "overview", broken)
    client = client_as(app, "admin")
    english = client.get("/staff/connectors")
    assert english.status_code == 500
    assert "the request did not finish" in english.get_data(as_text=True)
    client.post("/staff/language", data={"lang": "sv", "next": "/staff/"})
    swedish = client.get("/staff/connectors")
    assert swedish.status_code == 500
    page = swedish.get_data(as_text=True)
    assert "Något gick fel hos oss och begäran slutfördes inte." in page
    assert '<p lang="en">' not in page
