"""/staff/dashboard: the numbers of the whole service, each chart with its table."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, render_template

from kernel.access import staff_requires
from kernel.pages import add_staff_page, staff_blueprint
from kernel.timestamps import utcnow
from reports import charts
from reports.dashboard import build_dashboard
from reports.sections import ALLOWED_REASONS, BLOCKING_REASONS

bp = staff_blueprint("staff_dashboard", __name__)
# The charts: images with their own policy (reports/charts.py says why).
# An SVG shown as an image runs no script; opened on its own it may style
# itself and nothing else (no script, no fetch, no frame).
CHART_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
chart_bp = staff_blueprint("dashboard_charts", __name__, policy=CHART_POLICY)


@bp.get("/dashboard")
@staff_requires("dashboard.read")
def dashboard() -> Any:
    board = build_dashboard(utcnow())
    return render_template(
        "staff/dashboard.html",
        board=board,
        allowed_reasons=ALLOWED_REASONS,
        blocking_reasons=BLOCKING_REASONS,
        refresh_minutes=round(float(current_app.config["DASHBOARD_REFRESH_INTERVAL_S"]) / 60),
    )


@chart_bp.get("/dashboard/charts/<any(reach, weekly, campaigns, retention, requests):name>.svg")
@staff_requires("dashboard.read")
def chart(name: str) -> Response:
    body = charts.CHARTS[name](build_dashboard(utcnow()))
    return Response(body, mimetype="image/svg+xml")


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(chart_bp)
    add_staff_page(app, "staff_dashboard.dashboard", "Dashboard", "dashboard.read")
