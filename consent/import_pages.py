"""Staff pages of CSV imports (marketing, admin): upload a file, read its report."""

from __future__ import annotations

import itertools
from typing import Any

from flask import Flask, current_app, flash, g, render_template, request
from marshmallow import ValidationError

from consent import imports
from consent.forms import ImportUploadForm, RejectionsPage
from crm import staff
from crm.views import add_staff_page, run_form, see_other, staff_blueprint
from extensions import csrf
from kernel.access import staff_requires
from kernel.errors import InvalidInput
from kernel.i18n import translate as _

bp = staff_blueprint("staff_imports", __name__)

# Rejected rows shown on one page of a batch's report.
REJECTIONS_PAGE = 200


@bp.get("/imports")
@staff_requires("imports.run")
def import_list() -> Any:
    """The upload form and the latest batches with their counts."""
    batches = imports.list_batches()
    names = staff.display_names(b.actor for b in batches)
    return render_template("staff/imports.html", batches=batches, names=names)


@bp.post("/imports")
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
        return imports.import_contacts(
            g.actor, file.stream, basis=data["basis"], source=data["source"], filename=file.filename
        )

    report = run_form(ImportUploadForm(), run, "Import finished.")
    if report is None:
        return see_other("staff_imports.import_list")
    return see_other("staff_imports.import_page", batch_id=report.batch_id)


@bp.get("/imports/<int:batch_id>")
@staff_requires("imports.run")
def import_page(batch_id: int) -> Any:
    """A batch's report: its counts and its rejected rows, a page at a time."""
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


def register(app: Flask) -> None:
    csrf.exempt(upload)
    app.register_blueprint(bp)
    add_staff_page(app, "staff_imports.import_list", "Imports", "imports.run")
