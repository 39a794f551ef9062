"""The consent ledger is append-only: an event, once recorded, is never changed.

Each event is the evidence of a consent, an objection or a basis (R5, R9):
who recorded it, when, how it was received. A backdated objection or a
consent turned into something else would make that evidence worthless, so
the model refuses every change of a recorded event; a correction is a new
event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from consent.models import ConsentEvent
from extensions import db

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}

# Edits that would rewrite the evidence: backdate it, change what happened,
# change who recorded it or how the person's word reached us.
EDITS = [
    pytest.param("occurred_at", datetime(2020, 1, 1, tzinfo=UTC), id="backdated"),
    pytest.param("kind", "objection_lifted", id="kind"),
    pytest.param("recorded_by", "token:someone-else", id="recorded_by"),
    pytest.param("received_via", "letter", id="received_via"),
]


def _objection(admin_api: Any) -> tuple[int, dict[str, Any]]:
    """A customer contact who objected by phone: (contact id, the objection's event)."""
    created = admin_api.post(
        "/api/v1/contacts",
        json={"email": "anna@kund.se", "country": "SE", "basis": CUSTOMER},
    )
    assert created.status_code == 201, created.json
    contact_id = created.json["id"]
    objection = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"}
    )
    assert objection.status_code == 201, objection.json
    return contact_id, objection.json


def _ledger(admin_api: Any, contact_id: int) -> list[dict[str, Any]]:
    response = admin_api.get(f"/api/v1/contacts/{contact_id}/events")
    assert response.status_code == 200, response.json
    return response.json


@pytest.mark.parametrize(("attribute", "value"), EDITS)
def test_changing_a_recorded_event_is_refused_when_the_session_flushes(
    app, admin_api, attribute: str, value: Any
) -> None:
    """Whatever code changes an event through the ORM, the flush that would
    write it fails, so the change never reaches the database."""
    _, event = _objection(admin_api)
    with app.app_context():
        recorded = db.session.get(ConsentEvent, event["id"])
        assert recorded is not None
        setattr(recorded, attribute, value)
        with pytest.raises(RuntimeError, match="append-only"):
            db.session.flush()
        db.session.rollback()
        db.session.remove()


@pytest.mark.parametrize(("attribute", "value"), EDITS)
def test_a_recorded_event_reads_the_same_after_an_attempt_to_change_it(
    app, admin_api, attribute: str, value: Any
) -> None:
    """After an attempted edit and commit, the ledger lists the event exactly as
    it was recorded: same time, kind, recorder and channel of receipt."""
    contact_id, event = _objection(admin_api)
    before = _ledger(admin_api, contact_id)
    assert event in before
    with app.app_context():
        recorded = db.session.get(ConsentEvent, event["id"])
        assert recorded is not None
        setattr(recorded, attribute, value)
        try:
            db.session.commit()
        except RuntimeError:
            db.session.rollback()
        db.session.remove()
    assert _ledger(admin_api, contact_id) == before
