"""A stand-in per test for each CRM (HubSpot, Salesforce), the app pointed at
it, and the helpers every connector's end-to-end tests share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.connectors.hubspot_standin import TOKEN, HubSpotStandIn, Server
from tests.connectors.salesforce_standin import TOKEN as SALESFORCE_TOKEN
from tests.connectors.salesforce_standin import SalesforceStandIn
from tests.connectors.salesforce_standin import Server as SalesforceServer

NEWSLETTER = "501"
EVENTS = "502"


@pytest.fixture
def hubspot(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubSpotStandIn]:
    with Server() as server:
        server.standin.subscription_names.update({NEWSLETTER: "Newsletter", EVENTS: "Events"})
        for key, value in {
            "CONNECTORS_ENABLED": ["hubspot"],
            "HUBSPOT_ACCESS_TOKEN": TOKEN,
            "HUBSPOT_BASE_URL": server.base_url,
            "HUBSPOT_SUBSCRIPTION_TYPES": [f"newsletter={NEWSLETTER}", f"events={EVENTS}"],
            "HUBSPOT_INTERACTIONS": ["calls", "meetings"],
            "CONNECTOR_RETRIES": 4,
            # The tests' retries wait nothing (a recorded sleep checks the waits asked for).
            "CONNECTOR_BACKOFF_S": 0.0,
            # Every test sync reads the CRM in full (production waits an hour between passes).
            "CONNECTOR_FULL_PASS_INTERVAL_S": 0.0,
        }.items():
            monkeypatch.setitem(app.config, key, value)
        yield server.standin


# Shared by every connector's end-to-end tests -------------------------------------------


def run_sync(app: Any, name: str, waits: list[float] | None = None) -> Any:
    """One sync of connector ``name`` as the worker runs it; retries wait
    nothing and record the waits asked for in ``waits``."""
    from connectors import sync
    from connectors.base import RetryPolicy
    from extensions import db

    policy = RetryPolicy(
        tries=4, backoff_s=0.5, max_wait_s=60, sleep=(waits if waits is not None else []).append
    )
    with app.app_context():
        result = sync.sync(name, policy=policy)
        db.session.remove()
        return result


def contact_of(app: Any, name: str, remote_id: str) -> Any:
    """The contact here that carries ``name``'s external id ``remote_id``, detached; or None."""
    from crm import external_ids
    from crm.models import Contact
    from extensions import db

    with app.app_context():
        contact_id = external_ids.find_contact(name, remote_id)
        found = db.session.get(Contact, contact_id) if contact_id else None
        if found is not None:
            db.session.expunge(found)
        return found


@pytest.fixture
def salesforce(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[SalesforceStandIn]:
    """A Salesforce stand-in (TLS on 127.0.0.1) with two data use purposes,
    and the app pointed at it."""
    with SalesforceServer() as server:
        standin = server.standin
        newsletter = standin.add("DataUsePurpose", {"Name": "Newsletter"})
        events = standin.add("DataUsePurpose", {"Name": "Events"})
        standin.purposes = {"newsletter": newsletter, "events": events}
        # simple-salesforce calls https:// only; requests trusts the stand-in's certificate.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)
        for key, value in {
            "CONNECTORS_ENABLED": ["salesforce"],
            "SALESFORCE_INSTANCE_URL": server.instance_url,
            "SALESFORCE_ACCESS_TOKEN": SALESFORCE_TOKEN,
            "SALESFORCE_DATA_USE_PURPOSES": [f"newsletter={newsletter}", f"events={events}"],
            "SALESFORCE_INTERACTIONS": ["calls", "meetings"],
            "CONNECTOR_RETRIES": 4,
            "CONNECTOR_BACKOFF_S": 0.0,
            "CONNECTOR_FULL_PASS_INTERVAL_S": 0.0,
        }.items():
            monkeypatch.setitem(app.config, key, value)
        yield standin
