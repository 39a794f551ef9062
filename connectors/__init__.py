"""CRM connectors (HubSpot, Salesforce; docs/connectors.md): above the domain packages,
which never import it. It reads decisions from the change feed and writes
through the domains' services."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from connectors import models, services, staff_pages, tasks  # noqa: F401
    from kernel import metrics

    staff_pages.register(app)
    from kernel.signals import (
        collect_change_receivers,
        collect_copy_deletions,
        collect_retention_exclusions,
    )

    collect_change_receivers.connect(services.receivers_told, weak=False)
    collect_copy_deletions.connect(services.copy_deletions, weak=False)
    collect_retention_exclusions.connect(services.first_sync_exclusions, weak=False)
    metrics.read_at_scrape(
        app,
        "consent_connector_last_success_age_seconds",
        "Seconds since the enabled CRM connector that succeeded longest ago last succeeded.",
        services.last_success_age_s,
    )
    metrics.read_at_scrape(
        app,
        "consent_connector_stopped",
        "Enabled CRM connectors stopped because the CRM refused their credentials.",
        services.stopped_count,
    )
    metrics.read_at_scrape(
        app,
        "consent_connector_deletions_owed",
        "Deletions the CRMs still owe after erasures and purges (retried at every sync).",
        services.deletions_owed,
    )
