"""R15: an anonymised support case keeps the general support information the
policy allows (product, problem category, resolution, as codes) and nothing
that identifies a person, in any column of its row or of a related row."""

from __future__ import annotations

import sqlalchemy as sa

from crm import retention
from crm.models import Activity, AnonymisedActivity, AuditEntry, Contact
from extensions import db
from tests.crm.retention_helpers import day

NAME = "Karin Åberg"
EMAIL = "karin.aberg@kund.se"
PHONE = "+46 70 123 45 67"
STAFF_EMAIL = "anna.support@example.com"
# What identifies the person (or the staff member), in the forms it may take.
PERSONAL = [NAME, "Karin", "Åberg", EMAIL, "karin.aberg", PHONE, "701234567", STAFF_EMAIL]
NOTE = (
    f"Subject: AB7000 drops the connection, {NAME} called from {PHONE}\n"
    f"Body: reply to {EMAIL}; Karin says it happens at night. Handled by {STAFF_EMAIL}."
)


def _values(row: sa.Row) -> str:
    return " ".join(str(v) for v in row if v is not None)


def test_an_anonymised_case_keeps_product_category_and_resolution_and_no_personal_data(
    app, admin_api
) -> None:
    with app.app_context():
        contact = Contact(
            email=EMAIL,
            name=NAME,
            phone=PHONE,
            created_at=retention.start_of_day(day("2010-01-01")),
        )
        db.session.add(contact)
        db.session.commit()
        contact_id = contact.id
    created = admin_api.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={
            "kind": "support_case",
            "occurred_at": "2018-03-15T10:00:00+00:00",
            "note": NOTE,
            "product": "ab7000",
            "problem_category": "connection-lost",
            "resolution_code": "firmware-update",
        },
    )
    assert created.status_code == 201, created.json
    assert created.json["product"] == "ab7000"
    with app.app_context():
        # The case was the last interaction: seven years later it is anonymised.
        db.session.execute(
            sa.update(Activity)
            .where(Activity.contact_id == contact_id)
            .values(author=f"user:{STAFF_EMAIL}")
        )
        db.session.commit()
        retention.run(day("2025-03-16"), started_by="test")
        rows = db.session.execute(sa.select(AnonymisedActivity.__table__)).all()
        assert len(rows) == 1
        row = rows[0]._mapping
        assert (row["kind"], row["product"], row["problem_category"], row["resolution_code"]) == (
            "support_case",
            "ab7000",
            "connection-lost",
            "firmware-update",
        )
        assert row["occurred_month"] == day("2018-03-01")
        kept = _values(rows[0]).lower()
        for value in PERSONAL:
            assert value.lower() not in kept, value
        # Nothing links the row to the contact or to whoever handled the case.
        assert set(row.keys()) == {
            "id",
            "kind",
            "occurred_month",
            "product",
            "problem_category",
            "resolution_code",
            "rule",
            "anonymised_on",
        }
        # No related row keeps the case: the activity is gone, the audit log
        # holds ids and kinds only.
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 0
        for entry in db.session.execute(sa.select(AuditEntry.__table__)).all():
            logged = _values(entry).lower()
            for value in PERSONAL:
                assert value.lower() not in logged, (value, entry)


def test_support_information_must_be_codes_never_free_text(app, admin_api) -> None:
    with app.app_context():
        contact = Contact(email=EMAIL, name=NAME)
        db.session.add(contact)
        db.session.commit()
        contact_id = contact.id
    for field in ("product", "problem_category", "resolution_code"):
        for value in (NAME, EMAIL, PHONE, "called back Karin", "46701234567"):
            refused = admin_api.post(
                f"/api/v1/contacts/{contact_id}/activities",
                json={
                    "kind": "support_case",
                    "occurred_at": "2025-03-15T10:00:00+00:00",
                    field: value,
                },
            )
            assert refused.status_code == 422, (field, value)
            assert "code from your own list" in str(refused.json), (field, value)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 0


def test_a_support_field_that_is_not_a_code_is_dropped_not_kept(app_ctx) -> None:
    """Written past the API (a sync, a hand-made row): the anonymisation copies only
    values that are codes."""
    contact = Contact(email=EMAIL, name=NAME, created_at=retention.start_of_day(day("2010-01-01")))
    db.session.add(contact)
    db.session.flush()
    db.session.add(
        Activity(
            contact_id=contact.id,
            kind="support_case",
            occurred_at=retention.start_of_day(day("2018-03-15")),
            author="user:someone",
            product="ab7000",
            problem_category=f"called {PHONE}",
            resolution_code=EMAIL,
        )
    )
    contact.last_interaction_at = retention.start_of_day(day("2018-03-15"))
    db.session.commit()
    retention.run(day("2025-03-16"), started_by="test")
    row = db.session.execute(sa.select(AnonymisedActivity.__table__)).one()._mapping
    assert (row["product"], row["problem_category"], row["resolution_code"]) == (
        "ab7000",
        None,
        None,
    )


def test_the_service_refuses_free_text_in_support_fields_whoever_calls_it(app_ctx) -> None:
    import pytest

    from crm.services import log_activity
    from kernel.access import CLI_ACTOR
    from kernel.errors import InvalidInput

    contact = Contact(email=EMAIL, name=NAME)
    db.session.add(contact)
    db.session.commit()
    when = retention.start_of_day(day("2025-03-15"))
    with pytest.raises(InvalidInput, match="code from your own list"):
        log_activity(CLI_ACTOR, contact.id, "support_case", when, None, {"product": NAME})
    with pytest.raises(InvalidInput, match="Unknown support fields: customer"):
        log_activity(CLI_ACTOR, contact.id, "support_case", when, None, {"customer": "x"})
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 0
