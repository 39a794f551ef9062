"""Companies, contacts, activities, staff access, retention: the lowest layer."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from crm import api, changed_since, cli, staff_pages, tasks  # noqa: F401
    from crm.retention import RetentionPolicy

    # Parsed at start-up so that a malformed rule stops the service, not a run.
    app.extensions["retention_policy"] = RetentionPolicy.from_mapping(app.config["POLICY"])
    api.register(app)
    cli.register(app)
    staff_pages.register(app)
    changed_since.connect_signals()
