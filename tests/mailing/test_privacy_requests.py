"""A person's access and erasure requests, verified through the address (R20, R21)."""

from __future__ import annotations

import json

import sqlalchemy as sa

from consent.privacy_requests import add_months
from tests.conftest import count_rows
from tests.mailing.conftest import link, links_in


def _known(admin_api) -> int:  # type: ignore[no-untyped-def]
    body = {
        "email": "anna@kund.se",
        "name": "Anna",
        "language": "sv",
        "country": "SE",
        "basis": {"type": "legitimate_interest", "kind": "customer", "source": "crm"},
    }
    return admin_api.post("/api/v1/contacts", json=body).json["id"]


def test_verified_copy_request_emails_the_export(app, client, admin_api, smtp, mail_worker) -> None:
    contact_id = _known(admin_api)
    response = client.post("/privacy/requests", data={"email": "Anna@Kund.se", "kind": "access"})
    assert response.status_code == 200
    mail_worker.drain()
    [verify] = smtp.wait_for(1)
    assert "personuppgifter" in verify["Subject"]  # in the contact's language
    path = link(verify, "/privacy/verify/")

    # A mail scanner fetching the link changes nothing.
    before = count_rows(app)
    for url in links_in(verify):
        client.get(url.removeprefix("http://localhost"))
        client.head(url.removeprefix("http://localhost"))
    assert count_rows(app) == before

    page = client.post(path)
    assert page.status_code == 200
    mail_worker.drain()
    messages = smtp.wait_for(2)
    copy = messages[1]
    attachment = next(
        part for part in copy.iter_attachments() if part.get_filename() == "your-data.json"
    )
    data = json.loads(attachment.get_content())
    assert data["contact_id"] == contact_id
    assert data["profile"]["email"] == "anna@kund.se"
    assert any(e["kind"] == "basis_granted" for e in data["consent_events"])

    # A second press sends nothing more.
    client.post(path)
    mail_worker.drain()
    assert len(smtp.messages) == 2


def test_verified_erasure_request_waits_for_an_admin_with_a_due_date(
    app, client, admin_api, smtp, mail_worker
) -> None:
    contact_id = _known(admin_api)
    client.post("/privacy/requests", data={"email": "anna@kund.se", "kind": "erasure"})
    mail_worker.drain()
    path = link(smtp.wait_for(1)[0], "/privacy/verify/")
    assert admin_api.get("/api/v1/privacy-requests").json[0]["status"] == "pending_verification"
    client.post(path)
    [request] = admin_api.get("/api/v1/privacy-requests?status=awaiting_admin").json
    assert request["contact_id"] == contact_id and request["kind"] == "erasure"
    with app.app_context():
        from consent.models import PrivacyRequest
        from crm.retention import retention_exclusions
        from extensions import db

        stored = db.session.get(PrivacyRequest, request["id"])
        # GDPR art. 12(3): one calendar month from the verification.
        assert stored.due_at == add_months(stored.verified_at, 1)
        # Retention does not purge a contact whose request is open.
        assert "open erasure request" in retention_exclusions([contact_id])[contact_id]
    # The contact still exists: erasure is the admin's decision (a legal hold may forbid it).
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").status_code == 200


def test_the_answer_is_the_same_for_known_and_unknown_addresses(
    app, client, admin_api, smtp, mail_worker
) -> None:
    _known(admin_api)
    known = client.post("/privacy/requests", data={"email": "anna@kund.se", "kind": "access"})
    unknown = client.post("/privacy/requests", data={"email": "nobody@kund.se", "kind": "access"})
    assert (known.status_code, known.get_data()) == (unknown.status_code, unknown.get_data())
    json_known = client.post("/privacy/requests", json={"email": "anna@kund.se", "kind": "erasure"})
    json_unknown = client.post(
        "/privacy/requests", json={"email": "nobody@kund.se", "kind": "erasure"}
    )
    assert (
        (json_known.status_code, json_known.json)
        == (json_unknown.status_code, json_unknown.json)
        == (202, {"status": "accepted"})
    )
    mail_worker.drain()
    # One email at most per address per ten minutes, and none to unknown addresses.
    # (Without the name: the address has not proved to be Anna's yet.)
    assert [str(m["To"]) for m in smtp.messages] == ["anna@kund.se"]
    with app.app_context():
        from consent.models import PrivacyRequest
        from extensions import db

        assert db.session.scalar(sa.select(sa.func.count()).select_from(PrivacyRequest)) == 1


def test_tampered_verification_link_is_refused_without_change(
    app, client, admin_api, smtp, mail_worker
) -> None:
    _known(admin_api)
    client.post("/privacy/requests", data={"email": "anna@kund.se", "kind": "access"})
    mail_worker.drain()
    path = link(smtp.wait_for(1)[0], "/privacy/verify/")
    before = count_rows(app)
    response = client.post(path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb"))
    assert response.status_code == 400
    assert count_rows(app) == before


def test_bad_kind_is_refused(client) -> None:
    response = client.post("/privacy/requests", json={"email": "a@b.se", "kind": "everything"})
    assert response.status_code == 422
