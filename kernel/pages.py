"""What every staff page shares, whichever package it belongs to.

``staff_blueprint`` (the layout's context, no-store and framing headers), the
navigation list ``add_staff_page``, ``FormSchema`` for posted HTML forms and
``run_form`` for the post-redirect-get of an action (docs/staff-pages.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from flask import Blueprint, Flask, current_app, flash, redirect, request, url_for
from marshmallow import EXCLUDE, Schema, ValidationError
from werkzeug.wrappers import Response

from extensions import db
from kernel import i18n
from kernel.access import current_staff_user, may
from kernel.errors import Conflict, DomainError, InvalidInput

_ = i18n.translate
N_ = i18n.N_


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
        # Moments in the user's zone and language (kernel.i18n: also a filter).
        "when": i18n.format_moment,
    }


STAFF_POLICY = (
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)


def _staff_headers(policy: str) -> Callable[[Response], Response]:
    def add_headers(response: Response) -> Response:
        # Staff pages hold personal data: never cached, never framed.
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Content-Security-Policy"] = policy
        return response

    return add_headers


def staff_blueprint(name: str, import_name: str, *, policy: str = STAFF_POLICY) -> Blueprint:
    """A blueprint under /staff whose templates get the staff layout's context.

    ``policy``: the Content-Security-Policy of its answers; only a blueprint
    that serves no page (the dashboard's SVG charts) chooses another."""
    blueprint = Blueprint(name, import_name, url_prefix="/staff")
    blueprint.context_processor(_staff_context)
    blueprint.after_request(_staff_headers(policy))
    return blueprint


# marshmallow's own messages that staff forms can raise, declared so that the
# catalogs hold them; marshmallow fills in {min}, {max}, {choices} before we
# see the text, so it is matched back to its pattern (``_marshmallow_text``).
MARSHMALLOW_MESSAGES = (
    N_("Missing data for required field."),
    N_("Field may not be null."),
    N_("Unknown field."),
    N_("Invalid input type."),
    N_("Not a valid string."),
    N_("Not a valid integer."),
    N_("Not a valid number."),
    N_("Not a valid boolean."),
    N_("Not a valid date."),
    N_("Not a valid datetime."),
    N_("Not a valid email address."),
    N_("Not a valid URL."),
    N_("Must be one of: {choices}."),
    N_("Length must be between {min} and {max}."),
    N_("Shorter than minimum length {min}."),
    N_("Longer than maximum length {max}."),
    N_("Length must be {equal}."),
    N_("Must be greater than or equal to {min} and less than or equal to {max}."),
    N_("Must be greater than or equal to {min}."),
    N_("Must be less than or equal to {max}."),
)
_MARSHMALLOW_PATTERNS = tuple(
    (
        text,
        re.compile(
            "".join(
                f"(?P<{part[1:-1]}>.+?)" if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{\w+\})", text)
            )
        ),
    )
    for text in MARSHMALLOW_MESSAGES
)


def _marshmallow_text(message: str) -> str:
    """A marshmallow message in the reader's language (the form's own texts,
    declared with ``_()``/``N_()``, are looked up as they are)."""
    for text, pattern in _MARSHMALLOW_PATTERNS:
        found = pattern.fullmatch(message)
        if found:
            return _(text).format(**found.groupdict())
    return _(message)


def _validation_message(messages: Any) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{field}: {_validation_message(m)}" for field, m in messages.items())
    if isinstance(messages, list):
        return " ".join(_validation_message(m) for m in messages)
    return _marshmallow_text(str(messages))


def refusal_text(exc: DomainError) -> str:
    """A service's refusal in the reader's language: its catalog text with its
    values, or its English message when it is not a catalog text (docs/i18n.md)."""
    return _(exc.template, **exc.values)


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
        flash(refusal_text(exc), "error")
        return None
    if success:
        flash(_(success), "success")
    return result


def see_other(endpoint: str, **values: Any) -> Response:
    return redirect(url_for(endpoint, **values), 303)


# A path on this site: a slash, then printable ASCII only. Browsers strip tabs and
# newlines anywhere in a URL and C0 controls and spaces around it, read "\\" as
# "/" and may turn other whitespace into something else, so "/\t/evil.example"
# reaches evil.example; a newline also cannot go into a header at all (a 500).
# The pages we send people back to (``request.full_path``, a search's query)
# never need any of those characters raw.
_LOCAL_PATH = re.compile(r"/[\x21-\x5b\x5d-\x7e]*")  # "\\" (0x5c) left out
_MAX_DECODINGS = 4


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else the staff home (no open redirect).

    Refused: anything not starting with one "/" (a scheme, "//host", a bare
    host), control characters, any whitespace (ASCII or Unicode), backslashes,
    and the same in the path once percent-decoded (``/%2F/evil``, ``/%5Cevil``,
    ``/%252F/evil``), which a proxy or a later redirect might decode.
    """
    if target and _is_local_path(target):
        return target
    return home_url()


def set_home_page(app: Flask, role: str, endpoint: str) -> None:
    """Where ``role`` lands after signing in when no page was asked for (the
    contact search for every role without one)."""
    app.extensions.setdefault("staff_home_pages", {})[role] = endpoint


def home_url() -> str:
    """The signed-in user's landing page (``set_home_page``), else the contact search."""
    user = current_staff_user()
    pages = current_app.extensions.get("staff_home_pages", {})
    endpoint = pages.get(user.role) if user is not None else None
    return url_for(endpoint or "staff_contacts.search")


def _is_local_path(target: str) -> bool:
    if not _LOCAL_PATH.fullmatch(target) or target.startswith("//"):
        return False
    path = target.split("?", 1)[0].split("#", 1)[0]
    for _attempt in range(_MAX_DECODINGS):
        decoded = unquote(path)
        if decoded == path:
            return True
        if not _LOCAL_PATH.fullmatch(decoded) or decoded.startswith("//"):
            return False
        path = decoded
    return False  # still encoded after several decodings: nobody's real page
