"""Staff pages of the consent layer: search, a contact's decisions with their
evidence, the ledger, activities, the actions a role may take on them, and CSV
imports with their reports."""

from __future__ import annotations

import itertools
import json
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
    url_for,
)
from marshmallow import ValidationError

from consent import deliverability, imports, privacy_requests, rights, services, webhooks
from consent.forms import (
    ActivityForm,
    ErasureForm,
    ImportUploadForm,
    InboxQuery,
    LegalHoldForm,
    NoteForm,
    ObjectionForm,
    ReasonForm,
    RectificationForm,
    RejectionsPage,
    ReplaySinceForm,
    RequestForm,
    RestrictionForm,
    SearchQuery,
    WebhookLogQuery,
    WithdrawalForm,
)
from consent.models import ALL, DELIVERY_STATUSES, OBJECTION_CHANNELS
from consent.topics import current_policy
from crm import services as crm
from crm import staff
from crm.models import ActivityKind
from crm.retention import purge_outlook
from extensions import csrf
from kernel.access import may, staff_requires
from kernel.errors import N_, InvalidInput
from kernel.i18n import translate as _
from kernel.pages import FormSchema, add_staff_page, run_form, see_other, staff_blueprint
from kernel.timestamps import utcnow

bp = staff_blueprint("staff_contacts", __name__)


@bp.get("/")
@staff_requires("contacts.read")
def search() -> Any:
    """Find a contact by the start of the email, the name or the company name."""
    try:
        query = SearchQuery().load(request.args.to_dict())
    except ValidationError as exc:
        raise InvalidInput(N_("The search is not valid."), fields=exc.messages) from exc  # type: ignore[arg-type]
    text = query["q"].strip()
    results = crm.search_contacts(g.actor, text) if text else None
    return render_template("staff/search.html", q=text, results=results, limit=crm.SEARCH_LIMIT)


@bp.get("/contacts/<int:contact_id>")
@staff_requires("contacts.read")
def contact(contact_id: int) -> Any:
    """May we market to this contact, and why: every topic and channel."""
    file = services.contact_file(g.actor, contact_id)
    names = staff.display_names(
        [e.recorded_by for e in file.events] + [a.author for a in file.activities]
    )
    return render_template(
        "staff/contact.html",
        file=file,
        contact=file.contact,
        names=names,
        policy=current_policy(),
        activity_kinds=[k.value for k in ActivityKind],
        objection_channels=OBJECTION_CHANNELS,
        now=utcnow(),
        # When the current retention rules delete this contact, or why not (R13, R14).
        purge=purge_outlook(file.contact),
        open_requests=privacy_requests.open_requests(contact_id)
        if may(g.actor.role, "privacy_requests.read")
        else [],
        received_via=privacy_requests.RECEIVED_VIA,
        # Whether mail to the address bounced, for the "address fixed" action.
        bouncing=deliverability.has_unsettled_bounces(file.contact),
    )


def _back(contact_id: int, anchor: str) -> Any:
    return redirect(url_for("staff_contacts.contact", contact_id=contact_id, _anchor=anchor), 303)


@bp.post("/contacts/<int:contact_id>/activities")
@staff_requires("activities.create")
def log_activity(contact_id: int) -> Any:
    run_form(
        ActivityForm(),
        lambda d: crm.log_activity(g.actor, contact_id, d["kind"], d["occurred_at"], d["note"]),
        "Activity saved.",
    )
    return _back(contact_id, "activities")


@bp.post("/contacts/<int:contact_id>/objection")
@staff_requires("objections.record")
def record_objection(contact_id: int) -> Any:
    """An objection received by phone, letter, ... on the person's behalf (GDPR art. 21)."""
    run_form(
        ObjectionForm(),
        lambda d: services.record_objection(
            g.actor,
            contact_id,
            channel=ALL if d["channel"] == "all" else d["channel"],
            received_via=d["received_via"],
            note=(d.get("note") or "").strip() or None,
        ),
        "Objection recorded.",
    )
    return _back(contact_id, "decisions")


@bp.post("/contacts/<int:contact_id>/withdrawal")
@staff_requires("withdrawals.record")
def record_withdrawal(contact_id: int) -> Any:
    """A withdrawal the person told staff ("stop the newsletter"), on their behalf."""
    run_form(
        WithdrawalForm(),
        lambda d: services.record_withdrawal(
            g.actor,
            contact_id,
            topic=ALL if d["topic"] == "all" else d["topic"],
            channel=ALL if d["channel"] == "all" else d["channel"],
            received_via=d["received_via"],
            note=(d.get("note") or "").strip() or None,
        ),
        "Withdrawal recorded.",
    )
    return _back(contact_id, "decisions")


@bp.post("/contacts/<int:contact_id>/address-fixed")
@staff_requires("contacts.write")
def address_fixed(contact_id: int) -> Any:
    """Mail to the address bounced and staff know it works again (docs/bounces.md)."""
    run_form(
        NoteForm(),
        lambda d: deliverability.mark_address_fixed(g.actor, contact_id, d["note"]),
        "The address may receive email again.",
    )
    return _back(contact_id, "decisions")


@bp.post("/contacts/<int:contact_id>/restriction")
@staff_requires("contacts.restrict")
def restrict(contact_id: int) -> Any:
    """GDPR art. 18, on the person's request when staff say how it came."""
    run_form(
        RestrictionForm(),
        lambda d: rights.restrict_on_request(g.actor, contact_id, d["note"], d["received_via"]),
        "Restriction recorded.",
    )
    return _back(contact_id, "decisions")


@bp.post("/contacts/<int:contact_id>/restriction/lift")
@staff_requires("contacts.restrict")
def lift_restriction(contact_id: int) -> Any:
    run_form(
        NoteForm(),
        lambda d: services.lift_restriction(g.actor, contact_id, d["note"]),
        "Restriction lifted.",
    )
    return _back(contact_id, "decisions")


@bp.post("/contacts/<int:contact_id>/legal-hold")
@staff_requires("contacts.legal_hold")
def set_legal_hold(contact_id: int) -> Any:
    run_form(
        LegalHoldForm(),
        lambda d: crm.set_legal_hold(g.actor, contact_id, d["reason"]),
        "Legal hold set.",
    )
    return _back(contact_id, "profile")


@bp.post("/contacts/<int:contact_id>/legal-hold/lift")
@staff_requires("contacts.legal_hold")
def lift_legal_hold(contact_id: int) -> Any:
    run_form(FormSchema(), lambda d: crm.lift_legal_hold(g.actor, contact_id), "Legal hold lifted.")
    return _back(contact_id, "profile")


# The person's rights from the contact page (R20): export, erasure, rectification --------


@bp.post("/contacts/<int:contact_id>/export")
@staff_requires("contacts.export")
def export_contact(contact_id: int) -> Any:
    """GDPR art. 15 and 20: the access export as a JSON file to hand to the person."""
    data = run_form(
        RequestForm(),
        lambda d: rights.export_contact(g.actor, contact_id, d["received_via"]),
        None,
    )
    if data is None:
        return _back(contact_id, "actions")
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}-export.json"'},
    )


@bp.get("/contacts/<int:contact_id>/erase")
@staff_requires("contacts.erase")
def confirm_erasure(contact_id: int) -> Any:
    """GDPR art. 17: what erasure removes and keeps, and the button that does it."""
    contact = crm.read_contact(g.actor, contact_id=contact_id)
    return render_template(
        "staff/erase.html",
        contact=contact,
        open_requests=privacy_requests.open_requests(contact.id),
        received_via=privacy_requests.RECEIVED_VIA,
    )


@bp.post("/contacts/<int:contact_id>/erase")
@staff_requires("contacts.erase")
def erase_contact(contact_id: int) -> Any:
    kept = run_form(
        ErasureForm(),
        lambda d: rights.erase_contact(g.actor, contact_id, d["received_via"]),
        None,
    )
    if kept is None:
        return _back(contact_id, "actions")
    flash(
        _("Contact erased. The suppression hash is kept.") if kept else _("Contact erased."),
        "success",
    )
    return see_other("staff_requests.inbox", show="closed")


@bp.post("/contacts/<int:contact_id>/rectify")
@staff_requires("contacts.write")
def rectify(contact_id: int) -> Any:
    """GDPR art. 16: correct the contact's data, through the API's rectification."""

    def run(data: dict[str, Any]) -> Any:
        proposed = {k: data[k] for k in ("email", "name", "phone", "country", "language")}
        return rights.rectify_on_request(g.actor, contact_id, proposed, data["received_via"])

    run_form(RectificationForm(), run, "Contact corrected.")
    return _back(contact_id, "profile")


# The privacy-request inbox (admin, dpo) ---------------------------------------------------

requests_bp = staff_blueprint("staff_requests", __name__)


@requests_bp.get("/admin/privacy-requests")
@staff_requires("privacy_requests.read")
def inbox() -> Any:
    """Every rights request with its deadline (GDPR art. 12(3)) and answer; overdue marked."""
    try:
        show = InboxQuery().load(request.args.to_dict())["show"]
    except ValidationError as exc:
        raise InvalidInput("The page is not valid.", fields=exc.messages) from exc  # type: ignore[arg-type]
    box = privacy_requests.inbox(g.actor, show)
    names = staff.display_names(r.handled_by for r in box.requests if r.handled_by)
    return render_template(
        "staff/privacy_requests.html",
        box=box,
        show=show,
        names=names,
        filters=privacy_requests.INBOX_FILTERS,
    )


@requests_bp.post("/admin/privacy-requests/<int:request_id>/extend")
@staff_requires("privacy_requests.manage")
def extend_request(request_id: int) -> Any:
    run_form(
        ReasonForm(),
        lambda d: privacy_requests.extend_deadline(g.actor, request_id, d["reason"]),
        "Deadline extended.",
    )
    return see_other("staff_requests.inbox")


@requests_bp.post("/admin/privacy-requests/<int:request_id>/refuse")
@staff_requires("privacy_requests.manage")
def refuse_request(request_id: int) -> Any:
    run_form(
        ReasonForm(),
        lambda d: privacy_requests.refuse_request(g.actor, request_id, d["reason"]),
        "Request refused.",
    )
    return see_other("staff_requests.inbox")


def _home() -> Any:
    return redirect(url_for("staff_contacts.search"))


# CSV imports (marketing, admin): upload a file, read its report ---------------------------

imports_bp = staff_blueprint("staff_imports", __name__)

# Rejected rows shown on one page of a batch's report.
REJECTIONS_PAGE = 200


@imports_bp.get("/imports")
@staff_requires("imports.run")
def import_list() -> Any:
    """The upload form and the latest batches with their counts."""
    batches = imports.list_batches()
    names = staff.display_names(b.actor for b in batches)
    return render_template(
        "staff/imports.html", batches=batches, names=names, presets=imports.PRESETS
    )


@imports_bp.post("/imports")
@staff_requires("imports.run")
def upload() -> Any:
    # Only this form may be larger than the 1 MiB every other request is held
    # to, and only for a staff member who may import: the limit is lifted here,
    # after staff_requires, and the CSRF check (exempted from CSRFProtect's
    # global hook, which would read the body before anyone is known) runs now.
    request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]
    if current_app.config["WTF_CSRF_ENABLED"]:
        csrf.protect()

    def run(data: dict[str, Any]) -> imports.ImportReport:
        file = request.files.get("file")
        if file is None or not file.filename:
            raise InvalidInput(_("Choose a CSV file to import."))
        return imports.queue_import(
            g.actor,
            file.stream,
            basis=data["basis"],
            source=data["source"],
            filename=file.filename,
            preset=data["preset"],
            mapping=data["mapping"],
        )

    report = run_form(ImportUploadForm(), run, "File received: the import runs in the background.")
    if report is None:
        return see_other("staff_imports.import_list")
    if report.suggested_preset:
        vendor = imports.PRESETS[report.suggested_preset].vendor
        flash(
            _(
                "This file looks like a %(vendor)s export: choose that preset under Columns "
                "to keep its record ids and read its name and country columns.",
                vendor=vendor,
            ),
            "success",
        )
    return see_other("staff_imports.import_page", batch_id=report.batch_id)


@imports_bp.get("/imports/<int:batch_id>")
@staff_requires("imports.run")
def import_page(batch_id: int) -> Any:
    """A batch's progress while the worker reads it (the page reloads itself), then
    its report: its counts and its rejected rows, a page at a time."""
    batch = imports.get_batch(batch_id)
    try:
        after_row = RejectionsPage().load(request.args.to_dict())["after_row"]
    except ValidationError:
        flash(_("The page is not valid."), "error")
        after_row = 0
    rejections = list(
        itertools.islice(imports.iter_rejections(batch_id, after_row), REJECTIONS_PAGE + 1)
    )
    more = rejections[REJECTIONS_PAGE - 1].row if len(rejections) > REJECTIONS_PAGE else None
    return render_template(
        "staff/import.html",
        batch=batch,
        started_by=staff.display_names([batch.actor])[batch.actor],
        rejections=rejections[:REJECTIONS_PAGE],
        after_row=after_row,
        more=more,
    )


# Webhooks (admin): the receivers, each one's delivery log, replays ----------------------

webhooks_bp = staff_blueprint("staff_webhooks", __name__)

# Deliveries shown on one page of a receiver's log.
DELIVERIES_PAGE = 100


@webhooks_bp.get("/admin/webhooks")
@staff_requires("webhooks.manage")
def webhook_list() -> Any:
    """The registered receivers, their event types and whether they are posted to."""
    return render_template("staff/webhooks.html", endpoints=webhooks.list_endpoints())


@webhooks_bp.get("/admin/webhooks/<int:webhook_id>")
@staff_requires("webhooks.manage")
def webhook_log(webhook_id: int) -> Any:
    """A receiver's delivery log, newest first, with the replay actions."""
    endpoint = webhooks.get_endpoint(webhook_id)
    try:
        query = WebhookLogQuery().load(request.args.to_dict())
    except ValidationError as exc:
        raise InvalidInput("The page is not valid.", fields=exc.messages) from exc  # type: ignore[arg-type]
    deliveries = webhooks.list_deliveries(
        webhook_id, status=query["status"], before=query["before"], limit=DELIVERIES_PAGE + 1
    )
    more = deliveries[DELIVERIES_PAGE - 1].id if len(deliveries) > DELIVERIES_PAGE else None
    return render_template(
        "staff/webhook.html",
        endpoint=endpoint,
        deliveries=deliveries[:DELIVERIES_PAGE],
        status=query["status"],
        statuses=DELIVERY_STATUSES,
        more=more,
    )


@webhooks_bp.post("/admin/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/replay")
@staff_requires("webhooks.manage")
def replay_delivery(webhook_id: int, delivery_id: int) -> Any:
    run_form(
        FormSchema(),
        lambda _d: webhooks.replay_delivery(g.actor, webhook_id, delivery_id),
        "The delivery will be posted again.",
    )
    return see_other("staff_webhooks.webhook_log", webhook_id=webhook_id)


@webhooks_bp.post("/admin/webhooks/<int:webhook_id>/replay")
@staff_requires("webhooks.manage")
def replay_since(webhook_id: int) -> Any:
    run_form(
        ReplaySinceForm(),
        lambda d: webhooks.replay_since(
            g.actor, webhook_id, after_change=d["after_change"], since=d["since"]
        ),
        "The changes will be posted again.",
    )
    return see_other("staff_webhooks.webhook_log", webhook_id=webhook_id)


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    add_staff_page(app, "staff_contacts.search", "Contacts", "contacts.read")
    if not any(rule.rule == "/" for rule in app.url_map.iter_rules()):
        app.add_url_rule("/", "staff_home", _home)
    csrf.exempt(upload)
    app.register_blueprint(imports_bp)
    add_staff_page(app, "staff_imports.import_list", "Imports", "imports.run")
    app.register_blueprint(requests_bp)
    add_staff_page(
        app, "staff_requests.inbox", "Privacy requests", "privacy_requests.read", "admin"
    )
    app.register_blueprint(webhooks_bp)
    add_staff_page(app, "staff_webhooks.webhook_list", "Webhooks", "webhooks.manage", "admin")
