"""Staff accounts: one's own password, the TOTP second factor, reset links, token expiry
and the account commands (issue 22, item 7)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pyotp
import pytest
import sqlalchemy as sa

from crm import accounts
from crm.models import AuditEntry
from extensions import db
from kernel.access import create_api_token
from kernel.models import ApiToken, StaffUser
from kernel.timestamps import utcnow
from tests.staff.helpers import PASSWORD, client_as, make_user

NEW_PASSWORD = "a-brand-new-password"


def _sign_in(client: Any, email: str, password: str = PASSWORD) -> Any:
    return client.post("/staff/login", data={"email": email, "password": password})


def _user(app: Any, user_id: int) -> StaffUser:
    with app.app_context():
        user = db.session.get(StaffUser, user_id)
        db.session.expunge(user)
        db.session.remove()
    return user


def _give_factor(app: Any, user_id: int) -> str:
    secret = pyotp.random_base32()
    with app.app_context():
        db.session.get(StaffUser, user_id).totp_secret = secret
        db.session.commit()
        db.session.remove()
    return secret


def _enrolment_of(page: str) -> tuple[str, str]:
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page)
    enrolment = re.search(r'name="enrolment" value="([^"]+)"', page)
    assert secret and enrolment, page
    return secret.group(1), enrolment.group(1)


def _actions(app: Any) -> list[str]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))
        db.session.remove()
    return found


# One's own password -------------------------------------------------------------------


def test_user_changes_own_password_with_the_current_one(app) -> None:
    client = client_as(app, "sales")
    other_browser = app.test_client()
    assert _sign_in(other_browser, "sales@staff.example").status_code == 303

    answer = client.post(
        "/staff/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
        },
    )

    assert answer.status_code == 303
    # This browser stays signed in, and says so; every other session has ended.
    page = client.get("/staff/account")
    assert page.status_code == 200
    assert "Your password is changed" in page.get_data(as_text=True)
    assert other_browser.get("/staff/account").status_code == 302
    assert _sign_in(app.test_client(), "sales@staff.example").status_code == 401
    assert _sign_in(app.test_client(), "sales@staff.example", NEW_PASSWORD).status_code == 303
    assert "staff.user.password_own" in _actions(app)


def test_a_wrong_current_password_changes_nothing(app) -> None:
    client = client_as(app, "sales")
    answer = client.post(
        "/staff/account/password",
        data={
            "current_password": "not-the-password",
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
        },
        follow_redirects=True,
    )
    assert "The current password is wrong." in answer.get_data(as_text=True)
    assert _sign_in(app.test_client(), "sales@staff.example").status_code == 303


def test_the_new_password_must_be_typed_the_same_twice(app) -> None:
    client = client_as(app, "sales")
    answer = client.post(
        "/staff/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD + "x",
        },
        follow_redirects=True,
    )
    assert "The two new passwords differ." in answer.get_data(as_text=True)
    assert _sign_in(app.test_client(), "sales@staff.example").status_code == 303


# The TOTP second factor -----------------------------------------------------------------


def test_user_enrols_a_second_factor_and_then_needs_a_code(app) -> None:
    client = client_as(app, "marketing")
    secret, enrolment = _enrolment_of(
        client.get("/staff/account/two-factor").get_data(as_text=True)
    )

    answer = client.post(
        "/staff/account/two-factor",
        data={"enrolment": enrolment, "code": pyotp.TOTP(secret).now()},
    )
    assert answer.status_code == 303 and answer.location == "/staff/account"
    assert client.get("/staff/account").status_code == 200  # this browser goes on

    fresh = app.test_client()
    answer = _sign_in(fresh, "marketing@staff.example")
    assert answer.status_code == 303 and answer.location == "/staff/login/code"
    # The password alone does not sign in.
    assert fresh.get("/staff/").status_code == 302
    assert fresh.post("/staff/login/code", data={"code": "000000"}).status_code == 401
    # The code enrolment used is spent: the next window's code signs in.
    later = utcnow() + timedelta(seconds=30)
    answer = fresh.post("/staff/login/code", data={"code": pyotp.TOTP(secret).at(later)})
    assert answer.status_code == 303
    assert fresh.get("/staff/").status_code == 200
    assert "staff.user.mfa_enrol" in _actions(app)


def test_a_code_signs_in_once(app) -> None:
    user_id = make_user(app, "sales")
    secret = _give_factor(app, user_id)
    code = pyotp.TOTP(secret).now()

    first = app.test_client()
    _sign_in(first, "sales@staff.example")
    assert first.post("/staff/login/code", data={"code": code}).status_code == 303

    second = app.test_client()
    _sign_in(second, "sales@staff.example")
    assert second.post("/staff/login/code", data={"code": code}).status_code == 401
    assert second.get("/staff/").status_code == 302


def test_enrolment_with_a_wrong_code_stores_nothing(app) -> None:
    client = client_as(app, "sales")
    _secret, enrolment = _enrolment_of(
        client.get("/staff/account/two-factor").get_data(as_text=True)
    )
    answer = client.post(
        "/staff/account/two-factor", data={"enrolment": enrolment, "code": "000000"}
    )
    assert answer.status_code == 303 and answer.location == "/staff/account/two-factor"
    with app.app_context():
        assert db.session.scalar(sa.select(StaffUser.totp_secret)) is None
        db.session.remove()


def test_a_forged_enrolment_is_refused(app) -> None:
    client = client_as(app, "sales")
    secret = pyotp.random_base32()
    answer = client.post(
        "/staff/account/two-factor",
        data={"enrolment": json.dumps({"u": 1, "k": secret}), "code": pyotp.TOTP(secret).now()},
        follow_redirects=True,
    )
    assert "The enrolment has expired" in answer.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(sa.select(StaffUser.totp_secret)) is None
        db.session.remove()


def test_a_role_in_mfa_required_roles_enrols_before_any_page(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "MFA_REQUIRED_ROLES", ["admin"])
    make_user(app, "admin")
    client = app.test_client()

    answer = _sign_in(client, "admin@staff.example")
    assert answer.status_code == 303 and answer.location == "/staff/login/two-factor"
    assert client.get("/staff/admin/users").status_code == 302  # not signed in yet
    page = client.get("/staff/login/two-factor").get_data(as_text=True)
    assert "Your role signs in with a second factor." in page
    secret, enrolment = _enrolment_of(page)

    answer = client.post(
        "/staff/login/two-factor", data={"enrolment": enrolment, "code": pyotp.TOTP(secret).now()}
    )
    assert answer.status_code == 303
    assert client.get("/staff/admin/users").status_code == 200


def test_a_session_without_the_factor_ends_when_the_role_comes_to_need_one(
    app, monkeypatch
) -> None:
    client = client_as(app, "admin")
    assert client.get("/staff/admin/users").status_code == 200
    monkeypatch.setitem(app.config, "MFA_REQUIRED_ROLES", ["admin", "dpo"])
    assert client.get("/staff/admin/users").status_code == 302


def test_the_sign_in_halfway_expires(app, monkeypatch) -> None:
    user_id = make_user(app, "sales")
    secret = _give_factor(app, user_id)
    client = app.test_client()
    _sign_in(client, "sales@staff.example")
    with client.session_transaction() as session:
        session["staff_pending_at"] -= 6 * 60
    answer = client.post("/staff/login/code", data={"code": pyotp.TOTP(secret).now()})
    assert answer.status_code == 303 and answer.location == "/staff/login"
    assert client.get("/staff/").status_code == 302


def test_an_admin_removes_a_lost_factor(app) -> None:
    user_id = make_user(app, "sales")
    _give_factor(app, user_id)
    admin = client_as(app, "admin")
    answer = admin.post(f"/staff/admin/users/{user_id}/two-factor/remove")
    assert answer.status_code == 303
    assert _user(app, user_id).totp_secret is None
    answer = _sign_in(app.test_client(), "sales@staff.example")
    assert answer.status_code == 303 and answer.location == "/staff/"


def test_unknown_role_in_mfa_required_roles_stops_the_start(monkeypatch) -> None:
    from app import create_app
    from tests.conftest import TEST_CONFIG

    monkeypatch.setenv("MFA_REQUIRED_ROLES", "admin,admn")
    with pytest.raises(RuntimeError, match="MFA_REQUIRED_ROLES names unknown roles admn"):
        create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": "sqlite://"})


# Reset links (the email itself: tests/mailing/test_staff_password_reset.py) --------------


def _reset_link(app: Any, user_id: int) -> str:
    with app.test_request_context():
        token = accounts.password_reset_token(db.session.get(StaffUser, user_id))
        db.session.remove()
    return f"/staff/password-reset/{token}"


def _reset(client: Any, link: str, password: str = NEW_PASSWORD) -> Any:
    return client.post(link, data={"password": password, "password_again": password})


def test_a_reset_link_sets_a_password_once(app) -> None:
    user_id = make_user(app, "sales")
    signed_in = app.test_client()
    _sign_in(signed_in, "sales@staff.example")
    link = _reset_link(app, user_id)
    client = app.test_client()

    assert client.get(link).status_code == 200
    answer = _reset(client, link)
    assert answer.status_code == 303 and answer.location == "/staff/login"
    assert _sign_in(app.test_client(), "sales@staff.example", NEW_PASSWORD).status_code == 303
    assert signed_in.get("/staff/").status_code == 302  # every session ended

    again = _reset(app.test_client(), link, "yet-another-password")
    assert again.status_code == 400
    assert "This password-reset link is not valid" in again.get_data(as_text=True)
    assert _sign_in(app.test_client(), "sales@staff.example", NEW_PASSWORD).status_code == 303


def test_a_reset_link_expires(app, monkeypatch) -> None:
    user_id = make_user(app, "sales")
    link = _reset_link(app, user_id)
    monkeypatch.setitem(app.config, "PASSWORD_RESET_MAX_AGE_S", 1)
    import time

    time.sleep(2.1)
    assert _reset(app.test_client(), link).status_code == 400
    assert _sign_in(app.test_client(), "sales@staff.example").status_code == 303


def test_a_reset_link_of_a_deactivated_user_is_refused(app) -> None:
    user_id = make_user(app, "sales")
    link = _reset_link(app, user_id)
    with app.app_context():
        db.session.get(StaffUser, user_id).is_active = False
        db.session.commit()
        db.session.remove()
    assert _reset(app.test_client(), link).status_code == 400


def test_a_tampered_reset_link_is_refused(app) -> None:
    user_id = make_user(app, "sales")
    link = _reset_link(app, user_id)
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    assert _reset(app.test_client(), tampered).status_code == 400
    assert _sign_in(app.test_client(), "sales@staff.example").status_code == 303


def test_a_reset_does_not_skip_the_second_factor(app) -> None:
    user_id = make_user(app, "sales")
    _give_factor(app, user_id)
    link = _reset_link(app, user_id)
    assert _reset(app.test_client(), link).status_code == 303
    answer = _sign_in(app.test_client(), "sales@staff.example", NEW_PASSWORD)
    assert answer.location == "/staff/login/code"


def test_asking_for_a_link_answers_the_same_for_any_address(app) -> None:
    make_user(app, "sales")
    known = app.test_client().post("/staff/password-reset", data={"email": "sales@staff.example"})
    unknown = app.test_client().post("/staff/password-reset", data={"email": "nobody@x.example"})
    assert known.status_code == unknown.status_code == 200

    def without_token(page: str) -> str:
        return re.sub(r'name="csrf_token" value="[^"]*"', "", page)

    assert without_token(known.get_data(as_text=True)) == without_token(
        unknown.get_data(as_text=True)
    )


# API token expiry ----------------------------------------------------------------------


def test_an_expired_token_is_refused(app, client) -> None:
    with app.app_context():
        token, raw = create_api_token("short", "sales", expires_at=utcnow() + timedelta(hours=1))
        token_id = token.id
        db.session.remove()
    headers = {"Authorization": f"Bearer {raw}"}
    assert client.get("/api/v1/policies", headers=headers).status_code == 200
    with app.app_context():
        db.session.get(ApiToken, token_id).expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        db.session.remove()
    answer = client.get("/api/v1/policies", headers=headers)
    assert answer.status_code == 401
    assert answer.json["error"]["code"] == "expired_token"


def test_staff_page_creates_a_token_with_an_expiry(app) -> None:
    admin = client_as(app, "admin")
    answer = admin.post(
        "/staff/admin/tokens", data={"name": "partner", "role": "sales", "expires_in_days": "30"}
    )
    assert answer.status_code == 200
    with app.app_context():
        expires_at = db.session.scalar(
            sa.select(ApiToken.expires_at).where(ApiToken.name == "partner")
        )
        db.session.remove()
    assert expires_at is not None
    assert abs(expires_at - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)


# The command line ------------------------------------------------------------------------


def test_tokens_create_with_expires_in_then_list_and_revoke(app, runner_for) -> None:
    runner = runner_for(app)
    created = runner.invoke(
        args=["tokens", "create", "crm-sync", "--role", "marketing", "--expires-in", "90d"]
    )
    assert created.exit_code == 0, created.output
    raw = created.stdout.strip().splitlines()[-1]
    assert raw.startswith("cst_")

    listed = runner.invoke(args=["tokens", "list", "--json"])
    [row] = json.loads(listed.stdout)
    assert row["name"] == "crm-sync" and row["state"] == "active"
    assert raw not in listed.output
    with app.app_context():
        expires_at = db.session.scalar(sa.select(ApiToken.expires_at))
        db.session.remove()
    assert abs(expires_at - (utcnow() + timedelta(days=90))) < timedelta(minutes=1)

    revoked = runner.invoke(args=["tokens", "revoke", "crm-sync"])
    assert revoked.exit_code == 0, revoked.output
    [row] = json.loads(runner.invoke(args=["tokens", "list", "--json"]).stdout)
    assert row["state"] == "revoked"
    client = app.test_client()
    answer = client.get("/api/v1/policies", headers={"Authorization": f"Bearer {raw}"})
    assert answer.status_code == 401


@pytest.mark.parametrize("value", ["90", "0d", "-1d", "90y", "1d2h", "99999999d"])
def test_tokens_create_refuses_a_bad_expiry(app, runner_for, value: str) -> None:
    answer = runner_for(app).invoke(
        args=["tokens", "create", "t", "--role", "sales", "--expires-in", value]
    )
    assert answer.exit_code == 2
    assert "--expires-in" in answer.output
    assert "Traceback" not in answer.output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0
        db.session.remove()


def test_tokens_revoke_of_an_unknown_name_fails_clearly(app, runner_for) -> None:
    answer = runner_for(app).invoke(args=["tokens", "revoke", "nope"])
    assert answer.exit_code == 1
    assert "No API token named 'nope'." in answer.output


def test_users_list_names_role_state_and_factor(app, runner_for) -> None:
    make_user(app, "admin")
    user_id = make_user(app, "sales")
    _give_factor(app, user_id)
    rows = json.loads(runner_for(app).invoke(args=["users", "list", "--json"]).stdout)
    assert [(r["email"], r["role"], r["active"], r["two_factor"]) for r in rows] == [
        ("admin@staff.example", "admin", True, False),
        ("sales@staff.example", "sales", True, True),
    ]
    text = runner_for(app).invoke(args=["users", "list"]).stdout
    assert "sales@staff.example\tsales\tactive\t2fa" in text


def test_users_set_password_ends_sessions_and_sets_the_password(app, runner_for) -> None:
    make_user(app, "sales")
    browser = app.test_client()
    _sign_in(browser, "sales@staff.example")
    answer = runner_for(app).invoke(
        args=["users", "set-password", "sales@staff.example", "--password", NEW_PASSWORD]
    )
    assert answer.exit_code == 0, answer.output
    assert browser.get("/staff/").status_code == 302
    assert _sign_in(app.test_client(), "sales@staff.example", NEW_PASSWORD).status_code == 303


def test_users_remove_two_factor(app, runner_for) -> None:
    user_id = make_user(app, "sales")
    _give_factor(app, user_id)
    answer = runner_for(app).invoke(args=["users", "remove-two-factor", "sales@staff.example"])
    assert answer.exit_code == 0, answer.output
    assert _user(app, user_id).totp_secret is None


# Throttling ------------------------------------------------------------------------------


@pytest.fixture
def limited_app(app, database_url: str, monkeypatch) -> Any:
    """Rate limits on, at their production settings (the suite runs with them off)."""
    from tests.staff.test_sign_in import _limited_app

    yield from _limited_app(database_url, monkeypatch)


def test_wrong_codes_are_throttled_per_account(limited_app) -> None:
    user_id = make_user(limited_app, "sales")
    secret = _give_factor(limited_app, user_id)
    client = limited_app.test_client()
    _sign_in(client, "sales@staff.example")
    statuses = [
        client.post("/staff/login/code", data={"code": "000000"}).status_code for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    # Throttled, even the right code waits.
    answer = client.post("/staff/login/code", data={"code": pyotp.TOTP(secret).now()})
    assert answer.status_code == 429
    assert client.get("/staff/").status_code == 302


def test_reset_requests_are_throttled_per_address_known_or_not(limited_app) -> None:
    make_user(limited_app, "sales")
    for address in ("sales@staff.example", "nobody@staff.example"):
        statuses = [
            limited_app.test_client()
            .post("/staff/password-reset", data={"email": address})
            .status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
