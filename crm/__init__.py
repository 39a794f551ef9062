"""Companies, contacts, activities, staff access, retention: the lowest layer."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from crm import api, changed_since, cli, staff_pages, tasks
    from crm.retention import RetentionPolicy

    # Parsed at start-up so that a malformed rule stops the service, not a run.
    app.extensions["retention_policy"] = RetentionPolicy.from_mapping(app.config["POLICY"])
    app.config.setdefault("RETENTION_BATCH_SIZE", 1000)
    app.config.setdefault("RETENTION_LOCK_STALE_SECONDS", 300)
    app.config.setdefault("RETENTION_DAILY_AT", "02:30")
    app.config.setdefault("RETENTION_BATCH_PAUSE", 0)
    api.register(app)
    cli.register(app)
    staff_pages.register(app)
    tasks.register(app)
    changed_since.connect_signals()
    _read_at_scrape(app)


def _read_at_scrape(app: Flask) -> None:
    from crm.retention.run import last_run_age_seconds
    from kernel import metrics

    metrics.read_at_scrape(
        app,
        "consent_retention_last_run_age_seconds",
        "Seconds since the last completed retention run ended (absent before the first).",
        last_run_age_seconds,
    )
