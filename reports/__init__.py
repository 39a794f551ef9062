"""Reports across the domains: the staff dashboard (docs/dashboard.md).

Above ``mailing``: it reads crm, consent and mailing, and none of them imports it.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from reports import models, staff_pages, tasks  # noqa: F401

    staff_pages.register(app)
