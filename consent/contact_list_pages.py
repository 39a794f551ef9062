"""The contact list (/staff/contacts): filters, keyset pages, the CSV export and
the bulk actions' confirmation and progress (docs/staff-pages.md)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, render_template, request, stream_with_context
from marshmallow import ValidationError

from consent import bulk_actions, contact_list
from consent.contact_filters import filter_args, filter_choices, parse_filter
from consent.forms import BulkActionForm
from kernel.access import staff_requires
from kernel.errors import N_, InvalidInput
from kernel.pages import add_staff_page, see_other, staff_blueprint
from kernel.timestamps import utcnow

bp = staff_blueprint("contact_list", __name__)

# What each bulk action is called and what it does, in the words staff read
# (translated in the template).
BULK_LABELS = {
    bulk_actions.END_INDUSTRY_LIST: "End the industry-list basis",
    bulk_actions.SET_LEGAL_HOLD: "Set a legal hold",
    bulk_actions.LIFT_LEGAL_HOLD: "Lift the legal hold",
}
BULK_HELP = {
    bulk_actions.END_INDUSTRY_LIST: "Each contact that holds an industry-list basis gets a "
    "basis-ended event in its ledger; marketing on that ground stops.",
    bulk_actions.SET_LEGAL_HOLD: "Erasure and retention skip each contact until the hold is "
    "lifted. Contacts that already have a hold keep theirs.",
    bulk_actions.LIFT_LEGAL_HOLD: "Each contact's legal hold is lifted; erasure and retention "
    "apply to it again.",
}


def _choices() -> dict[str, Any]:
    """What the filter form offers, and the bulk actions."""
    return {
        **filter_choices(),
        "bulk_actions": bulk_actions.ACTIONS,
        "bulk_labels": BULK_LABELS,
    }


@bp.get("/contacts")
@staff_requires("contacts.list")
def contacts() -> Any:
    """Every contact a filter names, fifty at a time from a cursor."""
    f = parse_filter(request.args)
    page = contact_list.list_page(
        g.actor, f, contact_list.parse_cursor(request.args.get("after")), utcnow()
    )
    return render_template("staff/contacts.html", f=f, args=filter_args(f), page=page, **_choices())


@bp.get("/contacts/export.csv")
@staff_requires("contacts.list_export")
def export() -> Any:
    """The filtered list as CSV, streamed; ``format=excel`` writes semicolons and a
    byte-order mark for a Nordic Excel, the default commas for programs."""
    f = parse_filter(request.args)
    excel = request.args.get("format", "csv")
    if excel not in ("csv", "excel"):
        raise InvalidInput(N_("The format must be csv or excel."), fields={"format": ["Unknown."]})
    lines = contact_list.export_lines(
        g.actor, f, utcnow(), delimiter=";" if excel == "excel" else ",", bom=excel == "excel"
    )
    return Response(
        stream_with_context(lines),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'},
    )


@bp.get("/contacts/bulk")
@staff_requires("contacts.bulk")
def confirm_bulk() -> Any:
    """How many contacts the action would change, and the button that does it."""
    f = parse_filter(request.args)
    action = bulk_actions.check_action(request.args.get("action", ""))
    at = utcnow()
    return render_template(
        "staff/contacts_bulk.html",
        f=f,
        args=filter_args(f),
        action=action,
        count=bulk_actions.count_targets(f, action, at),
        as_of=at,
        bulk_labels=BULK_LABELS,
        bulk_help=BULK_HELP,
    )


@bp.post("/contacts/bulk")
@staff_requires("contacts.bulk")
def start_bulk() -> Any:
    f = parse_filter(request.form)
    try:
        data = BulkActionForm().load(request.form.to_dict())
    except ValidationError as exc:
        raise InvalidInput(N_("The confirmation is not valid."), fields=exc.messages) from exc  # type: ignore[arg-type]
    run = bulk_actions.queue_bulk_action(
        g.actor,
        f,
        data["action"],
        reason=data["reason"],
        confirmed=data["confirmed"],
        at=data["as_of"],
    )
    return see_other("contact_list.bulk_run", run_id=run.id)


@bp.get("/contacts/bulk/<int:run_id>")
@staff_requires("contacts.bulk")
def bulk_run(run_id: int) -> Any:
    """A bulk action's progress while the worker runs it, and its result."""
    return render_template(
        "staff/contacts_bulk_run.html", run=bulk_actions.get_run(run_id), bulk_labels=BULK_LABELS
    )


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    add_staff_page(app, "contact_list.contacts", "Contact list", "contacts.list")
