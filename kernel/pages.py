"""What every staff page shares, whichever package it belongs to.

``staff_blueprint`` (the layout's context, no-store and framing headers), the
navigation list ``add_staff_page``, ``FormSchema`` for posted HTML forms and
``run_form`` for the post-redirect-get of an action (docs/staff-pages.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, current_app, flash, redirect, request, url_for
from marshmallow import EXCLUDE, Schema, ValidationError
from werkzeug.wrappers import Response

from extensions import db
from kernel import i18n
from kernel.access import current_staff_user, may
from kernel.errors import Conflict, InvalidInput

_ = i18n.translate


class FormSchema(Schema):
    class Meta:
        # The CSRF token and the submit button travel with every form.
        unknown = EXCLUDE


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str
    action: str
    section: str = "main"  # "main" or "admin"


def add_staff_page(
    app: Flask, endpoint: str, label: str, action: str, section: str = "main"
) -> None:
    """List a page in the staff navigation, shown to roles that ``may`` take ``action``."""
    app.extensions.setdefault("staff_nav", []).append(NavItem(endpoint, label, action, section))


def format_time(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else ""


def _staff_context() -> dict[str, Any]:
    user = current_staff_user()
    items = [
        item
        for item in current_app.extensions.get("staff_nav", [])
        if user is not None
        and may(user.role, item.action)
        and item.endpoint in current_app.view_functions
    ]
    return {
        "_": _,
        "lang": i18n.current_language(),
        "languages": i18n.LANGUAGES,
        "staff_user": user,
        "staff_nav": items,
        "may": lambda action: user is not None and may(user.role, action),
        "has_endpoint": lambda endpoint: endpoint in current_app.view_functions,
        "when": format_time,
    }


def _staff_headers(response: Response) -> Response:
    # Staff pages hold personal data: never cached, never framed.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    )
    return response


def staff_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint under /staff whose templates get the staff layout's context."""
    blueprint = Blueprint(name, import_name, url_prefix="/staff")
    blueprint.context_processor(_staff_context)
    blueprint.after_request(_staff_headers)
    return blueprint


def _validation_message(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{field}: {_validation_message(m)}" for field, m in messages.items())
    if isinstance(messages, list):
        return " ".join(str(m) for m in messages)
    return str(messages)


def run_form(schema: Schema, action: Callable[[dict[str, Any]], Any], success: str | None) -> Any:
    """Parse the posted form with ``schema`` and run ``action`` with it.

    Success flashes ``success``; invalid input or a conflict flashes why and
    nothing is changed. Returns the action's result, or None when refused.
    """
    try:
        result = action(schema.load(request.form.to_dict()))
    except ValidationError as exc:
        db.session.rollback()
        flash(_validation_message(exc.messages), "error")
        return None
    except (InvalidInput, Conflict) as exc:
        db.session.rollback()
        flash(exc.message, "error")
        return None
    if success:
        flash(_(success), "success")
    return result


def see_other(endpoint: str, **values: Any) -> Response:
    return redirect(url_for(endpoint, **values), 303)
