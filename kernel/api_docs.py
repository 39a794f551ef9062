"""The API description's last touches, and the interactive reference at /api/v1/docs.

``init_app`` runs once every package has registered its API blueprint:

- each request schema's ``openapi_extra`` is merged into its description
  (``kernel.api_fields.describe_schemas``);
- every operation gets the answers every guarded route can give: 401 without
  a valid token, 403 for a role that may not (the roles that may are named in
  the operation's description, from ``kernel.access.ACTIONS``), 404 where a
  path names a row, 413 for a body over the limit;
- ``/api/v1/docs`` serves Swagger UI from the assets of the
  ``flask-swagger-ui`` package, never from a CDN: deploy sites may have no
  internet. The page is public, as the description it renders is: it holds
  no data, and "Try it out" needs a token like any client.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    render_template,
    send_from_directory,
)

from kernel.access import ACTIONS
from kernel.api_fields import describe_schemas
from kernel.models import Role

# The Swagger UI files the page loads; nothing else in the package is served.
ASSETS = frozenset(
    {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "index.css",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)
_ROLE_ORDER = [role.value for role in Role]


def _assets_dir() -> Path:
    return Path(str(importlib.resources.files("flask_swagger_ui") / "dist"))


bp = Blueprint("api_reference", __name__, url_prefix="/api/v1/docs")


@bp.get("")
def page() -> Any:
    """The interactive API reference (Swagger UI)."""
    return render_template(
        "api/docs.html",
        title=current_app.config["API_TITLE"],
        spec_url=current_app.config["OPENAPI_URL_PREFIX"].rstrip("/")
        + "/"
        + current_app.config["OPENAPI_JSON_PATH"],
    )


@bp.get("/assets/<filename>")
def asset(filename: str) -> Any:
    if filename not in ASSETS:
        abort(404)
    response = send_from_directory(_assets_dir(), filename, max_age=86_400)
    return response


@bp.after_request
def _headers(response: Response) -> Response:
    # Scripts, styles and the document from this origin only; Swagger UI sets
    # element styles from its scripts and shows images as data: URLs.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def describe_operations(app: Flask, api: Any) -> None:
    """Add the answers every guarded route gives, and who may call it."""
    for path, operations in api.spec._paths.items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            endpoint = _endpoint(app, path, method)
            view = app.view_functions.get(endpoint) if endpoint else None
            action = getattr(view, "_required_action", None)
            responses = operation.setdefault("responses", {})
            if action is not None:
                roles = [r for r in _ROLE_ORDER if r in ACTIONS[action]]
                note = f"Roles: {', '.join(roles)} (`{action}`)."
                operation["description"] = (
                    f"{operation['description']}\n\n{note}"
                    if operation.get("description")
                    else note
                )
                responses.setdefault("401", _error("No token, or a token that is not valid."))
                responses.setdefault(
                    "403", _error(f"The token's role is not one of: {', '.join(roles)}.")
                )
            if "{" in path:
                responses.setdefault("404", _error("No such row (or an id out of range)."))
            if method in ("post", "put", "patch"):
                responses.setdefault("413", _error("The body is over the size limit."))


def _endpoint(app: Flask, path: str, method: str) -> str | None:
    """The endpoint of the rule the description calls ``path`` (``{name}`` for
    ``<int:name>``)."""
    for rule in app.url_map.iter_rules():
        templated = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        if templated == path and method.upper() in (rule.methods or ()):
            return rule.endpoint
    return None


def init_app(app: Flask, api: Any) -> None:
    describe_schemas(api)
    describe_operations(app, api)
    app.register_blueprint(bp)
