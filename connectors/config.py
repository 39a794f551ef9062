"""Which connectors this installation runs, and each one built from the settings.

Read from ``current_app.config`` at every run (not once at start), so that
an administrator's new token or mapping takes effect at the next turn.
"""

from __future__ import annotations

from flask import current_app

from connectors import hubspot, salesforce
from connectors.base import Connector, RetryPolicy
from kernel.settings.declaration import ERASURE_MODES

DELETE, ANONYMISE = ERASURE_MODES

# The actor that syncs the enabled connectors (connectors.tasks), by name.
SYNC_JOB = "sync_connectors"
# Every connector this code knows: its name as CONNECTORS_ENABLED and the
# external ids spell it.
KNOWN = (hubspot.NAME, salesforce.NAME)


def enabled() -> list[str]:
    names = list(current_app.config.get("CONNECTORS_ENABLED") or [])
    unknown = sorted(set(names) - set(KNOWN))
    if unknown:
        raise RuntimeError(
            f"CONNECTORS_ENABLED names unknown connectors: {', '.join(unknown)}; "
            f"known: {', '.join(KNOWN)}."
        )
    return names


def erasure(name: str) -> str:
    """How connector ``name`` removes the CRM's copy: ``delete`` or ``anonymise``
    (the ``<NAME>_ERASURE`` setting; ``delete`` when the setting is absent)."""
    mode = str(current_app.config.get(f"{name.upper()}_ERASURE") or DELETE)
    if mode not in ERASURE_MODES:
        raise RuntimeError(f"{name.upper()}_ERASURE must be one of {', '.join(ERASURE_MODES)}.")
    return mode


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
    if name == salesforce.NAME:
        if not config.get("SALESFORCE_INSTANCE_URL"):
            raise RuntimeError("SALESFORCE_INSTANCE_URL is not set.")
        return salesforce.Salesforce(
            instance_url=config["SALESFORCE_INSTANCE_URL"],
            purposes=salesforce.parse_mapping(config["SALESFORCE_DATA_USE_PURPOSES"]),
            interactions=config["SALESFORCE_INTERACTIONS"],
            access_token=config.get("SALESFORCE_ACCESS_TOKEN"),
            consumer_key=config.get("SALESFORCE_CONSUMER_KEY"),
            consumer_secret=config.get("SALESFORCE_CONSUMER_SECRET"),
            api_version=config["SALESFORCE_API_VERSION"],
            customer_types=config["SALESFORCE_CUSTOMER_TYPES"],
            fields=salesforce.Fields(
                may_market=config["SALESFORCE_MAY_MARKET_FIELD"],
                explanation=config["SALESFORCE_EXPLANATION_FIELD"],
                legal_basis=config["SALESFORCE_LEGAL_BASIS_FIELD"],
                customer_since=config.get("SALESFORCE_CUSTOMER_SINCE_FIELD"),
            ),
        )
    raise RuntimeError(f"Unknown connector {name!r}.")
