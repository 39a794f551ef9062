"""``POST /api/v1/bounces``: a bounce or complaint another system saw, through the one path."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from extensions import db
from kernel.api_fields import EMAIL_MAX_LENGTH, EMAIL_PATTERN
from tests.conftest import count_rows
from tests.mailing.bounce_helpers import mailed_contacts, newsletter_reason

ANNA = "anna.kund@kund.example"


@pytest.fixture
def anna(app: Any, _mail_folder: str) -> dict[str, Any]:
    ids, campaign_id, message_ids = mailed_contacts(app, [ANNA])
    return {"id": ids[0], "campaign": campaign_id, "message_id": message_ids[ANNA]}


def _bounce_reports(app: Any) -> list[tuple[str, str, str | None, int | None]]:
    from consent.models import BounceReport

    with app.app_context():
        rows = db.session.execute(
            sa.select(
                BounceReport.type,
                BounceReport.source,
                BounceReport.status,
                BounceReport.campaign_id,
            ).order_by(BounceReport.id)
        ).all()
        db.session.remove()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _audit(app: Any, action: str) -> list[tuple[str, int | None, str | None]]:
    from crm.models import AuditEntry

    with app.app_context():
        rows = db.session.execute(
            sa.select(AuditEntry.actor, AuditEntry.contact_id, AuditEntry.detail).where(
                AuditEntry.action == action
            )
        ).all()
        db.session.remove()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_reported_hard_bounce_makes_the_address_undeliverable(app, api_as, anna) -> None:
    marketing = api_as("marketing")
    response = marketing.post(
        "/api/v1/bounces",
        json={
            "email": "Anna.Kund@KUND.example",
            "type": "hard",
            "source": "mailgun",
            "status": "5.1.1",
            "diagnostic": "smtp; 550 5.1.1 unknown user",
            "message_id": anna["message_id"],
        },
    )

    assert response.status_code == 200, response.json
    assert response.json == {"outcome": "recorded", "reason": "undeliverable"}
    assert newsletter_reason(marketing, anna["id"]) == "undeliverable"
    # The evidence names the way in (never a bare provider's name) and the campaign.
    assert _bounce_reports(app) == [("hard", "api:mailgun", "5.1.1", anna["campaign"])]
    [(actor, contact_id, detail)] = _audit(app, "bounce.report")
    assert actor.startswith("token:marketing-") and contact_id == anna["id"]
    assert ANNA not in (detail or "")


def test_a_reported_complaint_is_an_objection(api_as, anna) -> None:
    admin = api_as("admin")
    response = admin.post(
        "/api/v1/bounces", json={"email": ANNA, "type": "complaint", "source": "crm"}
    )
    assert response.json == {"outcome": "recorded", "reason": "objection"}
    assert newsletter_reason(admin, anna["id"]) == "objection"


def test_a_soft_bounce_alone_changes_no_decision(api_as, anna) -> None:
    admin = api_as("admin")
    response = admin.post("/api/v1/bounces", json={"email": ANNA, "type": "soft", "source": "crm"})
    assert response.json == {"outcome": "recorded", "reason": "soft_bounce"}
    assert newsletter_reason(admin, anna["id"]) == "consent"


def test_the_same_report_twice_is_recorded_once(app, api_as, anna) -> None:
    admin = api_as("admin")
    body = {"email": ANNA, "type": "hard", "source": "crm", "message_id": anna["message_id"]}
    assert admin.post("/api/v1/bounces", json=body).json["outcome"] == "recorded"
    assert admin.post("/api/v1/bounces", json=body).json == {
        "outcome": "duplicate",
        "reason": "duplicate",
    }
    assert len(_bounce_reports(app)) == 1


def test_a_report_about_mail_we_never_sent_changes_nothing_and_tells_nothing(
    app, api_as, anna
) -> None:
    """An address that is a contact we never mailed and one we do not know get
    the same answer: the report names no message of ours."""
    marketing = api_as("marketing")
    known = marketing.post(
        "/api/v1/contacts", json={"email": "never.mailed@kund.example", "country": "SE"}
    )
    assert known.status_code in (200, 201), known.json
    before = count_rows(app)

    answers = [
        marketing.post("/api/v1/bounces", json={"email": email, "type": "hard", "source": "crm"})
        for email in ("never.mailed@kund.example", "nobody.at.all@kund.example")
    ]

    assert [(a.status_code, a.json) for a in answers] == [
        (200, {"outcome": "ignored", "reason": "not_our_message"})
    ] * 2
    after = count_rows(app)
    assert after.pop("audit_entry") == before.pop("audit_entry") + 2
    assert after == before


@pytest.mark.parametrize("role", ["sales", "dpo"])
def test_roles_that_run_no_mailings_may_not_report_bounces(app, api_as, anna, role) -> None:
    caller = api_as(role)
    before = count_rows(app)
    response = caller.post("/api/v1/bounces", json={"email": ANNA, "type": "hard", "source": "crm"})
    assert (response.status_code, response.json["error"]["code"]) == (403, "forbidden")
    assert count_rows(app) == before


def test_no_token_no_report(app, client, anna) -> None:
    response = client.post("/api/v1/bounces", json={"email": ANNA, "type": "hard", "source": "x"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": ANNA, "type": "bounced", "source": "crm"}, "type"),
        ({"email": "not-an-address", "type": "hard", "source": "crm"}, "email"),
        ({"email": ANNA, "type": "hard", "source": "<script>"}, "source"),
        ({"email": ANNA, "type": "hard", "source": ""}, "source"),
        ({"email": ANNA, "type": "hard", "source": "crm", "status": "6.1.1"}, "status"),
        ({"email": ANNA, "type": "hard", "source": "crm", "diagnostic": "x" * 1001}, "diagnostic"),
        ({"email": ANNA, "type": "hard", "source": "crm", "message_id": "x" * 256}, "message_id"),
        ({"email": ANNA, "type": "hard", "source": "crm", "contact_id": 1}, "contact_id"),
        ({"type": "hard", "source": "crm"}, "email"),
    ],
    ids=[
        "type",
        "email",
        "source-markup",
        "source-empty",
        "status",
        "diagnostic",
        "message-id",
        "unknown-field",
        "no-email",
    ],
)
def test_a_bad_report_is_refused_with_the_field_and_changes_nothing(
    app, admin_api, anna, body, field
) -> None:
    before = count_rows(app)
    response = admin_api.post("/api/v1/bounces", json=body)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    assert count_rows(app) == before


def test_the_openapi_document_declares_what_the_server_enforces(client) -> None:
    spec = client.get("/api/v1/openapi.json").json
    schema = spec["components"]["schemas"]["BounceReport"]
    properties = schema["properties"]
    assert sorted(schema["required"]) == ["email", "source", "type"]
    assert properties["type"]["enum"] == ["hard", "soft", "complaint"]
    assert properties["email"]["format"] == "email"
    # The address as the server reads it (kernel.api_fields.Email), not any string.
    assert properties["email"]["pattern"] == EMAIL_PATTERN
    assert properties["email"]["maxLength"] == EMAIL_MAX_LENGTH
    assert properties["source"]["maxLength"] == 100
    assert properties["diagnostic"]["maxLength"] == 1000
    assert schema.get("additionalProperties") is False
