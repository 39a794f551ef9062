"""The command line as an operator uses it."""

from __future__ import annotations

import json

from consent.policy import Reason
from consent.services import check_permissions


def test_tokens_create_prints_a_token_that_works_once_shown(app, client, runner_for) -> None:
    result = runner_for(app).invoke(args=["tokens", "create", "crm-sync", "--role", "marketing"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("cst_")
    response = client.post(
        "/api/v1/contacts", json={"email": "a@b.se"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201
    again = runner_for(app).invoke(args=["tokens", "create", "crm-sync", "--role", "marketing"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_tokens_create_refuses_an_unknown_role(app, runner_for) -> None:
    result = runner_for(app).invoke(args=["tokens", "create", "x", "--role", "boss"])
    assert result.exit_code != 0
    assert "boss" in result.output


def test_users_create_with_password_and_authenticate(app, runner_for) -> None:
    result = runner_for(app).invoke(
        args=[
            "users",
            "create",
            "Sara@Example.com",
            "--role",
            "sales",
            "--password",
            "long-enough-pw",
        ]
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        from kernel.access import authenticate_staff

        assert authenticate_staff("sara@example.com", "long-enough-pw").role == "sales"
        assert authenticate_staff("sara@example.com", "wrong-password") is None


def test_users_create_refuses_a_short_password(app, runner_for) -> None:
    result = runner_for(app).invoke(
        args=["users", "create", "s@example.com", "--role", "sales", "--password", "short"]
    )
    assert result.exit_code != 0
    assert "at least 10" in result.output


def test_demo_covers_every_reason_code_and_is_idempotent(app, runner_for) -> None:
    first = runner_for(app).invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    assert "admin@example.com" in first.output
    assert runner_for(app).invoke(args=["demo"]).exit_code == 0
    with app.app_context():
        from crm.models import Contact
        from extensions import db

        emails = [c.email for c in db.session.query(Contact).all()] + ["nobody@example.org"]
        assert len(emails) == 11
        reasons = {
            d.reason for topic in ("newsletter", "events") for d in check_permissions(emails, topic)
        }
    assert reasons == set(Reason)


def test_permissions_check_speaks_plainly_and_in_json(app, runner_for) -> None:
    runner_for(app).invoke(args=["demo"])
    human = runner_for(app).invoke(
        args=["permissions", "check", "erik.invander@kund.example", "--topic", "events"]
    )
    assert "NOT ALLOWED" in human.output and "objected" in human.output
    machine = runner_for(app).invoke(
        args=["permissions", "check", "anna.kund@kund.example", "--json"]
    )
    decisions = json.loads(machine.output)
    assert {d["topic"] for d in decisions} == {"newsletter", "product-updates", "events", "surveys"}
    assert next(d for d in decisions if d["topic"] == "events")["basis"] == "legitimate_interest"


def test_permissions_check_unknown_topic_is_a_clear_error(app, runner_for) -> None:
    result = runner_for(app).invoke(args=["permissions", "check", "a@b.se", "--topic", "spam"])
    assert result.exit_code != 0
    assert "Unknown topic" in result.output
