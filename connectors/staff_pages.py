"""The admin's page of the CRM connectors: state, cursors' progress, skipped
records with their reasons, deletions still owed; resume a stopped one;
read the CRM in full again."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, render_template

from connectors import services
from kernel.access import staff_requires
from kernel.pages import FormSchema, add_staff_page, run_form, see_other, staff_blueprint

bp = staff_blueprint("staff_connectors", __name__)


class ResumeForm(FormSchema):
    pass


@bp.get("/connectors")
@staff_requires("connectors.read")
def connector_list() -> Any:
    return render_template("staff/connectors.html", connectors=services.overview())


@bp.post("/connectors/<name>/resume")
@staff_requires("connectors.manage")
def resume(name: str) -> Any:
    run_form(
        ResumeForm(),
        lambda d: services.resume(g.actor, name),
        "The connector runs again at its next turn.",
    )
    return see_other("staff_connectors.connector_list")


class ResyncForm(FormSchema):
    pass


@bp.post("/connectors/<name>/full-resync")
@staff_requires("connectors.manage")
def full_resync(name: str) -> Any:
    run_form(
        ResyncForm(),
        lambda d: services.full_resync(g.actor, name),
        "The connector reads every CRM record again at its next turn.",
    )
    return see_other("staff_connectors.connector_list")


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    add_staff_page(app, "staff_connectors.connector_list", "Connectors", "connectors.read", "admin")
