"""Bad input tried as a new user would: a clear JSON error, the right status, nothing changed."""

from __future__ import annotations

import pytest

from tests.conftest import count_rows

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"email": "not-an-address", "country": "SE"}, 422, "invalid_email", None),
        ({"email": "a@@b.se"}, 422, "invalid_email", None),
        ({"name": "No Email"}, 422, "invalid_input", "email"),
        ({"email": "a@b.se", "country": "XX"}, 422, "unknown_country", "country"),
        ({"email": "a@b.se", "language": "zz"}, 422, "unknown_language", "language"),
        (
            {"email": "a@b.se", "basis": {"type": "gut_feeling", "source": "x"}},
            422,
            "invalid_input",
            "basis",
        ),
        ({"email": "a@b.se", "surprise": 1}, 422, "invalid_input", "surprise"),
        # Longer than the ledger's column: was a 500 on PostgreSQL (the injection test found it).
        (
            {"email": "a@b.se", "basis": {**CUSTOMER, "source": "s" * 33}},
            422,
            "invalid_input",
            "basis",
        ),
        (
            {
                "email": "a@b.se",
                "basis": {
                    "type": "consent",
                    "source": "x",
                    "topics": ["nope"],
                    "evidence": {
                        "obtained_at": "2026-01-01T00:00:00+00:00",
                        "policy_version": "1",
                        "wording": "w",
                    },
                },
            },
            422,
            "unknown_topic",
            "topic",
        ),
        (
            {
                "email": "a@b.se",
                "company": {
                    "name": "X",
                    "customer_since": "2024-01-01",
                    "relationship_ended_at": "2020-01-01",
                },
            },
            422,
            "invalid_relationship",
            "company",
        ),
    ],
)
def test_bad_contact_is_refused_and_changes_nothing(
    app, admin_api, body, status, code, field
) -> None:
    before = count_rows(app)
    response = admin_api.post("/api/v1/contacts", json=body)
    assert response.status_code == status
    error = response.json["error"]
    assert error["code"] == code
    assert error["message"]
    if field:
        assert field in error.get("fields", {}), error
    assert "Traceback" not in response.get_data(as_text=True)
    assert count_rows(app) == before


def test_unknown_topic_in_batch_check(app, admin_api) -> None:
    response = admin_api.post(
        "/api/v1/permissions/check", json={"emails": ["a@b.se"], "topic": "spam"}
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "unknown_topic"


def test_unknown_channel_in_batch_check(app, admin_api) -> None:
    response = admin_api.post(
        "/api/v1/permissions/check",
        json={"emails": ["a@b.se"], "topic": "events", "channel": "pigeon"},
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "unknown_channel"


def test_missing_token_is_401_with_a_hint(app, client) -> None:
    before = count_rows(app)
    response = client.post("/api/v1/contacts", json={"email": "a@b.se"})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "missing_token"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert count_rows(app) == before


def test_wrong_token_is_401(app, client) -> None:
    response = client.get("/api/v1/contacts/1", headers={"Authorization": "Bearer cst_made_up"})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "invalid_token"


def test_wrong_role_is_403_and_changes_nothing(app, api_as) -> None:
    sales = api_as("sales")
    before = count_rows(app)
    response = sales.post("/api/v1/contacts", json={"email": "a@b.se", "basis": CUSTOMER})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"
    assert count_rows(app) == before


def test_a_megabyte_of_json_is_refused_clearly(app, admin_api) -> None:
    before = count_rows(app)
    response = admin_api.post("/api/v1/contacts", json={"email": "a@b.se", "name": "x" * 1_100_000})
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert count_rows(app) == before


def test_broken_json_is_a_clear_error(app, admin_api) -> None:
    response = admin_api.client.post(
        "/api/v1/contacts",
        data="{not json",
        headers={**admin_api.headers, "Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert response.json["error"]["message"]


def test_objection_with_unknown_channel_changes_nothing(app, admin_api) -> None:
    contact_id = admin_api.post("/api/v1/contacts", json={"email": "a@b.se"}).json["id"]
    before = count_rows(app)
    response = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "telepathy"}
    )
    assert response.status_code == 422
    response = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection",
        json={"received_via": "phone", "channel": "pigeon"},
    )
    assert response.status_code == 422
    assert count_rows(app) == before


def test_unknown_route_under_api_is_json_404(client) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"
