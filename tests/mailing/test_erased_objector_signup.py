"""An erased objector who turns up again on a signup form (R22)."""

from __future__ import annotations

from tests.mailing.conftest import link
from tests.mailing.helpers import signup

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}


def _decisions(admin_api, email: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    contact_id = admin_api.get(f"/api/v1/contacts?email={email}").json["id"]
    return admin_api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]


def test_signup_never_reopens_an_erased_objector_until_the_person_confirms(
    app, client, admin_api, smtp, mail_worker
) -> None:
    first = admin_api.post(
        "/api/v1/contacts", json={"email": "eva@kund.se", "country": "SE", "basis": CUSTOMER}
    ).json["id"]
    admin_api.post(f"/api/v1/contacts/{first}/objection", json={"received_via": "phone"})
    assert admin_api.delete(f"/api/v1/contacts/{first}").status_code == 200

    assert signup(client, "eva@kund.se").status_code == 200
    # Re-created by the form, but nothing is allowed: the form alone is no consent.
    assert not any(d["allowed"] for d in _decisions(admin_api, "eva@kund.se"))
    contact_id = admin_api.get("/api/v1/contacts?email=eva@kund.se").json["id"]
    kinds = [e["kind"] for e in admin_api.get(f"/api/v1/contacts/{contact_id}/events").json]
    assert kinds[:2] == ["created_while_suppressed", "requested"], kinds

    # Only the person's own confirmation opens the one topic asked for; the
    # ledger shows the suppression being lifted by that confirmation.
    mail_worker.drain()
    client.post(link(smtp.wait_for(1)[0], "/confirm/"))
    decisions = {(d["topic"], d["channel"]): d for d in _decisions(admin_api, "eva@kund.se")}
    assert decisions[("newsletter", "email")]["allowed"] is True
    assert decisions[("events", "email")]["allowed"] is False  # legitimate interest stays closed
    kinds = [e["kind"] for e in admin_api.get(f"/api/v1/contacts/{contact_id}/events").json]
    assert "unsuppressed" in kinds and kinds[-1] == "confirmed"
