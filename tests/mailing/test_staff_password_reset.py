"""The password-reset email to a staff user: sent by a worker through SMTP, its
link sets a password once (issue 22, item 7)."""

from __future__ import annotations

from typing import Any

from tests.mailing.conftest import link, text_of
from tests.staff.helpers import PASSWORD, client_as, make_user

NEW_PASSWORD = "a-brand-new-password"


def _sign_in(app: Any, password: str) -> int:
    answer = app.test_client().post(
        "/staff/login", data={"email": "sales@staff.example", "password": password}
    )
    return int(answer.status_code)


def _set(app: Any, path: str, password: str) -> int:
    answer = app.test_client().post(path, data={"password": password, "password_again": password})
    return int(answer.status_code)


def test_admin_mails_a_reset_link_that_works_once(app, smtp, mail_worker) -> None:
    user_id = make_user(app, "sales", name="Sam Sales")
    admin = client_as(app, "admin")

    assert admin.post(f"/staff/admin/users/{user_id}/password-reset").status_code == 303
    mail_worker.drain()

    [message] = smtp.to("sales@staff.example")
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Sam Sales" in str(message["To"])
    path = link(message, "/staff/password-reset/")
    # The link names no address: it holds an opaque id and a signature.
    assert "staff.example" not in path and "sales" not in path
    assert "The link works once, for 60 minutes." in " ".join(text_of(message).split())

    assert _set(app, path, NEW_PASSWORD) == 303
    assert _sign_in(app, PASSWORD) == 401
    assert _sign_in(app, NEW_PASSWORD) == 303
    assert _set(app, path, "yet-another-password") == 400
    assert _sign_in(app, NEW_PASSWORD) == 303


def test_the_sign_in_page_mails_a_link_only_to_an_active_account(app, smtp, mail_worker) -> None:
    make_user(app, "sales")
    gone = make_user(app, "marketing", email="gone@staff.example")
    client_as(app, "admin").post(f"/staff/admin/users/{gone}/active", data={"active": "false"})
    for address in ("sales@staff.example", "gone@staff.example", "nobody@staff.example"):
        answer = app.test_client().post("/staff/password-reset", data={"email": address})
        assert answer.status_code == 200
    mail_worker.drain()

    assert [m["To"].addresses[0].addr_spec for m in smtp.messages] == ["sales@staff.example"]
    assert _set(app, link(smtp.messages[0], "/staff/password-reset/"), NEW_PASSWORD) == 303
