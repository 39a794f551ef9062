"""The change feed as a CRM reads it: every item type for its cause, tombstones
without personal data, a cursor that resumes exactly, and its bad input."""

from __future__ import annotations

import json

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}


def create(api, email="anna@kund.se", **extra):  # type: ignore[no-untyped-def]
    body = {"email": email, "name": "Anna Andersson", "country": "SE", "language": "sv", **extra}
    response = api.post("/api/v1/contacts", json=body)
    assert response.status_code == 201, response.json
    return response.json["id"]


def read_all(api, after=None, limit=100):  # type: ignore[no-untyped-def]
    items, cursor = [], after
    while True:
        query = f"/api/v1/changes?limit={limit}" + (f"&after={cursor}" if cursor else "")
        page = api.get(query)
        assert page.status_code == 200, page.json
        items.extend(page.json["items"])
        cursor = page.json["next_cursor"]
        if not page.json["has_more"]:
            return items, cursor


def test_created_contact_and_its_decisions_are_items(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = create(marketing, basis=CUSTOMER, company={"name": "Kund AB"})
    items, _ = read_all(marketing)
    types = [(i["type"], i["contact_id"]) for i in items]
    assert ("contact.created", contact_id) in types
    assert ("contact.decisions_changed", contact_id) in types
    created = next(i for i in items if i["type"] == "contact.created")
    assert created["contact"]["email"] == "anna@kund.se"
    decided = next(i for i in items if i["type"] == "contact.decisions_changed")
    assert any(d["reason"] == "customer" and d["allowed"] for d in decided["decisions"])


def test_erasure_is_a_tombstone_without_personal_data(app, api_as, admin_api) -> None:
    marketing = api_as("marketing")
    contact_id = create(marketing, basis=CUSTOMER)
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}").status_code in (200, 204)
    items, _ = read_all(marketing)
    erased = [i for i in items if i["type"] == "contact.erased"]
    assert [i["contact_id"] for i in erased] == [contact_id]
    text = json.dumps(items)
    assert "anna@kund.se" not in text
    assert "Anna" not in text
    assert all(i["tombstone"] for i in items if i["contact_id"] == contact_id)
