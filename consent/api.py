"""HTTP API: registering contacts with a basis, decisions, objections, the ledger."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Flask, g
from flask_smorest import Blueprint

from consent import services, webhooks
from consent.ledger import Evidence
from consent.models import ALL, Basis, InterestKind
from consent.schemas import (
    BatchCheckSchema,
    BatchResultSchema,
    ConsentEventSchema,
    ContactCreateSchema,
    ObjectionSchema,
    PermissionsQuerySchema,
    PermissionsSchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookSchema,
)
from crm import services as crm
from crm.access import requires
from crm.schemas import ContactSchema
from crm.services import CompanyInput
from extensions import api, csrf

blp = Blueprint("consent_api", __name__, url_prefix="/api/v1", description="Bases and decisions")


def _basis_input(data: dict[str, Any]) -> services.BasisInput:
    evidence = data.get("evidence") or {}
    wording_hash = evidence.get("wording_hash")
    if evidence.get("wording"):
        wording_hash = hashlib.sha256(evidence["wording"].encode()).hexdigest()
    return services.BasisInput(
        type=Basis(data["type"]),
        source=data["source"],
        interest_kind=InterestKind(data["kind"]) if data.get("kind") else None,
        topics=tuple(data.get("topics") or ()),
        obtained_at=evidence.get("obtained_at"),
        evidence=Evidence(
            ip_address=evidence.get("ip_address"),
            user_agent=evidence.get("user_agent"),
            policy_version=evidence.get("policy_version"),
            wording_hash=wording_hash,
            form_id=evidence.get("form_id"),
            page_url=evidence.get("page_url"),
        ),
    )


@blp.post("/contacts")
@requires("contacts.write")
@blp.arguments(ContactCreateSchema)
@blp.response(201, ContactSchema)
@blp.alt_response(200, schema=ContactSchema, description="An existing contact was updated")
def create_or_update_contact(data: dict[str, Any]) -> Any:
    """Create or update a contact by email, with the basis it may be marketed on."""
    company = CompanyInput(**data["company"]) if data.get("company") else None
    basis = _basis_input(data["basis"]) if data.get("basis") else None
    profile = {k: data[k] for k in ("name", "phone", "country", "language") if k in data}
    contact, created = services.register_contact(g.actor, data["email"], profile, company, basis)
    return contact, 201 if created else 200


@blp.get("/contacts/<int:contact_id>/permissions")
@requires("permissions.read")
@blp.arguments(PermissionsQuerySchema, location="query")
@blp.response(200, PermissionsSchema)
def contact_permissions(query: dict[str, Any], contact_id: int) -> Any:
    """The decision for every topic and channel."""
    contact = crm.read_contact(g.actor, contact_id=contact_id)
    decisions = services.decisions_for_contact(contact, at=query.get("at"))
    return {"contact_id": contact.id, "email": contact.email, "decisions": decisions}


@blp.post("/permissions/check")
@requires("permissions.read")
@blp.arguments(BatchCheckSchema)
@blp.response(200, BatchResultSchema)
def check_permissions(data: dict[str, Any]) -> Any:
    """Decide for up to 10,000 addresses at once; unknown ones are ``unknown_contact``."""
    decisions = services.check_permissions(
        data["emails"], data["topic"], data["channel"], at=data.get("at")
    )
    return {"topic": data["topic"], "channel": data["channel"], "decisions": decisions}


@blp.post("/contacts/<int:contact_id>/objection")
@requires("objections.record")
@blp.arguments(ObjectionSchema)
@blp.response(201, ConsentEventSchema)
def record_objection(data: dict[str, Any], contact_id: int) -> Any:
    """Record an objection received on the person's behalf (phone, letter, ...)."""
    channel = ALL if data["channel"] == "all" else data["channel"]
    return services.record_objection(
        g.actor,
        contact_id,
        channel=channel,
        received_via=data["received_via"],
        note=data.get("note"),
    )


@blp.get("/contacts/<int:contact_id>/events")
@requires("contacts.read")
@blp.response(200, ConsentEventSchema(many=True))
def list_events(contact_id: int) -> Any:
    """The consent ledger of a contact, oldest first."""
    return services.list_events(contact_id)


@blp.post("/webhooks")
@requires("webhooks.manage")
@blp.arguments(WebhookCreateSchema)
@blp.response(201, WebhookCreatedSchema)
def create_webhook(data: dict[str, Any]) -> Any:
    """Register a URL to be told about every change of a contact's decisions."""
    endpoint, _secret = webhooks.create_endpoint(g.actor, data["url"], data.get("description"))
    return endpoint  # the only response that includes the signing secret


@blp.get("/webhooks")
@requires("webhooks.manage")
@blp.response(200, WebhookSchema(many=True))
def list_webhooks() -> Any:
    """The registered webhook receivers."""
    return webhooks.list_endpoints()


@blp.delete("/webhooks/<int:webhook_id>")
@requires("webhooks.manage")
@blp.response(200, WebhookSchema)
def deactivate_webhook(webhook_id: int) -> Any:
    """Stop posting to a receiver (its delivery history is kept)."""
    return webhooks.deactivate_endpoint(g.actor, webhook_id)


def register(app: Flask) -> None:
    csrf.exempt(blp)
    api.register_blueprint(blp)
