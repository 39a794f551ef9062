"""Restricted processing (GDPR art. 18, docs/rules.md R20): while a contact is
restricted, nothing changes its data or its decisions but lifting the
restriction, an objection or an unsubscribe. The API answers 409 ``restricted``.

The public forms are in tests/mailing/test_restricted_forms.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import count_rows

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
CONSENT = {
    "type": "consent",
    "source": "webinar-2026-10",
    "topics": ["events"],
    "evidence": {
        "obtained_at": "2026-10-01T10:00:00+00:00",
        "policy_version": "1.0",
        "wording": "Yes please",
    },
}


def _restricted(api: Any, email: str = "eva@kund.se") -> int:
    body = {"email": email, "name": "Eva", "country": "SE", "basis": CUSTOMER}
    contact_id = int(api.post("/api/v1/contacts", json=body).json["id"])
    restricted = api.post(f"/api/v1/contacts/{contact_id}/restriction", json={"note": "Disputes"})
    assert restricted.status_code == 201
    return contact_id


def _refused(response: Any) -> None:
    assert response.status_code == 409, response.json
    assert response.json["error"]["code"] == "restricted"


def _kinds(api: Any, contact_id: int) -> list[str]:
    return [e["kind"] for e in api.get(f"/api/v1/contacts/{contact_id}/events").json]


@pytest.mark.parametrize(
    "body",
    [
        {"basis": CONSENT},
        {"basis": {"type": "legitimate_interest", "kind": "industry_list", "source": "fair"}},
        {"basis": CUSTOMER},
        {"name": "Someone Else"},
        {"company": {"name": "Other AB"}},
    ],
    ids=["consent", "industry_list", "customer_again", "profile", "company"],
)
def test_the_api_records_nothing_for_a_restricted_contact(app, admin_api, body) -> None:
    contact_id = _restricted(admin_api)
    before = count_rows(app)
    _refused(admin_api.post("/api/v1/contacts", json={"email": "Eva@Kund.se", **body}))
    after = count_rows(app)
    assert after == {**before, "audit_entry": after["audit_entry"]}
    assert _kinds(admin_api, contact_id) == ["basis_granted", "restricted"]
    decisions = admin_api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]
    assert {d["reason"] for d in decisions} == {"restricted"}


def test_rectification_and_activities_are_refused_while_restricted(app, admin_api) -> None:
    contact_id = _restricted(admin_api)
    before = count_rows(app)
    _refused(admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"country": "DE"}))
    _refused(
        admin_api.post(
            f"/api/v1/contacts/{contact_id}/activities",
            json={"kind": "call", "occurred_at": "2026-10-01T10:00:00+00:00", "note": "Called"},
        )
    )
    after = count_rows(app)
    assert after == {**before, "audit_entry": after["audit_entry"]}
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").json["last_interaction_at"] is None


def test_the_persons_no_and_the_lift_are_taken_while_restricted(app, admin_api) -> None:
    contact_id = _restricted(admin_api)
    objected = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"}
    )
    assert objected.status_code == 201
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}/restriction").status_code == 200
    assert _kinds(admin_api, contact_id) == [
        "basis_granted",
        "restricted",
        "objected",
        "suppressed",
        "unrestricted",
    ]
    # Lifted: the API writes again (the objection still stands).
    assert (
        admin_api.post("/api/v1/contacts", json={"email": "eva@kund.se", "basis": CONSENT})
    ).status_code == 200


def test_the_ledger_itself_refuses_a_yes_for_a_restricted_contact(app, admin_api) -> None:
    """The last line behind every use case: only the person's no, a bounce, the
    end of a basis and the lift are recorded while restricted."""
    from consent.ledger import record
    from consent.models import EventKind
    from crm.services import get_contact
    from extensions import db
    from kernel.access import SYSTEM_ACTOR
    from kernel.errors import Conflict

    contact_id = _restricted(admin_api)
    with app.app_context():
        contact = get_contact(contact_id)
        for kind in (
            EventKind.REQUESTED,
            EventKind.CONFIRMED,
            EventKind.BASIS_GRANTED,
            EventKind.OBJECTION_LIFTED,
            EventKind.UNSUPPRESSED,
        ):
            with pytest.raises(Conflict) as refused:
                record(contact, kind, actor=SYSTEM_ACTOR, source="api", topic="events")
            assert refused.value.code == "restricted"
            db.session.rollback()
        record(contact, EventKind.UNSUBSCRIBED, actor=SYSTEM_ACTOR, source="api", topic="events")
        db.session.commit()
        db.session.remove()
    assert _kinds(admin_api, contact_id)[-1] == "unsubscribed"


def _flashed(page: str) -> str:
    return " ".join(re.findall(r'<p class="flash (?:error|success)">(.*?)</p>', page, re.S))


def test_staff_pages_take_an_objection_but_no_activity_while_restricted(app, admin_api) -> None:
    from tests.staff.helpers import client_as

    contact_id = _restricted(admin_api)
    staff = client_as(app, "admin")
    logged = staff.post(
        f"/staff/contacts/{contact_id}/activities",
        data={"kind": "call", "occurred_at": "2026-10-01T10:00", "note": "Called"},
        follow_redirects=True,
    )
    assert "restricted" in _flashed(logged.get_data(as_text=True))
    assert admin_api.get(f"/api/v1/contacts/{contact_id}/activities").json == []
    objected = staff.post(
        f"/staff/contacts/{contact_id}/objection",
        data={"channel": "all", "received_via": "letter"},
        follow_redirects=True,
    )
    assert "Objection recorded." in _flashed(objected.get_data(as_text=True))
    assert "objected" in _kinds(admin_api, contact_id)
