"""Staff pages of one's own account: the password, the second factor, reset links.

The pages a signed-in user reaches are guarded by ``staff_requires`` like any
staff page. Three are reached before a full sign-in and decide who they serve
through ``kernel.access`` as well: the second-factor step and a forced
enrolment serve the sign-in halfway (``pending_staff_user``), the reset pages
serve whoever holds a valid link.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, current_app, flash, g, redirect, render_template, request, session
from flask_limiter.util import get_remote_address
from marshmallow import ValidationError

from crm import accounts
from crm.forms import (
    CodeForm,
    EnrolForm,
    ForgotPasswordForm,
    OwnPasswordForm,
    ResetPasswordForm,
    TimeZoneForm,
)
from extensions import db, limiter
from kernel import access, i18n
from kernel.addresses import normalise_email
from kernel.errors import InvalidInput
from kernel.models import StaffUser
from kernel.pages import FormSchema, run_form, safe_next, see_other, staff_blueprint
from kernel.timestamps import time_zones

_ = i18n.translate

bp = staff_blueprint("accounts", __name__)

THROTTLED = "Too many attempts. Wait a few minutes and try again."

# A request for a reset link is answered no sooner than this, whether or not
# the address has an account: the time taken must not tell.
FORGOT_MIN_SECONDS = 0.3


def _ip_limit() -> str:
    return current_app.config.get("STAFF_SIGN_IN_LIMIT_PER_IP", "30 per minute;200 per hour")


def _code_limit() -> str:
    return current_app.config.get("STAFF_CODE_LIMIT_PER_ACCOUNT", "5 per 15 minutes")


def _reset_limit() -> str:
    return current_app.config.get("STAFF_RESET_LIMIT_PER_ADDRESS", "3 per hour")


def _reset_address_key() -> str:
    """Requests for a link count per address asked for, known or not (so the
    count tells nothing): nobody floods a colleague's mailbox with links."""
    raw = request.form.get("email", "")
    try:
        address = normalise_email(raw)
    except InvalidInput:
        address = raw.strip().lower()[:320]
    return f"staff-reset:{address}"


def _pending_key() -> str:
    """Wrong codes count per account halfway signed in: a million codes are not
    guessed five at a time, and the owner's own sign-in is not what is limited."""
    value = session.get(access.PENDING_USER)
    return f"staff-code:{value if isinstance(value, int) else get_remote_address()}"


# One's own account ----------------------------------------------------------------


@bp.get("/account")
@access.staff_requires("account.manage")
def account() -> Any:
    return render_template("staff/account.html", zones=sorted(time_zones()))


@bp.post("/account/time-zone")
@access.staff_requires("account.manage")
def set_time_zone() -> Any:
    """Choose the zone one's pages show times in."""
    run_form(
        TimeZoneForm(),
        lambda d: accounts.set_own_time_zone(g.actor.id, d["time_zone"]),
        "Your time zone is saved.",
    )
    return see_other("accounts.account")


@bp.post("/account/password")
@access.staff_requires("account.manage")
def change_password() -> Any:
    """Change one's own password; every other session ends, this one goes on."""
    user = run_form(
        OwnPasswordForm(),
        lambda d: accounts.change_own_password(
            g.actor.id, d["current_password"], d["new_password"]
        ),
        None,
    )
    if user is not None:
        # This browser goes on, as signed in as before (with its second factor).
        # The new session starts empty, so the message is flashed into it.
        passed = session.get(access.SESSION_MFA) is True
        access.start_staff_session(user, second_factor=passed)
        flash(_("Your password is changed; your other sessions have ended."), "success")
    return see_other("accounts.account")


@bp.get("/account/two-factor")
@access.staff_requires("account.manage")
def enrol() -> Any:
    """Show a new secret (and its otpauth URI) to add to an authenticator app."""
    user = access.current_staff_user()
    assert user is not None  # staff_requires let a signed-in user through
    return _enrol_page(user, "accounts.confirm_enrolment")


@bp.post("/account/two-factor")
@access.staff_requires("account.manage")
def confirm_enrolment() -> Any:
    """Keep the secret once a code from the authenticator proves it was scanned."""
    enrolled = run_form(
        EnrolForm(),
        lambda d: accounts.enrol_second_factor(g.actor.id, d["enrolment"], d["code"]),
        None,
    )
    if enrolled is None:
        return see_other("accounts.enrol")
    # Enrolling ended every session; this browser goes on, with the factor.
    access.start_staff_session(enrolled, second_factor=True)
    flash(_("Two-factor sign-in is on."), "success")
    return see_other("accounts.account")


def _enrol_page(user: StaffUser, target: str) -> Any:
    return render_template(
        "staff/enrol.html",
        enrolment=accounts.new_enrolment(user),
        target=target,
        enrolled=user.has_second_factor,
    )


def _owes_enrolment() -> StaffUser | None:
    """The user halfway through a sign-in whose role needs a factor they lack."""
    pending = access.pending_staff_user()
    if pending is not None and not pending.has_second_factor and access.is_mfa_required(pending):
        return pending
    return None


@bp.route("/login/two-factor", methods=["GET", "POST"])
@limiter.limit(_ip_limit, methods=["POST"], error_message=THROTTLED)
def enrol_at_sign_in() -> Any:
    """A role in MFA_REQUIRED_ROLES without a second factor: enrol before any page."""
    user = _owes_enrolment()
    if user is None:
        flash(_("Please sign in to continue."), "info")
        return see_other("staff.login")
    if request.method == "GET":
        return _enrol_page(user, "accounts.enrol_at_sign_in")
    enrolled = run_form(
        EnrolForm(),
        lambda d: accounts.enrol_second_factor(user.id, d["enrolment"], d["code"]),
        None,
    )
    if enrolled is None:
        return see_other("accounts.enrol_at_sign_in")
    target = safe_next(access.finish_sign_in(enrolled))
    flash(_("Two-factor sign-in is on."), "success")
    return redirect(target, 303)


# The second step of a sign-in ----------------------------------------------------------


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit(_ip_limit, methods=["POST"], error_message=THROTTLED)
@limiter.limit(
    _code_limit,
    key_func=_pending_key,
    methods=["POST"],
    error_message=THROTTLED,
    deduct_when=lambda response: response.status_code != 303,
)
def second_factor() -> Any:
    """Ask the code of the authenticator after a right password."""
    user = access.pending_staff_user()
    if user is None or not user.has_second_factor:
        flash(_("Please sign in to continue."), "info")
        return see_other("staff.login")
    if request.method == "GET":
        return render_template("staff/second_factor.html")
    try:
        data = CodeForm().load(request.form.to_dict())
    except ValidationError:
        data = None
    if data is None or not accounts.verify_second_factor(user.id, data["code"]):
        error = _("The code is wrong or was already used. Try the next code.")
        return render_template("staff/second_factor.html", error=error), 401
    return redirect(safe_next(access.finish_sign_in(user)), 303)


# Reset links ------------------------------------------------------------------------------


@bp.post("/admin/users/<int:user_id>/password-reset")
@access.staff_requires("users.manage")
def send_reset(user_id: int) -> Any:
    """An admin mails the user a one-time link to choose a new password."""
    run_form(
        FormSchema(),
        lambda d: accounts.send_password_reset(g.actor, user_id),
        "A password-reset link is on its way to the user.",
    )
    return see_other("staff.users")


@bp.post("/admin/users/<int:user_id>/two-factor/remove")
@access.staff_requires("users.manage")
def remove_factor(user_id: int) -> Any:
    """Forget a user's second factor (a lost phone); they enrol again."""
    run_form(
        FormSchema(),
        lambda d: accounts.remove_second_factor(g.actor, user_id),
        "The user's second factor is removed; their sessions have ended.",
    )
    return see_other("staff.users")


@bp.route("/password-reset", methods=["GET", "POST"])
@limiter.limit(_ip_limit, methods=["POST"], error_message=THROTTLED)
@limiter.limit(_reset_limit, key_func=_reset_address_key, methods=["POST"], error_message=THROTTLED)
def forgot_password() -> Any:
    """Ask for a reset link; the answer is the same whether the address has an account."""
    if request.method == "GET":
        return render_template("staff/forgot_password.html")
    arrived = time.monotonic()
    try:
        data = ForgotPasswordForm().load(request.form.to_dict())
    except ValidationError:
        return render_template(
            "staff/forgot_password.html", error=_("Enter the email of your staff account.")
        ), 400
    accounts.request_password_reset(data["email"])
    time.sleep(max(0.0, arrived + FORGOT_MIN_SECONDS - time.monotonic()))
    return render_template("staff/forgot_password.html", sent=True)


_LINK_LENGTH = 400


def _user_for_link(token: str) -> StaffUser:
    if len(token) > _LINK_LENGTH:
        raise accounts.LinkNotValid()
    return accounts.user_for_reset(token)


@bp.route("/password-reset/<token>", methods=["GET", "POST"])
@limiter.limit(_ip_limit, methods=["POST"], error_message=THROTTLED)
def reset_password(token: str) -> Any:
    """Choose a new password from a link; then sign in with it (and the second factor)."""
    try:
        _user_for_link(token)
    except accounts.LinkNotValid as exc:
        return render_template("staff/reset_password.html", invalid=exc.message), 400
    if request.method == "GET":
        return render_template("staff/reset_password.html", token=token)
    try:
        data = ResetPasswordForm().load(request.form.to_dict())
        accounts.reset_password(token, data["password"])
    except ValidationError as exc:
        db.session.rollback()
        error = " ".join(str(m) for messages in exc.messages.values() for m in messages)  # type: ignore[union-attr]
        return render_template("staff/reset_password.html", token=token, error=error), 400
    except InvalidInput as exc:
        db.session.rollback()
        return render_template("staff/reset_password.html", token=token, error=exc.message), 400
    access.end_staff_session()
    flash(_("Your new password is set. Sign in with it."), "success")
    return see_other("staff.login")


def register(app: Flask) -> None:
    app.register_blueprint(bp)
