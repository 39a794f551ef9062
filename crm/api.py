"""HTTP API for reading and rectifying contacts and logging activities."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Flask, g, jsonify, request
from flask_smorest import Blueprint

from crm import changed_since, retention, services, web_visits
from crm.models import SUPPORT_FIELDS
from crm.retention import ContactRead
from crm.schemas import (
    ActivityCreateSchema,
    ActivitySchema,
    AuditEntrySchema,
    AuditQuerySchema,
    ContactPageSchema,
    ContactQuerySchema,
    ContactSchema,
    LegalHoldSchema,
    RectifySchema,
    RetentionPreviewQuerySchema,
    RetentionPreviewSchema,
    RetentionRunSchema,
    WebVisitCreateSchema,
    WebVisitSchema,
)
from crm.services import CompanyInput
from extensions import ErrorSchema, api, csrf
from kernel.access import requires

blp = Blueprint("crm_api", __name__, url_prefix="/api/v1", description="Contacts and activities")


_CONTACT_OR_PAGE = {
    "200": {
        "description": "The contact (email, external_id), or a page of contacts (updated_after)",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Contact"},
                        {"$ref": "#/components/schemas/ContactPage"},
                    ]
                }
            }
        },
    }
}


@blp.get("/contacts")
@requires("contacts.read")
@blp.arguments(ContactQuerySchema, location="query")
@blp.response(200, ContactSchema)
@blp.doc(responses=_CONTACT_OR_PAGE)
@blp.alt_response(
    404, schema=ErrorSchema, description="contact_not_found: no contact has the address"
)
def find_contact(query: dict[str, Any]) -> Any:
    """Find a contact by email address or by another system's id
    (``external_id=hubspot:1234``); or, with ``updated_after``, list the contacts
    changed since then, a page at a time (``next_cursor`` goes in ``after``).

    Give exactly one of ``email``, ``external_id`` and ``updated_after`` (422
    otherwise); ``after`` and ``limit`` go with ``updated_after``."""
    if "updated_after" in query:
        page = changed_since.contacts_changed_since(
            g.actor, query["updated_after"], after=query.get("after"), limit=query["limit"]
        )
        next_url = None
        if page.has_more and page.next_cursor:
            args = {**request.args.to_dict(), "after": page.next_cursor}
            next_url = f"{request.path}?{urlencode(args)}"
        return jsonify(
            ContactPageSchema().dump(
                {
                    "contacts": ContactRead.many(page.contacts),
                    "has_more": page.has_more,
                    "next_cursor": page.next_cursor,
                    "next": next_url,
                }
            )
        )
    if "external_id" in query:
        return ContactRead(services.read_contact(g.actor, external_id=query["external_id"]))
    return ContactRead(services.read_contact(g.actor, email=query["email"]))


@blp.get("/contacts/<int:contact_id>")
@requires("contacts.read")
@blp.response(200, ContactSchema)
def read_contact(contact_id: int) -> Any:
    """Read one contact."""
    return ContactRead(services.read_contact(g.actor, contact_id=contact_id))


@blp.patch("/contacts/<int:contact_id>")
@requires("contacts.write")
@blp.arguments(RectifySchema)
@blp.response(200, ContactSchema)
@blp.alt_response(
    409,
    schema=ErrorSchema,
    description="restricted: processing is restricted (GDPR art. 18); email_taken: another contact has the address",
)
def rectify_contact(changes: dict[str, Any], contact_id: int) -> Any:
    """Rectify a contact's data (GDPR art. 16)."""
    if changes.get("company") is not None:
        changes["company"] = CompanyInput(**changes["company"])
    return ContactRead(services.rectify_contact(g.actor, contact_id, changes))


@blp.post("/contacts/<int:contact_id>/activities")
@requires("activities.create")
@blp.arguments(ActivityCreateSchema)
@blp.response(201, ActivitySchema)
@blp.alt_response(
    409, schema=ErrorSchema, description="restricted: processing is restricted (GDPR art. 18)"
)
def log_activity(data: dict[str, Any], contact_id: int) -> Any:
    """Log an interaction; kinds the contact took part in move last_interaction_at."""
    support = {name: data.get(name) for name in SUPPORT_FIELDS}
    return services.log_activity(
        g.actor, contact_id, data["kind"], data["occurred_at"], data.get("note"), support
    )


@blp.get("/contacts/<int:contact_id>/activities")
@requires("contacts.read")
@blp.response(200, ActivitySchema(many=True))
def list_activities(contact_id: int) -> Any:
    """A contact's activities, newest first."""
    return services.read_activities(g.actor, contact_id)


@blp.put("/contacts/<int:contact_id>/legal-hold")
@requires("contacts.legal_hold")
@blp.arguments(LegalHoldSchema)
@blp.response(200, ContactSchema)
def set_legal_hold(data: dict[str, Any], contact_id: int) -> Any:
    """Set a legal hold: erasure is refused (409) and retention skips the contact."""
    return ContactRead(services.set_legal_hold(g.actor, contact_id, data["reason"]))


@blp.delete("/contacts/<int:contact_id>/legal-hold")
@requires("contacts.legal_hold")
@blp.response(200, ContactSchema)
@blp.alt_response(409, schema=ErrorSchema, description="no_legal_hold: no legal hold is set")
def lift_legal_hold(contact_id: int) -> Any:
    """Lift the legal hold."""
    return ContactRead(services.lift_legal_hold(g.actor, contact_id))


@blp.get("/audit")
@requires("audit.read")
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditEntrySchema(many=True))
def list_audit(query: dict[str, Any]) -> Any:
    """Who did what to which contact's data, newest first; page with ``before_id``."""
    return services.list_audit(g.actor, services.AuditQuery(**query))


@blp.get("/retention/preview")
@requires("retention.read")
@blp.arguments(RetentionPreviewQuerySchema, location="query")
@blp.response(200, RetentionPreviewSchema)
def retention_preview(query: dict[str, Any]) -> Any:
    """What a retention run on ``as_of`` would delete or anonymise, per rule, and what
    it would skip and why (legal hold, pending rights request). Changes nothing."""
    return retention.preview(retention.parse_as_of(query["as_of"]), limit=query["limit"])


@blp.get("/retention/runs")
@requires("retention.read")
@blp.response(200, RetentionRunSchema(many=True))
def retention_runs() -> Any:
    """The latest retention runs: when, by whom, counts per rule (never the data)."""
    return retention.list_runs()


@blp.post("/web-visits")
@requires("contacts.write")
@blp.arguments(WebVisitCreateSchema)
@blp.response(201, WebVisitSchema)
def record_web_visit(data: dict[str, Any]) -> Any:
    """Record a page view under an anonymous visitor id (R19): it names no contact
    and stays anonymous unless the visitor is linked with the contact's consent."""
    return web_visits.record_visit(data["visitor_id"], data["page"], data["visited_at"])


def register(app: Flask) -> None:
    csrf.exempt(blp)
    api.register_blueprint(blp)
    # Named in the contacts read's answer (one of a contact or a page).
    if "ContactPage" not in api.spec.components.schemas:
        api.spec.components.schema("ContactPage", schema=ContactPageSchema)
