"""Companies, contacts, activities, staff access, retention: the lowest layer."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from crm import account_pages, api, changed_since, cli, staff_pages, tasks  # noqa: F401
    from crm.retention import RetentionPolicy
    from kernel.models import Role

    # A misspelt role would silently require nothing: refuse to start instead.
    unknown = set(app.config.setdefault("MFA_REQUIRED_ROLES", [])) - {r.value for r in Role}
    if unknown:
        raise RuntimeError(
            f"MFA_REQUIRED_ROLES names unknown roles {', '.join(sorted(unknown))}; "
            f"use a comma list of: {', '.join(r.value for r in Role)}."
        )

    # Parsed at start-up so that a malformed rule stops the service, not a run.
    app.extensions["retention_policy"] = RetentionPolicy.from_mapping(app.config["POLICY"])
    api.register(app)
    cli.register(app)
    staff_pages.register(app)
    account_pages.register(app)
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
