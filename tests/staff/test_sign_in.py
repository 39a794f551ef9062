"""Signing in and out: sessions, throttling, CSRF and the guard."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa

from app import create_app
from crm.models import AuditEntry
from extensions import db, limiter
from kernel.models import StaffUser
from tests.conftest import TEST_CONFIG
from tests.staff.helpers import PASSWORD, client_as, make_user


def sign_in_form(
    client: Any, email: str, password: str = PASSWORD, *, client_ip: str | None = None, **extra: str
) -> Any:
    """Post the sign-in form, from ``client_ip`` when given (the connection's address)."""
    environ = {"REMOTE_ADDR": client_ip} if client_ip else {}
    return client.post(
        "/staff/login", data={"email": email, "password": password, **extra}, environ_base=environ
    )


def test_anonymous_visitor_is_sent_to_sign_in_and_back_after(app, client) -> None:
    make_user(app, "sales")

    response = client.get("/staff/contacts/1")
    assert response.status_code == 302
    assert response.location == "/staff/login?next=/staff/contacts/1"

    response = sign_in_form(client, "Sales@Staff.example", next="/staff/?q=anna")
    assert response.status_code == 303
    assert response.location == "/staff/?q=anna"
    page = client.get("/staff/").get_data(as_text=True)
    assert "Signed in as" in page and "Test sales" in page


def test_wrong_password_and_unknown_user_get_the_same_answer(app, client) -> None:
    make_user(app, "sales")
    wrong = sign_in_form(client, "sales@staff.example", "not-the-password")
    unknown = sign_in_form(client, "nobody@staff.example")
    assert wrong.status_code == unknown.status_code == 401
    message = "The email or password is wrong, or the account is not active."
    assert message in wrong.get_data(as_text=True)
    assert message in unknown.get_data(as_text=True)
    assert client.get("/staff/").status_code == 302


# Where ``next`` must never lead: each of these is, or is read by some browser or
# some later decoding as, another host. Raw control characters and whitespace
# are what browsers strip or refuse; backslashes they read as slashes; percent
# forms are what a server or proxy may decode on the next hop.
NASTY_NEXT = (
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "\x00//evil.example",
    "/\x0b/evil.example",
    "/\x7f/evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "//evil.example",
    "///evil.example",
    "//evil.example/staff/",
    "/ /evil.example",
    "/%2F/evil.example",
    "/%2f/evil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "/%252F/evil.example",
    "%2F%2Fevil.example",
    "https:evil.example",
    "https://evil.example/",
    "HTTPS://evil.example/",
    "javascript:alert(1)",
    "evil.example",
    "/\u00a0/evil.example",
    "/\u2028/evil.example",
    "/\u3000/evil.example",
    "/\u200b/evil.example",
    "/\ufeff/evil.example",
    "\u3000//evil.example",
)
SITE = "http://localhost/staff/login"


def where_a_browser_goes(location: str) -> tuple[str, str]:
    """The (host, path) a browser reaches by following ``location`` from our page.

    The steps of the WHATWG URL parser that matter for a redirect, then the
    reference resolved against the page: leading and trailing C0 controls and
    spaces are stripped, ASCII tab and newlines removed anywhere, and in an
    http(s) URL a backslash is a slash.
    """
    url = location.strip("".join(map(chr, range(0x21))))
    url = re.sub("[\t\n\r]", "", url).replace("\\", "/")
    parts = urlsplit(urljoin(SITE, url))
    return parts.netloc, parts.path


def _next_follower(app: Any, route: str) -> Callable[[str], Any]:
    """Posts the form of ``route`` with a ``next``, as a signed-in browser would."""
    if route == "login":
        make_user(app, "sales")
        return lambda target: sign_in_form(app.test_client(), "sales@staff.example", next=target)
    client = client_as(app, "sales")
    lang = "sv" if route == "language" else "not-a-language"  # both branches of the view
    return lambda target: client.post("/staff/language", data={"lang": lang, "next": target})


ROUTES_WITH_NEXT = ["login", "language", "language-refused"]


@pytest.mark.parametrize("route", ROUTES_WITH_NEXT)
def test_next_never_leads_a_browser_off_the_site(app, route) -> None:
    follow = _next_follower(app, route)
    wrong = {}
    for target in NASTY_NEXT:
        response = follow(target)
        location = response.headers.get("Location")
        # A control character is refused before any view (kernel.inputs): no
        # redirect at all, which takes no browser anywhere.
        if response.status_code == 422 and location is None:
            continue
        # The staff home, nothing of the target kept, and where a browser goes.
        home = response.status_code == 303 and location == "/staff/"
        if not home or where_a_browser_goes(location) != ("localhost", "/staff/"):
            wrong[target] = (response.status_code, location)
    assert wrong == {}


@pytest.mark.parametrize("route", ROUTES_WITH_NEXT[:2])
def test_next_is_followed_to_a_path_on_this_site(app, route) -> None:
    follow = _next_follower(app, route)
    for target in (
        "/staff/?q=anna",
        "/staff/contacts/12",
        "/staff/?q=%C3%85sa+kund%40kund.se",
        "/staff/imports/3?after_row=200",
        "/staff/admin/audit?before=5",
    ):
        response = follow(target)
        assert (response.status_code, response.headers["Location"]) == (303, target)
        assert where_a_browser_goes(target)[0] == "localhost"


def test_sign_out_ends_the_session_and_is_post_only(app) -> None:
    client = client_as(app, "sales")
    assert client.get("/staff/").status_code == 200
    assert client.get("/staff/logout").status_code == 405
    response = client.post("/staff/logout")
    assert response.status_code == 303
    assert client.get("/staff/").status_code == 302


def test_successful_sign_in_is_audited(app, client) -> None:
    make_user(app, "admin")
    sign_in_form(client, "admin@staff.example")
    with app.app_context():
        actions = db.session.scalars(sa.select(AuditEntry.action)).all()
    assert actions == ["staff.sign_in"]


def test_deactivated_user_is_signed_out_at_once(app) -> None:
    client = client_as(app, "sales")
    with app.app_context():
        db.session.execute(sa.update(StaffUser).values(is_active=False))
        db.session.commit()
    assert client.get("/staff/").status_code == 302
    assert sign_in_form(app.test_client(), "sales@staff.example").status_code == 401


def test_role_change_applies_on_the_next_request(app) -> None:
    client = client_as(app, "admin")
    assert client.get("/staff/admin/users").status_code == 200
    with app.app_context():
        db.session.execute(sa.update(StaffUser).values(role="sales"))
        db.session.commit()
    assert client.get("/staff/admin/users").status_code == 403


# A session is a signed cookie: whoever holds a copy (a shared computer, a stolen
# laptop, a proxy log) holds the session. These copy it before the event that
# must end it, then replay the copy from a fresh browser.


def _signed_in_cookie(app: Any, email: str, password: str = PASSWORD) -> str:
    """Sign in through the form, as a browser does, and copy the session cookie."""
    client = app.test_client()
    assert sign_in_form(client, email, password).status_code == 303
    return client.get_cookie("session").value


def _replay(app: Any, cookie: str, path: str = "/staff/") -> Any:
    client = app.test_client()
    client.set_cookie("session", cookie)
    return client.get(path)


def _refused(response: Any) -> bool:
    return response.status_code == 302 and response.location.startswith("/staff/login")


def test_a_session_cookie_copied_before_sign_out_is_refused_after(app) -> None:
    make_user(app, "sales")
    client = app.test_client()
    assert sign_in_form(client, "sales@staff.example").status_code == 303
    copied = client.get_cookie("session").value
    other_device = _signed_in_cookie(app, "sales@staff.example")
    assert _replay(app, copied).status_code == 200

    assert client.post("/staff/logout").status_code == 303

    assert _refused(_replay(app, copied))
    assert _refused(_replay(app, other_device))  # every session of the user ends
    assert _refused(client.get("/staff/"))
    # Signing in again works, and that new session is the only one.
    fresh = _signed_in_cookie(app, "sales@staff.example")
    assert _replay(app, fresh).status_code == 200
    assert _refused(_replay(app, copied))


def _change_role(app: Any, admin: Any, user_id: int, email: str, role: str, how: str) -> None:
    if how == "staff page":
        admin.post(f"/staff/admin/users/{user_id}/role", data={"role": role})
    else:
        result = app.test_cli_runner().invoke(args=["users", "set-role", email, "--role", role])
        assert result.exit_code == 0, result.output


def _set_active(app: Any, admin: Any, user_id: int, email: str, active: bool, how: str) -> None:
    if how == "staff page":
        admin.post(f"/staff/admin/users/{user_id}/active", data={"active": str(active).lower()})
    else:
        command = "activate" if active else "deactivate"
        result = app.test_cli_runner().invoke(args=["users", command, email])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("how", ["staff page", "cli"])
@pytest.mark.parametrize(("before", "after"), [("admin", "sales"), ("sales", "marketing")])
def test_a_role_change_ends_every_session_of_the_user(app, how, before, after) -> None:
    admin = client_as(app, "admin", email="boss@staff.example")
    user_id = make_user(app, before, email="moved@staff.example")
    copied = _signed_in_cookie(app, "moved@staff.example")
    assert _replay(app, copied).status_code == 200

    _change_role(app, admin, user_id, "moved@staff.example", after, how)

    with app.app_context():
        assert db.session.get(StaffUser, user_id).role == after
        db.session.remove()
    # Not "the old session with the new role": no session at all.
    assert _refused(_replay(app, copied))
    assert admin.get("/staff/admin/users").status_code == 200  # the admin's own goes on
    assert _replay(app, _signed_in_cookie(app, "moved@staff.example")).status_code == 200


@pytest.mark.parametrize("how", ["staff page", "cli"])
def test_deactivation_ends_every_session_even_after_reactivation(app, how) -> None:
    admin = client_as(app, "admin", email="boss@staff.example")
    user_id = make_user(app, "sales", email="leaver@staff.example")
    copied = _signed_in_cookie(app, "leaver@staff.example")

    _set_active(app, admin, user_id, "leaver@staff.example", False, how)
    assert _refused(_replay(app, copied))
    _set_active(app, admin, user_id, "leaver@staff.example", True, how)

    # Coming back means signing in again; a cookie from before stays dead.
    assert _refused(_replay(app, copied))
    assert _replay(app, _signed_in_cookie(app, "leaver@staff.example")).status_code == 200


def test_a_new_password_ends_every_session_of_the_user(app) -> None:
    make_user(app, "sales")
    copied = _signed_in_cookie(app, "sales@staff.example")
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", "sales@staff.example", "--password", "a-new-password-2"]
    )
    assert result.exit_code == 0, result.output

    assert _refused(_replay(app, copied))
    assert sign_in_form(app.test_client(), "sales@staff.example").status_code == 401
    fresh = _signed_in_cookie(app, "sales@staff.example", "a-new-password-2")
    assert _replay(app, fresh).status_code == 200


def test_a_new_password_must_be_long_enough(app) -> None:
    make_user(app, "sales")
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", "sales@staff.example", "--password", "short"]
    )
    assert result.exit_code != 0 and "at least 10 characters" in result.output
    assert sign_in_form(app.test_client(), "sales@staff.example").status_code == 303


def test_session_expires_after_the_configured_age(app, monkeypatch) -> None:
    client = client_as(app, "sales")
    monkeypatch.setitem(app.config, "STAFF_SESSION_MAX_AGE", 0)
    assert client.get("/staff/").status_code == 302


def test_session_cookie_is_secure_http_only_and_same_site(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "SESSION_COOKIE_SECURE", True)
    make_user(app, "sales")
    response = sign_in_form(app.test_client(), "sales@staff.example")
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_staff_pages_are_never_cached_or_framed(app) -> None:
    response = client_as(app, "sales").get("/staff/")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_a_form_posted_without_the_csrf_token_is_refused(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    make_user(app, "sales")
    client = app.test_client()

    refused = sign_in_form(client, "sales@staff.example")
    assert refused.status_code == 400
    assert "CSRF" in refused.get_data(as_text=True)

    page = client.get("/staff/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    accepted = sign_in_form(client, "sales@staff.example", csrf_token=token)
    assert accepted.status_code == 303


def _limited_app(database_url: str, monkeypatch: Any, **config: Any) -> Iterator[Any]:
    """The app with rate limits on (the suite runs with them off). The limiter is
    one object: its switch is put back afterwards."""
    monkeypatch.setattr(limiter, "enabled", limiter.enabled)
    application = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "RATELIMIT_ENABLED": True,
            **config,
        }
    )
    limiter.reset()
    yield application
    limiter.reset()
    with application.app_context():
        db.session.remove()


# Each asks for ``app`` too: it builds the schema and empties the tables after the test.
@pytest.fixture
def throttled_app(app, database_url: str, monkeypatch) -> Iterator[Any]:
    """Rate limits on, and lower than in production so that tests are short."""
    yield from _limited_app(
        database_url,
        monkeypatch,
        STAFF_SIGN_IN_LIMIT_PER_ACCOUNT="3 per 15 minutes",
        STAFF_SIGN_IN_LIMIT_PER_IP="6 per minute",
    )


@pytest.fixture
def production_limits_app(app, database_url: str, monkeypatch) -> Iterator[Any]:
    """Rate limits on, at their production settings."""
    yield from _limited_app(database_url, monkeypatch)


def test_failed_sign_ins_are_throttled_per_account(throttled_app) -> None:
    make_user(throttled_app, "sales")
    client = throttled_app.test_client()
    for _ in range(3):
        assert sign_in_form(client, "sales@staff.example", "wrong-password").status_code == 401

    blocked = sign_in_form(client, "sales@staff.example")  # even the right password
    assert blocked.status_code == 429
    assert "Too many sign-in attempts" in blocked.get_data(as_text=True)
    # Another account from the same address is not locked by this one.
    make_user(throttled_app, "admin")
    assert sign_in_form(client, "admin@staff.example").status_code == 303


def test_failures_from_one_address_do_not_lock_the_owner_out_from_another(
    production_limits_app,
) -> None:
    """Anyone who knows a staff address must not be able to lock its owner out."""
    app = production_limits_app
    make_user(app, "sales")
    attacker, owner = app.test_client(), app.test_client()
    statuses = [
        sign_in_form(
            attacker, "sales@staff.example", f"guess-{n}", client_ip="203.0.113.9"
        ).status_code
        for n in range(12)
    ]
    # The guesser is still stopped after five, the production limit ...
    assert statuses == [401] * 5 + [429] * 7
    assert sign_in_form(attacker, "sales@staff.example", client_ip="203.0.113.9").status_code == 429
    # ... and the owner, elsewhere, signs in with the right password at once.
    assert sign_in_form(owner, "sales@staff.example", client_ip="198.51.100.7").status_code == 303
    assert owner.get("/staff/").status_code == 200
    # A second guesser starts from zero and is stopped after five too.
    other = [
        sign_in_form(attacker, "sales@staff.example", "guess", client_ip="192.0.2.44").status_code
        for _ in range(6)
    ]
    assert other == [401] * 5 + [429]


def test_sign_ins_are_throttled_per_address(throttled_app) -> None:
    client = throttled_app.test_client()
    statuses = [
        sign_in_form(client, f"user{n}@staff.example", "wrong-password").status_code
        for n in range(7)
    ]
    assert statuses == [401] * 6 + [429]
