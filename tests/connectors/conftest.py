"""A HubSpot stand-in per test, and the app pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.connectors.hubspot_standin import TOKEN, HubSpotStandIn, Server

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
