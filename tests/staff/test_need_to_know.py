"""Need to know (R25): the evidence that identifies a person's device or visit
only for the roles that need it, and a dpo role that reads but never markets
(issue 19, item 11)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.staff.helpers import client_as

IP = "192.0.2.77"
USER_AGENT = "EvidenceBrowser/9.9 (a person's own machine)"
PAGE = "https://www.kund.example/nyhetsbrev?kampanj=host"


def consent_contact(admin_api: Any) -> int:
    """A contact who gave consent to events on a form, with its full evidence (events:
    a Swedish consent to them counts at once, R8)."""
    response = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "lena@kund.example",
            "name": "Lena Kund",
            "country": "SE",
            "basis": {
                "type": "consent",
                "source": "website",
                "topics": ["events"],
                "evidence": {
                    "obtained_at": "2026-01-15T10:00:00+00:00",
                    "policy_version": "2026-01",
                    "wording": "Yes, send me the newsletter.",
                    "ip_address": IP,
                    "user_agent": USER_AGENT,
                    "form_id": "website",
                    "page_url": PAGE,
                },
            },
        },
    )
    assert response.status_code == 201, response.json
    return response.json["id"]


def events_evidence(page: str) -> str:
    return re.search(r'data-topic="events" data-channel="email".*?</article>', page, re.S).group(0)


@pytest.mark.parametrize("role", ["sales", "marketing"])
def test_sales_and_marketing_see_the_basis_but_not_the_ip_or_browser(app, admin_api, role) -> None:
    contact_id = consent_contact(admin_api)
    page = client_as(app, role).get(f"/staff/contacts/{contact_id}").get_data(as_text=True)

    evidence = events_evidence(page)
    assert "Allowed" in evidence and "website" in evidence and "2026-01" in evidence
    assert IP not in page and "EvidenceBrowser" not in page and "kampanj" not in page


@pytest.mark.parametrize("role", ["admin", "dpo"])
def test_admin_and_dpo_see_the_ip_browser_and_page_of_the_evidence(app, admin_api, role) -> None:
    contact_id = consent_contact(admin_api)
    page = client_as(app, role).get(f"/staff/contacts/{contact_id}").get_data(as_text=True)

    evidence = events_evidence(page)
    assert IP in evidence and "EvidenceBrowser/9.9" in evidence and "kampanj=host" in evidence


@pytest.mark.parametrize(
    ("role", "shown"), [("sales", False), ("marketing", False), ("admin", True), ("dpo", True)]
)
def test_the_api_ledger_shows_identifying_evidence_by_the_tokens_role(
    admin_api, api_as, role, shown
) -> None:
    contact_id = consent_contact(admin_api)

    events = api_as(role).get(f"/api/v1/contacts/{contact_id}/events")

    assert events.status_code == 200
    [confirmed] = [e for e in events.json if e["kind"] == "confirmed"]
    assert confirmed["form_id"] == "website" and confirmed["policy_version"] == "2026-01"
    assert confirmed["wording_hash"]  # what was agreed to stays for every role
    if shown:
        assert (confirmed["ip_address"], confirmed["user_agent"], confirmed["page_url"]) == (
            IP,
            USER_AGENT,
            PAGE,
        )
    else:
        assert {"ip_address", "user_agent", "page_url"}.isdisjoint(confirmed)
        assert IP not in events.get_data(as_text=True)


def test_an_objection_answer_holds_no_identifying_evidence_for_sales(admin_api, api_as) -> None:
    contact_id = consent_contact(admin_api)
    answer = api_as("sales").post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"}
    )
    assert answer.status_code == 201
    assert answer.json["kind"] == "objected" and "ip_address" not in answer.json


def test_the_dpo_reads_evidence_requests_and_the_audit_log_but_runs_no_marketing(
    app, admin_api, api_as
) -> None:
    contact_id = consent_contact(admin_api)
    dpo = api_as("dpo")
    assert dpo.get(f"/api/v1/contacts/{contact_id}").status_code == 200
    assert dpo.get("/api/v1/audit").status_code == 200
    assert dpo.get("/api/v1/privacy-requests").status_code == 200
    campaign = {
        "topic": "newsletter",
        "subject_sv": "Nyheter",
        "body_sv": "Hej!",
        "subject_en": "News",
        "body_en": "Hello!",
    }
    refused = [
        dpo.post("/api/v1/campaigns", json=campaign),
        dpo.post("/api/v1/contacts", json={"email": "new@kund.example"}),
        dpo.patch(f"/api/v1/contacts/{contact_id}", json={"name": "X"}),
        dpo.post(
            f"/api/v1/contacts/{contact_id}/activities",
            json={"kind": "call", "occurred_at": "2026-01-01T00:00:00+00:00"},
        ),
        dpo.post("/api/v1/imports", data={"basis": "customer", "source": "CRM"}),
        dpo.get(f"/api/v1/contacts/{contact_id}/export"),
        dpo.delete(f"/api/v1/contacts/{contact_id}"),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert {r.json["error"]["code"] for r in refused} == {"forbidden"}

    client = client_as(app, "dpo")
    for path in ("/staff/admin/audit", "/staff/admin/privacy-requests"):
        assert client.get(path).status_code == 200
    for path in ("/staff/campaigns", "/staff/imports", "/staff/admin/users"):
        assert client.get(path).status_code == 403
    page = client.get(f"/staff/contacts/{contact_id}").get_data(as_text=True)
    assert "Log an activity" not in page and "Correct the data" not in page
    logged = client.post(
        f"/staff/contacts/{contact_id}/activities",
        data={"kind": "call", "occurred_at": "2026-01-02T10:00"},
    )
    assert logged.status_code == 403


def test_a_dpo_user_and_token_are_created_from_the_command_line(app, runner_for) -> None:
    runner = runner_for(app)
    user = runner.invoke(
        args=["users", "create", "dpo@kund.example", "--role", "dpo", "--password", "a-long-pass"]
    )
    assert user.exit_code == 0, user.output
    assert "Created dpo user dpo@kund.example." in user.output
    token = runner.invoke(args=["tokens", "create", "dpo-tool", "--role", "dpo"])
    assert token.exit_code == 0, token.output
