"""The audit log (R25): who did what to which contact, from the API and the CLI."""

from __future__ import annotations

import csv
import io
import json

import pytest


def create(api, email="anna@kund.se"):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/contacts", json={"email": email, "country": "SE"}).json["id"]


def test_every_lookup_over_the_api_is_audited_with_who(app, api_as, admin_api) -> None:
    sales = api_as("sales")
    contact_id = create(admin_api)
    sales.get(f"/api/v1/contacts/{contact_id}")
    sales.get("/api/v1/contacts?email=anna@kund.se")
    sales.get(f"/api/v1/contacts/{contact_id}/permissions")
    sales.get(f"/api/v1/contacts/{contact_id}/events")
    sales.get(f"/api/v1/contacts/{contact_id}/activities")
    entries = admin_api.get(f"/api/v1/audit?contact_id={contact_id}").json
    by_sales = [e["action"] for e in entries if e["actor"].startswith("token:sales")]
    assert sorted(by_sales) == sorted(
        ["contact.read", "contact.read", "contact.read", "ledger.read", "activities.read"]
    )
    assert any(e["action"] == "contact.create" for e in entries)


def test_a_batch_check_is_one_audit_entry_with_the_count(app, api_as, admin_api) -> None:
    create(admin_api, "a@kund.se")
    create(admin_api, "b@kund.se")
    sales = api_as("sales")
    emails = ["a@kund.se", "b@kund.se", "nobody@kund.se", "not an address"]
    sales.post("/api/v1/permissions/check", json={"emails": emails, "topic": "events"})
    entries = admin_api.get("/api/v1/audit?action=permissions.check").json
    assert len(entries) == 1
    assert "addresses=4" in entries[0]["detail"]
    assert "known=2" in entries[0]["detail"]


def test_only_admins_read_the_audit_log(app, api_as) -> None:
    for role in ("sales", "marketing"):
        assert api_as(role).get("/api/v1/audit").status_code == 403


def test_cli_lookups_are_audited_and_listed(app, admin_api) -> None:
    contact_id = create(admin_api)
    runner = app.test_cli_runner()
    checked = runner.invoke(args=["permissions", "check", "anna@kund.se"])
    # A decision, not an error: 1 is "not allowed" on some marketing topic.
    assert (checked.exit_code, "NOT ALLOWED" in checked.output) == (1, True), checked.output
    listed = runner.invoke(args=["audit", "list", "--contact-id", str(contact_id), "--json"])
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.output)
    checks = [e for e in entries if e["action"] == "permissions.check"]
    assert checks and all(e["actor"].startswith("cli:") for e in checks)
    again = json.loads(runner.invoke(args=["audit", "list", "--json"]).output)
    assert again[0]["action"] == "audit.read"  # reading the log is logged


def test_audit_csv_never_holds_a_cell_a_spreadsheet_would_run(app, token_for, client) -> None:
    from tests.conftest import ApiClient

    hostile = ApiClient(client, _token_named(app, '=HYPERLINK("http://evil.example","x")'))
    create(hostile)
    output = app.test_cli_runner().invoke(args=["audit", "list", "--csv"]).output
    rows = list(csv.reader(io.StringIO(output)))
    assert rows[0] == ["id", "at", "actor", "action", "contact_id", "detail"]
    cells = [cell for row in rows for cell in row]
    assert any(cell.startswith("'token:=HYPERLINK") or cell.startswith("token:=") for cell in cells)
    assert not any(cell[:1] in ("=", "+", "-", "@") for cell in cells if cell)


def _token_named(app, name: str) -> str:  # type: ignore[no-untyped-def]
    from extensions import db
    from kernel.access import create_api_token

    with app.app_context():
        _, raw = create_api_token(name, "admin")
        db.session.remove()
    return raw


def test_safe_cell_prefixes_every_formula_trigger() -> None:
    from kernel.spreadsheet import safe_cell

    for value in ("=1+1", "+46 70", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(value) == "'" + value
    assert safe_cell("Anna") == "Anna"
    assert safe_cell(42) == 42
    assert safe_cell(None) == ""


def test_csv_line_quotes_either_delimiter_and_refuses_others() -> None:
    # One line function for write_csv and the streamed exports: a line written
    # with a delimiter a reader does not split on would be one cell.
    from kernel.spreadsheet import csv_line

    assert csv_line(["a;b", "c,d", "=1"], ";") == '"a;b";"c,d";\'=1\r\n'
    with pytest.raises(ValueError):
        csv_line(["a"], "|")


def test_cli_user_and_token_creation_is_audited(app) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["tokens", "create", "crm-sync", "--role", "sales"]).exit_code == 0
    created = runner.invoke(
        args=[
            "users",
            "create",
            "eva@example.com",
            "--role",
            "admin",
            "--password",
            "long-pass-123",
        ]
    )
    assert created.exit_code == 0, created.output
    entries = json.loads(runner.invoke(args=["audit", "list", "--json"]).output)
    actions = {(e["action"], e["actor"].split(":")[0]) for e in entries}
    assert {("api_token.create", "cli"), ("staff.user.create", "cli")} <= actions
