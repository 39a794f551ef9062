"""Removing a contact leaves nothing that names it, except the suppression hash."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import count_rows


def rows_mentioning(app, needles: list[str]) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every (table, column) whose value equals or contains one of the needles."""
    from extensions import db

    found = []
    with app.app_context(), db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)).mappings():
                for column, value in row.items():
                    if value is not None and any(
                        n == str(value) or (len(n) > 3 and n in str(value)) for n in needles
                    ):
                        found.append((table.name, column))
    return found


def test_removed_contact_leaves_only_its_suppression_hash(app, admin_api) -> None:
    body = {
        "email": "gone@kund.se",
        "name": "Gone Person",
        "country": "SE",
        "basis": {"type": "legitimate_interest", "kind": "customer", "source": "crm"},
    }
    contact_id = admin_api.post("/api/v1/contacts", json=body).json["id"]
    admin_api.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={
            "kind": "call",
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "note": "Gone Person called",
        },
    )
    admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    admin_api.post("/api/v1/contacts", json={"email": "stays@kund.se", "name": "Stays"})
    with app.app_context():
        from crm.services import remove_contact
        from extensions import db

        remove_contact(contact_id)
        db.session.commit()
    leftovers = [
        (table, column) for table, column in rows_mentioning(app, ["gone@kund.se", "Gone Person"])
    ]
    assert leftovers == []
    with app.app_context():
        from consent.models import ConsentEvent, PermissionState
        from crm.models import Activity, AuditEntry
        from extensions import db

        for model in (ConsentEvent, PermissionState, Activity):
            assert (
                db.session.scalar(
                    sa.select(sa.func.count())
                    .select_from(model)
                    .where(model.contact_id == contact_id)
                )
                == 0
            )
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.contact_id == contact_id)
            )
            == 0
        )
    assert count_rows(app)["suppression"] == 1
    assert count_rows(app)["contact"] == 1
