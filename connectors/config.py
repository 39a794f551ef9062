"""Which connectors this installation runs, and each one built from the settings.

Read from ``current_app.config`` at every run (not once at start), so that
an administrator's new token or mapping takes effect at the next turn.
"""

from __future__ import annotations

from flask import current_app

from connectors import hubspot
from connectors.base import Connector, RetryPolicy

# The actor that syncs the enabled connectors (connectors.tasks), by name.
SYNC_JOB = "sync_connectors"
# Every connector this code knows: its name as CONNECTORS_ENABLED and the
# external ids spell it.
KNOWN = (hubspot.NAME,)


def enabled() -> list[str]:
    names = list(current_app.config.get("CONNECTORS_ENABLED") or [])
    unknown = sorted(set(names) - set(KNOWN))
    if unknown:
        raise RuntimeError(
            f"CONNECTORS_ENABLED names unknown connectors: {', '.join(unknown)}; "
            f"known: {', '.join(KNOWN)}."
        )
    return names


def retry_policy() -> RetryPolicy:
    config = current_app.config
    return RetryPolicy(
        tries=int(config["CONNECTOR_RETRIES"]),
        backoff_s=float(config["CONNECTOR_BACKOFF_S"]),
        max_wait_s=float(config["CONNECTOR_MAX_WAIT_S"]),
        pass_interval_s=float(config["CONNECTOR_FULL_PASS_INTERVAL_S"]),
        read_overlap_s=float(config["CONNECTOR_READ_OVERLAP_S"]),
    )


def build(name: str) -> Connector:
    """The connector ``name`` as configured; RuntimeError naming what is missing."""
    config = current_app.config
    if name == hubspot.NAME:
        token = config.get("HUBSPOT_ACCESS_TOKEN")
        if not token:
            raise RuntimeError("HUBSPOT_ACCESS_TOKEN (or HUBSPOT_ACCESS_TOKEN_FILE) is not set.")
        return hubspot.HubSpot(
            token=token,
            base_url=config["HUBSPOT_BASE_URL"],
            subscription_types=hubspot.parse_mapping(config["HUBSPOT_SUBSCRIPTION_TYPES"]),
            interactions=config["HUBSPOT_INTERACTIONS"],
            consent_policy_version=config.get("HUBSPOT_CONSENT_POLICY_VERSION"),
        )
    raise RuntimeError(f"Unknown connector {name!r}.")
