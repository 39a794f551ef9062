"""The data protection officer's pages: a home that gathers what the role is for
(the privacy-request inbox, the audit log, the records of processing) and the
records of processing themselves (GDPR art. 30), generated, never hand-written."""

from __future__ import annotations

from typing import Any

from flask import Flask, render_template

from consent import records
from kernel import i18n
from kernel.access import staff_requires
from kernel.models import Role
from kernel.pages import add_staff_page, set_home_page, staff_blueprint

bp = staff_blueprint("staff_dpo", __name__)


@bp.get("/dpo")
@staff_requires("processing_records.read")
def home() -> Any:
    return render_template("staff/dpo.html")


@bp.get("/dpo/records")
@staff_requires("processing_records.read")
def processing_records() -> Any:
    """The one-page record of processing, from the running policy and settings."""
    record = records.processing_records(i18n.current_language())
    return render_template("staff/records.html", record=record)


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    add_staff_page(app, "staff_dpo.home", "Data protection", "processing_records.read", "admin")
    # The DPO's work starts from requests and the log, not from the contact search.
    set_home_page(app, Role.DPO.value, "staff_dpo.home")
