"""Staff pages of the crm layer: sign-in, language, users, API tokens, the audit log,
the retention preview and runs. Built with ``kernel.pages`` like every staff page."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from flask import (
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
)
from flask_limiter.util import get_remote_address
from marshmallow import ValidationError

from crm import audit_log as audit_log_service
from crm import retention, staff
from crm.forms import (
    ROLES,
    ActiveForm,
    AuditQuery,
    ChecklistDoneForm,
    FormSchema,
    LanguageForm,
    RoleForm,
    SignInForm,
    TokenCreateForm,
    UserCreateForm,
)
from extensions import limiter
from kernel import i18n
from kernel.access import (
    begin_sign_in,
    current_staff_user,
    end_staff_session,
    staff_requires,
)
from kernel.addresses import normalise_email
from kernel.errors import InvalidInput
from kernel.pages import add_staff_page, run_form, safe_next, see_other, staff_blueprint
from kernel.timestamps import utcnow

_ = i18n.translate


bp = staff_blueprint("staff", __name__)

# Sign-in ------------------------------------------------------------------------


def _ip_limit() -> str:
    return current_app.config.get("STAFF_SIGN_IN_LIMIT_PER_IP", "30 per minute;200 per hour")


def _account_limit() -> str:
    return current_app.config.get("STAFF_SIGN_IN_LIMIT_PER_ACCOUNT", "5 per 15 minutes")


def _account_key() -> str:
    """Failed sign-ins count per account *and* client address.

    Counted per account alone, anyone who knows a staff address could lock its
    owner out by failing five times. Per pair, a guesser is stopped after five
    failures while the owner, from their own address, still signs in; guessing
    from many addresses is bounded by the per-address limit of each.
    """
    raw = request.form.get("email", "")
    try:
        account = normalise_email(raw)
    except InvalidInput:
        account = raw.strip().lower()[:320]
    return f"staff-account:{account}|{get_remote_address()}"


THROTTLED = "Too many sign-in attempts. Wait a few minutes and try again."


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_ip_limit, methods=["POST"], error_message=THROTTLED)
@limiter.limit(
    _account_limit,
    key_func=_account_key,
    methods=["POST"],
    error_message=THROTTLED,
    # Only failures count against an account: its owner signing in often is fine.
    deduct_when=lambda response: response.status_code != 303,
)
def login() -> Any:
    """Sign in; throttled per client address, and failures per account and address."""
    next_target = request.values.get("next")
    if request.method == "GET":
        message = _("Please sign in to continue.") if next_target else None
        return render_template("staff/login.html", next=next_target, notice=message)
    try:
        data = SignInForm().load(request.form.to_dict())
    except ValidationError:
        data = None
    user = staff.sign_in(data["email"], data["password"]) if data else None
    if user is None:
        error = _("The email or password is wrong, or the account is not active.")
        return render_template("staff/login.html", next=next_target, error=error), 401
    target = data["next"] if data else None
    owed = begin_sign_in(user, target)
    if owed == "code":
        return see_other("accounts.second_factor")
    if owed == "enrol":
        return see_other("accounts.enrol_at_sign_in")
    return redirect(safe_next(target), 303)


@bp.post("/logout")
def logout() -> Any:
    user = current_staff_user()
    if user is not None:
        staff.sign_out(user)
    end_staff_session()
    flash(_("You are signed out."), "success")
    return see_other("staff.login")


@bp.post("/language")
def set_language() -> Any:
    """Switch the staff pages between Swedish and English (kept in the session)."""
    try:
        data = LanguageForm().load(request.form.to_dict())
    except ValidationError:
        return redirect(safe_next(request.form.get("next")), 303)
    session[i18n.SESSION_KEY] = data["lang"]
    return redirect(safe_next(data["next"]), 303)


# Admin: users ----------------------------------------------------------------------


@bp.get("/admin/users")
@staff_requires("users.manage")
def users() -> Any:
    return render_template("staff/users.html", users=staff.list_users(), roles=ROLES)


@bp.post("/admin/users")
@staff_requires("users.manage")
def create_user() -> Any:
    run_form(
        UserCreateForm(),
        lambda d: staff.create_user(g.actor, d["email"], d["password"], d["role"], d["name"]),
        "User created.",
    )
    return see_other("staff.users")


@bp.post("/admin/users/<int:user_id>/role")
@staff_requires("users.manage")
def change_role(user_id: int) -> Any:
    run_form(RoleForm(), lambda d: staff.set_role(g.actor, user_id, d["role"]), "User updated.")
    return see_other("staff.users")


@bp.post("/admin/users/<int:user_id>/active")
@staff_requires("users.manage")
def change_active(user_id: int) -> Any:
    run_form(
        ActiveForm(), lambda d: staff.set_active(g.actor, user_id, d["active"]), "User updated."
    )
    return see_other("staff.users")


# Admin: API tokens -------------------------------------------------------------------


@bp.get("/admin/tokens")
@staff_requires("tokens.manage")
def tokens() -> Any:
    return render_template("staff/tokens.html", tokens=staff.list_tokens(), roles=ROLES)


@bp.post("/admin/tokens")
@staff_requires("tokens.manage")
def create_token() -> Any:
    created = run_form(
        TokenCreateForm(),
        lambda d: staff.create_token(
            g.actor,
            d["name"],
            d["role"],
            timedelta(days=d["expires_in_days"]) if d["expires_in_days"] else None,
        ),
        None,
    )
    if created is None:
        return see_other("staff.tokens")
    # Shown once, in this response only (never in a redirect, a flash or a log).
    token, secret = created
    return render_template(
        "staff/tokens.html", tokens=staff.list_tokens(), roles=ROLES, new_token=token, secret=secret
    )


@bp.post("/admin/tokens/<int:token_id>/revoke")
@staff_requires("tokens.manage")
def revoke_token(token_id: int) -> Any:
    run_form(FormSchema(), lambda d: staff.revoke_token(g.actor, token_id), "Token revoked.")
    return see_other("staff.tokens")


# Admin: audit log ---------------------------------------------------------------------


@bp.get("/admin/audit")
@staff_requires("audit.read")
def audit_log() -> Any:
    """The log filtered by who, action, contact and days; a signed cursor pages it."""
    query = _audit_query()
    page = audit_log_service.audit_page(g.actor, _audit_filter(query), query["before"])
    names = staff.display_names(e.actor for e in page.entries)
    return render_template(
        "staff/audit.html",
        page=page,
        names=names,
        query=query,
        filter_args=_filter_args(),
    )


@bp.get("/admin/audit.csv")
@staff_requires("audit.export")
def export_audit_log() -> Any:
    """The filtered log as a CSV file, streamed; the export itself is logged."""
    query = _audit_query()
    lines = audit_log_service.export_audit(g.actor, _audit_filter(query), query["delimiter"])
    # The first line is taken here, so the export's audit entry is written
    # (and a failure answered) before the response starts.
    first = next(lines)
    filename = audit_log_service.export_filename(utcnow())
    return Response(
        stream_with_context(itertools.chain([first], lines)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _audit_query() -> dict[str, Any]:
    try:
        return AuditQuery().load(request.args.to_dict())
    except ValidationError as exc:
        raise InvalidInput("The page is not valid.", fields=exc.messages) from exc  # type: ignore[arg-type]


def _audit_filter(query: dict[str, Any]) -> audit_log_service.AuditFilter:
    return audit_log_service.AuditFilter(
        who=query["who"],
        action=query["action"],
        contact_id=query["contact"],
        on_or_after=query["on_or_after"],
        on_or_before=query["on_or_before"],
    )


_FILTER_ARGS = ("who", "action", "contact", "from", "to")


def _filter_args() -> dict[str, str]:
    """The filters as the request gave them, for the next page's and the export's links."""
    return {k: v for k, v in request.args.items() if k in _FILTER_ARGS and v}


# Admin: retention -----------------------------------------------------------------------


@bp.get("/admin/retention")
@staff_requires("retention.read")
def retention_page() -> Any:
    """What a run on a date would purge and skip, per rule, and the recorded runs."""
    as_of = retention.parse_as_of(request.args.get("as_of") or None)
    preview = retention.preview(as_of, limit=RETENTION_PAGE_ITEMS)
    return render_template(
        "staff/retention.html", preview=preview, runs=retention.list_runs(20), as_of=as_of
    )


RETENTION_PAGE_ITEMS = 50


@bp.post("/admin/retention/checklist")
@staff_requires("retention.run")
def retention_checklist_done() -> Any:
    """The admin says a purge owed in another system was done (R16-R18)."""
    as_of = run_form(
        ChecklistDoneForm(),
        lambda d: retention.mark_done(g.actor, d["rule"], d["done_through"]) and d["as_of"],
        "Marked done.",
    )
    return see_other("staff.retention_page", **({"as_of": as_of.isoformat()} if as_of else {}))


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    add_staff_page(app, "staff.users", "Users", "users.manage", "admin")
    add_staff_page(app, "staff.tokens", "API tokens", "tokens.manage", "admin")
    add_staff_page(app, "staff.audit_log", "Audit log", "audit.read", "admin")
    add_staff_page(app, "staff.retention_page", "Retention", "retention.read", "admin")
