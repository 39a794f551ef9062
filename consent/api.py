"""HTTP API: registering contacts with a basis, decisions, objections, the ledger."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from flask import Flask, current_app, g, jsonify, request, url_for
from flask_smorest import Blueprint
from marshmallow import EXCLUDE, ValidationError

from consent import feed, imports, policies, rights, services, web_tracking, webhooks
from consent.claims import ExternalConfirmation
from consent.evidence import Evidence, evidence_shown_to
from consent.models import ALL, Basis, InterestKind
from consent.schemas import (
    BatchCheckSchema,
    BatchResultSchema,
    ChangePageSchema,
    ChangesQuerySchema,
    ConsentBasisSchema,
    ConsentEventSchema,
    ContactCreateSchema,
    ContactRegisteredSchema,
    ErasureSchema,
    ImportBatchSchema,
    ImportFormSchema,
    LegitimateInterestBasisSchema,
    ObjectionSchema,
    PermissionsQuerySchema,
    PermissionsSchema,
    PolicyPublishSchema,
    PolicyVersionSchema,
    PrivacyRequestQuerySchema,
    PrivacyRequestSchema,
    RejectionSchema,
    RejectionsQuerySchema,
    RestrictionSchema,
    WebhookCreatedSchema,
    WebhookCreateSchema,
    WebhookDeliveriesQuerySchema,
    WebhookDeliverySchema,
    WebhookReplayedSchema,
    WebhookReplaySchema,
    WebhookSchema,
    WebTrackingWithdrawalSchema,
    WebTrackingWithdrawnSchema,
    WebVisitorLinkedSchema,
    WebVisitorLinkSchema,
    WithdrawalSchema,
)
from crm.retention import ContactRead
from crm.schemas import VisitorId, WebVisitSchema, check_visitor_id
from crm.services import CompanyInput
from extensions import ErrorSchema, api, csrf
from kernel.access import requires
from kernel.api_fields import NOT_BLANK_PATTERN, TEXT_PATTERN
from kernel.database import autocommit_statements
from kernel.errors import InvalidInput
from kernel.idempotency import read_by_post, withholds_in_replay

blp = Blueprint("consent_api", __name__, url_prefix="/api/v1", description="Bases and decisions")


class _Registered(ContactRead):
    """A contact as every read returns it, and what its consent became."""

    def __init__(self, registration: services.Registration) -> None:
        super().__init__(registration.contact)
        self.consent = registration.consent


def _basis_input(data: dict[str, Any]) -> services.BasisInput:
    evidence = data.get("evidence") or {}
    confirmation = data.get("confirmation")
    wording_hash = evidence.get("wording_hash")
    if evidence.get("wording"):
        wording_hash = hashlib.sha256(evidence["wording"].encode()).hexdigest()
    return services.BasisInput(
        type=Basis(data["type"]),
        source=data["source"],
        interest_kind=InterestKind(data["kind"]) if data.get("kind") else None,
        topics=tuple(data.get("topics") or ()),
        channel=data.get("channel", "email"),
        obtained_at=evidence.get("obtained_at"),
        evidence=Evidence(
            ip_address=evidence.get("ip_address"),
            user_agent=evidence.get("user_agent"),
            policy_version=evidence.get("policy_version"),
            wording_hash=wording_hash,
            form_id=evidence.get("form_id"),
            page_url=evidence.get("page_url"),
        ),
        confirmation=ExternalConfirmation(**confirmation) if confirmation else None,
    )


@blp.post("/contacts")
@requires("contacts.write")
@blp.arguments(ContactCreateSchema)
@blp.response(201, ContactRegisteredSchema)
@blp.alt_response(
    200, schema=ContactRegisteredSchema, description="An existing contact was updated"
)
@blp.alt_response(
    409,
    schema=ErrorSchema,
    description="restricted: the existing contact's processing is restricted (GDPR art. 18)",
)
def create_or_update_contact(data: dict[str, Any]) -> Any:
    """Create or update a contact by email, with the basis it may be marketed on.

    A consent that needs the person's double opt-in (R8: the contact's country
    or the topic; or the person said no before, X6) is recorded as requested and
    the person is emailed the confirmation: ``consent.status`` is then
    ``pending_confirmation`` and ``consent.confirmation_email`` says whether it
    went. A double opt-in already confirmed elsewhere counts only with
    ``basis.confirmation`` (confirmed_at, ip_address, message_id)."""
    company = CompanyInput(**data["company"]) if data.get("company") else None
    basis = _basis_input(data["basis"]) if data.get("basis") else None
    profile: dict[str, Any] = {
        k: data[k] for k in ("name", "phone", "country", "language") if k in data
    }
    registration = services.register_contact(
        g.actor, data["email"], profile, company, basis, external_ids=data.get("external_ids")
    )
    return _Registered(registration), 201 if registration.created else 200


@blp.get("/contacts/<int:contact_id>/permissions")
@autocommit_statements
@requires("permissions.read")
@blp.arguments(PermissionsQuerySchema, location="query")
@blp.response(200, PermissionsSchema)
def contact_permissions(query: dict[str, Any], contact_id: int) -> Any:
    """The decision for every topic and channel."""
    standing, decisions = services.contact_permissions(g.actor, contact_id, at=query.get("at"))
    return {"contact_id": standing.contact_id, "email": standing.email, "decisions": decisions}


@blp.post("/permissions/check")
@autocommit_statements
@requires("permissions.read", token_read_by_route=True)
@read_by_post
@blp.arguments(BatchCheckSchema())  # one instance: webargs builds a class anew per request
@blp.response(200, BatchResultSchema)
def check_permissions(data: dict[str, Any]) -> Any:
    """Decide for up to 10,000 addresses at once; unknown ones are ``unknown_contact``."""
    decisions = services.check_permissions(
        data["emails"], data["topic"], data["channel"], at=data.get("at"), actor=g.bearer_token
    )
    # Serialised here rather than by BatchResultSchema (which documents it):
    # marshmallow spent a fifth of a 1,000-address check.
    return jsonify(
        topic=data["topic"],
        channel=data["channel"],
        decisions=[decision.as_json() for decision in decisions],
    )


@blp.post("/contacts/<int:contact_id>/objection")
@requires("objections.record")
@blp.arguments(ObjectionSchema)
@blp.response(201, ConsentEventSchema)
@blp.alt_response(
    200, schema=ConsentEventSchema, description="An objection on this channel was already in force"
)
def record_objection(data: dict[str, Any], contact_id: int) -> Any:
    """Record an objection received on the person's behalf (phone, letter, ...).

    201 with the event written; 200 with the existing event when an objection
    on the same channel is already in force (nothing is written)."""
    channel = ALL if data["channel"] == "all" else data["channel"]
    recorded = services.record_objection(
        g.actor,
        contact_id,
        channel=channel,
        received_via=data["received_via"],
        note=data.get("note"),
    )
    # Serialised here rather than by ConsentEventSchema (which documents it),
    # as the permission check does: objections must stay cheap under load.
    return jsonify(_event_json(recorded.event)), 201 if recorded.created else 200


def _event_json(event: Any) -> dict[str, Any]:
    """A ledger event as the token's role may see it (R25: the identifying
    evidence only for the roles that ``may`` take ``evidence.read``)."""
    return evidence_shown_to(g.actor.role, event.as_json())


@blp.post("/contacts/<int:contact_id>/withdrawals")
@requires("withdrawals.record")
@blp.arguments(WithdrawalSchema)
@blp.response(201, ConsentEventSchema(many=True))
def record_withdrawal(data: dict[str, Any], contact_id: int) -> Any:
    """Record a withdrawal synced from another tool: a topic or ``all``, on a
    channel or ``all``, with who recorded it and how it was received. Never
    refused for want of evidence; it takes effect at once."""
    return services.record_withdrawal(
        g.actor,
        contact_id,
        topic=ALL if data["topic"] == "all" else data["topic"],
        channel=ALL if data["channel"] == "all" else data["channel"],
        received_via=data["received_via"],
        recorded_by=data["recorded_by"],
        note=data.get("note"),
    )


@blp.get("/contacts/<int:contact_id>/events")
@requires("contacts.read")
@blp.response(200, ConsentEventSchema(many=True))
def list_events(contact_id: int) -> Any:
    """The consent ledger of a contact, oldest first. IP address, user agent and
    page URL of the evidence only for roles that may read evidence (admin, dpo)."""
    events = services.list_events(contact_id, actor=g.actor)
    return jsonify([_event_json(event) for event in events])


@blp.get("/contacts/<int:contact_id>/export")
@requires("contacts.export")
@blp.response(200)
def export_contact(contact_id: int) -> Any:
    """Everything held about the person (GDPR art. 15 and 20), as JSON."""
    return rights.export_contact(g.actor, contact_id)


@blp.delete("/contacts/<int:contact_id>")
@requires("contacts.erase")
@blp.response(200, ErasureSchema)
@blp.alt_response(409, schema=ErrorSchema, description="legal_hold: a legal hold is set")
def erase_contact(contact_id: int) -> Any:
    """Erase the person's data (GDPR art. 17); 409 while a legal hold is set.

    If the person ever objected or unsubscribed from everything, a keyed hash
    of the address stays on the suppression list (R22).
    """
    kept = rights.erase_contact(g.actor, contact_id)
    return {"erased": True, "contact_id": contact_id, "suppression_kept": kept}


@blp.post("/contacts/<int:contact_id>/restriction")
@requires("contacts.restrict")
@blp.arguments(RestrictionSchema)
@blp.response(201, ConsentEventSchema)
@blp.alt_response(
    409, schema=ErrorSchema, description="restricted: processing is restricted already"
)
def restrict_processing(data: dict[str, Any], contact_id: int) -> Any:
    """Restrict processing (GDPR art. 18): no marketing and no edits until lifted."""
    event = services.restrict_processing(
        g.actor, contact_id, note=data.get("note"), received_via=data.get("received_via")
    )
    return jsonify(_event_json(event)), 201


@blp.delete("/contacts/<int:contact_id>/restriction")
@requires("contacts.restrict")
@blp.response(200, ConsentEventSchema)
@blp.alt_response(
    409, schema=ErrorSchema, description="not_restricted: processing is not restricted"
)
def lift_restriction(contact_id: int) -> Any:
    """Lift the restriction."""
    return jsonify(_event_json(services.lift_restriction(g.actor, contact_id)))


@blp.post("/imports")
@requires("imports.run")
@blp.response(202, ImportBatchSchema)
@blp.alt_response(
    422,
    schema=ErrorSchema,
    description="invalid_input: a form field is missing or not valid; invalid_file: the upload is not a CSV file with a header row",
)
@blp.doc(
    requestBody={
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "basis", "source"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "contentMediaType": "text/csv",
                            "description": "A CSV file (UTF-8) whose header row names an "
                            "email column; docs/imports.md. A file that is not one is 422 "
                            "invalid_file; rows that cannot be imported are in the batch's "
                            "report once the worker has read them.",
                        },
                        "basis": {"type": "string", "enum": [k.value for k in InterestKind]},
                        "source": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "pattern": NOT_BLANK_PATTERN,
                        },
                        "preset": {
                            "type": "string",
                            "enum": imports.preset_names(),
                            "description": "A CRM's contact export (docs/imports.md, presets).",
                        },
                        "mapping": {
                            "type": "string",
                            "maxLength": 16 * 1024,
                            "pattern": TEXT_PATTERN,
                            "description": 'JSON object of header to field, e.g. {"E-post": '
                            '"email", "Kund-ID": "external_id:visma"}; not with a preset.',
                        },
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
)
def run_import(**_: Any) -> Any:
    """Queue a CSV file (multipart ``file``) for import with a basis and a source.

    Answers 202 with the batch as soon as the file is stored; the worker reads
    the rows. Follow ``Location`` (``GET /api/v1/imports/<id>``) for its
    progress and, once ``done``, its report."""
    # Only this route takes large bodies: lift the 1 MiB limit before the form is parsed.
    request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]
    try:
        data = ImportFormSchema(unknown=EXCLUDE).load(request.form.to_dict())
    except ValidationError as exc:
        messages = exc.normalized_messages()
        raise InvalidInput(
            "The request is not valid; see fields.",
            fields={str(key): value for key, value in messages.items()},
        ) from None
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput(
            "Send the CSV as the multipart part 'file'.", fields={"file": ["Required."]}
        )
    report = imports.queue_import(
        g.actor,
        upload.stream,
        basis=data["basis"],
        source=data["source"],
        filename=upload.filename,
        preset=data["preset"],
        mapping=data["mapping"],
    )
    location = url_for("consent_api.read_import", batch_id=report.batch_id)
    return report, 202, {"Location": location}


@blp.get("/imports/<int:batch_id>")
@requires("imports.run")
@blp.response(200, ImportBatchSchema)
def read_import(batch_id: int) -> Any:
    """An import batch: its status (queued, running, done, failed), the rows read
    of those expected, and its report (counts, the first rejected rows) so far."""
    return imports.report_of(batch_id)


@blp.get("/imports/<int:batch_id>/rejections")
@requires("imports.run")
@blp.arguments(RejectionsQuerySchema, location="query")
@blp.response(200, RejectionSchema(many=True))
def list_rejections(query: dict[str, Any], batch_id: int) -> Any:
    """The rejected rows of a batch, in row order: page with ``after_row``."""
    imports.get_batch(batch_id)
    rows = imports.iter_rejections(batch_id, after_row=query["after_row"])
    return list(itertools.islice(rows, query["limit"]))


@blp.post("/policies")
@requires("policies.manage")
@blp.arguments(PolicyPublishSchema)
@blp.response(201, PolicyVersionSchema)
@blp.alt_response(
    409, schema=ErrorSchema, description="policy_version_exists: the version is published already"
)
def publish_policy(data: dict[str, Any]) -> Any:
    """Publish a privacy-policy version with its consent wordings (R23).

    One wording per key and language (422 ``duplicate_wording``); a version is
    published once (409 ``policy_version_exists``)."""
    return policies.publish_policy(
        g.actor,
        data["version"],
        is_major=data["major"],
        url=data.get("url"),
        text=data.get("text"),
        summary=data.get("summary"),
        wordings=[policies.WordingInput(**w) for w in data["wordings"]],
    )


@blp.get("/policies")
@requires("policies.read")
@blp.response(200, PolicyVersionSchema(many=True))
def list_policies() -> Any:
    """Published policy versions, newest (the current one) first."""
    return policies.list_policies()


@blp.post("/webhooks")
@requires("webhooks.manage")
@withholds_in_replay("secret")
@blp.arguments(WebhookCreateSchema)
@blp.response(201, WebhookCreatedSchema)
def create_webhook(data: dict[str, Any]) -> Any:
    """Register a URL to be posted the change feed's items (Standard Webhooks),
    of the chosen event types (all when none are chosen)."""
    endpoint, _secret = webhooks.create_endpoint(
        g.actor, data["url"], data.get("description"), data.get("events")
    )
    # The only response that includes the signing secret; a repeat with the same
    # Idempotency-Key gets the endpoint without it (kernel.idempotency).
    return endpoint


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
    """Stop posting to a receiver: pending deliveries are cancelled, the log is kept."""
    return webhooks.deactivate_endpoint(g.actor, webhook_id)


@blp.get("/webhooks/<int:webhook_id>/deliveries")
@requires("webhooks.manage")
@blp.arguments(WebhookDeliveriesQuerySchema, location="query")
@blp.response(200, WebhookDeliverySchema(many=True))
def list_webhook_deliveries(query: dict[str, Any], webhook_id: int) -> Any:
    """A receiver's delivery log, newest first: attempts, status, last error, next try."""
    return webhooks.list_deliveries(
        webhook_id, status=query.get("status"), before=query.get("before"), limit=query["limit"]
    )


@blp.post("/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/replay")
@requires("webhooks.manage")
@blp.response(202, WebhookDeliverySchema)
def replay_webhook_delivery(webhook_id: int, delivery_id: int) -> Any:
    """Post one delivery's change again (a new delivery, same webhook-id)."""
    return webhooks.replay_delivery(g.actor, webhook_id, delivery_id)


@blp.post("/webhooks/<int:webhook_id>/replay")
@requires("webhooks.manage")
@blp.arguments(WebhookReplaySchema)
@blp.response(202, WebhookReplayedSchema)
def replay_webhook(data: dict[str, Any], webhook_id: int) -> Any:
    """Post again every change after a change id, or since a time, of the
    types the receiver subscribes to, in the feed's order."""
    queued = webhooks.replay_since(
        g.actor, webhook_id, after_change=data.get("after_change"), since=data.get("since")
    )
    return {"queued": queued}


@blp.get("/changes")
@requires("changes.read")
@blp.arguments(ChangesQuerySchema, location="query")
@blp.response(200, ChangePageSchema)
@blp.alt_response(400, description="The cursor is malformed.")
@blp.alt_response(410, description="The cursor is older than the pruned feed: resync.")
def read_changes(query: dict[str, Any]) -> Any:
    """The change feed a CRM mirrors, in commit order (docs/integration.md)."""
    return feed.read(query.get("after"), query["limit"], actor=g.actor)


@blp.get("/privacy-requests")
@requires("privacy_requests.read")
@blp.arguments(PrivacyRequestQuerySchema, location="query")
@blp.response(200, PrivacyRequestSchema(many=True))
def list_privacy_requests(query: dict[str, Any]) -> Any:
    """Requests from the public, soonest due first; verified erasures await an admin."""
    return rights.list_privacy_requests(query.get("status"))


@blp.put(
    "/web-visitors/<visitor_id>/contact",
    parameters=[
        {
            "in": "path",
            "name": "visitor_id",
            "required": True,
            "schema": {"type": "string", "pattern": VisitorId.regex.pattern},
        }
    ],
)
@requires("contacts.write")
@blp.arguments(WebVisitorLinkSchema)
@blp.response(200, WebVisitorLinkedSchema)
@blp.alt_response(
    409,
    schema=ErrorSchema,
    description="no_web_tracking_consent: the contact's web-tracking consent does not hold; web_tracking_off: the policy has no web-tracking topic",
)
def link_web_visitor(data: dict[str, Any], visitor_id: str) -> Any:
    """Link an anonymous visitor id to a contact (R19): 409 ``no_web_tracking_consent``
    unless the contact's explicit consent to web tracking holds."""
    check_visitor_id(visitor_id)
    return web_tracking.link_visitor(g.actor, visitor_id, data["contact_id"])


@blp.get("/contacts/<int:contact_id>/web-visits")
@requires("contacts.read")
@blp.response(200, WebVisitSchema(many=True))
def list_web_visits(contact_id: int) -> Any:
    """The web visits linked to a contact, made since its consent began (only
    while the consent holds), newest first."""
    return web_tracking.read_visits(g.actor, contact_id)


@blp.post("/contacts/<int:contact_id>/web-tracking/withdrawal")
@requires("withdrawals.record")
@blp.arguments(WebTrackingWithdrawalSchema)
@blp.response(200, WebTrackingWithdrawnSchema)
def withdraw_web_tracking(data: dict[str, Any], contact_id: int) -> Any:
    """The contact withdrew the web-tracking consent: recorded in the ledger, and
    every visitor id linked to them is unlinked (their visits are anonymous again)."""
    unlinked = web_tracking.withdraw(g.actor, contact_id, data.get("received_via") or "web")
    return {"contact_id": contact_id, "unlinked": unlinked}


def register(app: Flask) -> None:
    csrf.exempt(blp)
    api.register_blueprint(blp)
    # The two shapes of a basis, which the description of ``Basis`` names.
    api.spec.components.schema("ConsentBasis", schema=ConsentBasisSchema)
    api.spec.components.schema("LegitimateInterestBasis", schema=LegitimateInterestBasisSchema)
