"""Roles on every API route: each role against each route, the expected status."""

from __future__ import annotations

import io

import pytest

from kernel.access import ACTIONS, may
from kernel.models import Role

# (method, path, action the route requires)
ROUTES = [
    ("GET", "/api/v1/contacts?email=a@b.se", "contacts.read"),
    # The changed-since read is a bulk read: the roles that sync contacts in.
    ("GET", "/api/v1/contacts?updated_after=2000-01-01T00:00:00Z", "contacts.sync"),
    ("POST", "/api/v1/contacts", "contacts.write"),
    ("GET", "/api/v1/contacts/{id}", "contacts.read"),
    ("PATCH", "/api/v1/contacts/{id}", "contacts.write"),
    ("GET", "/api/v1/contacts/{id}/permissions", "permissions.read"),
    ("POST", "/api/v1/permissions/check", "permissions.read"),
    ("GET", "/api/v1/contacts/{id}/events", "contacts.read"),
    ("POST", "/api/v1/contacts/{id}/activities", "activities.create"),
    ("GET", "/api/v1/contacts/{id}/activities", "contacts.read"),
    ("POST", "/api/v1/contacts/{id}/objection", "objections.record"),
    ("POST", "/api/v1/contacts/{id}/withdrawals", "withdrawals.record"),
    ("GET", "/api/v1/contacts/{id}/export", "contacts.export"),
    ("DELETE", "/api/v1/contacts/{id}", "contacts.erase"),
    ("POST", "/api/v1/contacts/{id}/restriction", "contacts.restrict"),
    ("DELETE", "/api/v1/contacts/{id}/restriction", "contacts.restrict"),
    ("PUT", "/api/v1/contacts/{id}/legal-hold", "contacts.legal_hold"),
    ("DELETE", "/api/v1/contacts/{id}/legal-hold", "contacts.legal_hold"),
    ("GET", "/api/v1/audit", "audit.read"),
    ("POST", "/api/v1/imports", "imports.run"),
    ("GET", "/api/v1/imports/{batch}", "imports.run"),
    ("GET", "/api/v1/imports/{batch}/rejections", "imports.run"),
    ("POST", "/api/v1/policies", "policies.manage"),
    ("GET", "/api/v1/policies", "policies.read"),
    ("POST", "/api/v1/webhooks", "webhooks.manage"),
    ("GET", "/api/v1/webhooks", "webhooks.manage"),
    ("GET", "/api/v1/privacy-requests", "privacy_requests.read"),
    ("GET", "/api/v1/changes?limit=10", "changes.read"),
    ("DELETE", "/api/v1/webhooks/{wid}", "webhooks.manage"),
    ("GET", "/api/v1/webhooks/{wid}/deliveries", "webhooks.manage"),
    ("POST", "/api/v1/webhooks/{wid}/replay", "webhooks.manage"),
    ("POST", "/api/v1/webhooks/{wid}/deliveries/{did}/replay", "webhooks.manage"),
    ("GET", "/api/v1/retention/preview?as_of=2027-01-01", "retention.read"),
    ("GET", "/api/v1/retention/runs", "retention.read"),
    ("POST", "/api/v1/campaigns", "campaigns.manage"),
    ("POST", "/api/v1/campaigns/{cid}/send", "campaigns.manage"),
    ("GET", "/api/v1/campaigns/{cid}", "campaigns.manage"),
    ("POST", "/api/v1/bounces", "bounces.record"),
    ("POST", "/api/v1/web-visits", "contacts.write"),
    ("GET", "/api/v1/contacts/{id}/web-visits", "contacts.read"),
    ("PUT", "/api/v1/web-visitors/visitor-0001/contact", "contacts.write"),
    ("POST", "/api/v1/contacts/{id}/web-tracking/withdrawal", "withdrawals.record"),
]
# R19: a visitor is linked only with the contact's consent to web tracking.
WEB_CONSENT = {
    "type": "consent",
    "source": "cookie-banner",
    "topics": ["web-tracking"],
    "evidence": {
        "obtained_at": "2026-01-01T00:00:00+00:00",
        "policy_version": "1.0",
        "wording": "Allow",
    },
}
# What must exist before the call for an allowed role to succeed.
SETUP = {
    ("DELETE", "/api/v1/contacts/{id}/restriction"): ("POST", "/api/v1/contacts/{id}/restriction"),
    ("DELETE", "/api/v1/contacts/{id}/legal-hold"): ("PUT", "/api/v1/contacts/{id}/legal-hold"),
}
CAMPAIGN = {
    "topic": "newsletter",
    "subject_sv": "Nyheter",
    "body_sv": "Hej!",
    "subject_en": "News",
    "body_en": "Hello!",
}
BODIES = {
    "/api/v1/campaigns": CAMPAIGN,
    "/api/v1/bounces": {"email": "a@b.se", "type": "soft", "source": "crm"},
    "/api/v1/contacts": {"email": "a@b.se"},
    "/api/v1/contacts/{id}": {"name": "New name"},
    "/api/v1/permissions/check": {"emails": ["a@b.se"], "topic": "events"},
    "/api/v1/contacts/{id}/activities": {
        "kind": "call",
        "occurred_at": "2026-01-01T00:00:00+00:00",
    },
    "/api/v1/contacts/{id}/objection": {"received_via": "phone"},
    "/api/v1/contacts/{id}/withdrawals": {"received_via": "phone", "recorded_by": "crm:sara"},
    "/api/v1/contacts/{id}/restriction": {"received_via": "letter"},
    "/api/v1/contacts/{id}/legal-hold": {"reason": "Dispute over invoice 1234"},
    "/api/v1/policies": {"version": "2.0", "url": "https://example.com/privacy"},
    "/api/v1/webhooks": {"url": "https://crm.example.com/hooks/consent"},
    "/api/v1/webhooks/{wid}/replay": {"since": "2000-01-01T00:00:00+00:00"},
    "/api/v1/web-visits": {
        "visitor_id": "visitor-0001",
        "page": "/products",
        "visited_at": "2026-01-01T00:00:00+00:00",
    },
    "/api/v1/contacts/{id}/web-tracking/withdrawal": {"received_via": "web"},
}
PLACEHOLDERS = {
    "{id}": "<int:contact_id>",
    "{wid}": "<int:webhook_id>",
    "{did}": "<int:delivery_id>",
    "{batch}": "<int:batch_id>",
    "{cid}": "<int:campaign_id>",
}


def _rule(path: str) -> str:
    path = path.split("?")[0].replace("visitor-0001", "<visitor_id>")
    for placeholder, converter in PLACEHOLDERS.items():
        path = path.replace(placeholder, converter)
    return path


def _import(client, headers):  # type: ignore[no-untyped-def]
    data = {
        "basis": "customer",
        "source": "crm",
        "file": (io.BytesIO(b"email\nx@kund.se\n"), "x.csv"),
    }
    return client.post("/api/v1/imports", headers=headers, data=data)


def test_every_api_route_is_in_the_matrix(app) -> None:
    guarded = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        and not rule.rule.endswith("openapi.json")
        # The interactive reference renders the public document: no data, no role.
        and not rule.rule.startswith("/api/v1/docs")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    listed = {(_rule(path), method) for method, path, _ in ROUTES}
    assert guarded <= listed, guarded - listed


@pytest.mark.parametrize("role", [r.value for r in Role])
@pytest.mark.parametrize(("method", "path", "action"), ROUTES)
def test_role_matrix(app, api_as, role, method, path, action) -> None:
    admin = api_as("admin")
    contact_id = admin.post("/api/v1/contacts", json={"email": "a@b.se", "country": "SE"}).json[
        "id"
    ]
    batch_id = _import(admin.client, admin.headers).json["batch_id"]
    if (method, path) in SETUP:
        before, before_path = SETUP[(method, path)]
        admin.client.open(
            before_path.replace("{id}", str(contact_id)),
            method=before,
            json=BODIES[before_path],
            headers=admin.headers,
        )
    webhook_id = admin.post("/api/v1/webhooks", json=BODIES["/api/v1/webhooks"]).json["id"]
    campaign_id = admin.post("/api/v1/campaigns", json=CAMPAIGN).json["id"]
    delivery_id = 0
    if "{did}" in path:  # a delivery owed to the receiver: the feed replayed to it
        admin.post(
            f"/api/v1/webhooks/{webhook_id}/replay", json=BODIES["/api/v1/webhooks/{wid}/replay"]
        )
        delivery_id = admin.get(f"/api/v1/webhooks/{webhook_id}/deliveries").json[0]["id"]
    caller = api_as(role)
    url = (
        path.replace("{id}", str(contact_id))
        .replace("{wid}", str(webhook_id))
        .replace("{batch}", str(batch_id))
        .replace("{cid}", str(campaign_id))
        .replace("{did}", str(delivery_id))
    )
    body = BODIES.get(path.split("?")[0])
    if (method, path) == ("POST", "/api/v1/imports"):
        response = _import(caller.client, caller.headers)
    elif path.startswith("/api/v1/web-visitors/"):
        admin.post("/api/v1/contacts", json={"email": "a@b.se", "basis": WEB_CONSENT})
        response = caller.client.put(url, json={"contact_id": contact_id}, headers=caller.headers)
    else:
        response = caller.client.open(url, method=method, json=body, headers=caller.headers)
    if may(role, action):
        assert response.status_code in (200, 201, 202), response.json
    else:
        assert response.status_code == 403
        assert response.json["error"]["code"] == "forbidden"


def test_unknown_actions_and_roles_are_refused() -> None:
    assert not may("admin", "contacts.launch_missiles")
    assert not may(None, "contacts.read")
    assert not may("intern", "contacts.read")
    assert all(may("admin", action) for action in ACTIONS)
