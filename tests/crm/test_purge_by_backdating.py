"""Purge by back-dating (issue 18, item 11): logging an activity never brings the
day a contact is purged closer (X16).

The attack: a ``sales`` token logged an activity dated 1900-01-01 on a contact
that never interacted; ``last_interaction_at`` took that date, retention
counted from it, and the next run deleted the contact. Now an interaction
moves the clock only forward from where retention counts (the last
interaction, or the creation of a contact that never interacted), dates
before 1970 or more than a day ahead are refused, and the same holds for the
objection's one-statement path and for imports of known contacts.
"""

from __future__ import annotations

import io
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from consent import imports
from crm import retention, services
from crm.models import Activity, ActivityKind, Contact
from crm.retention import RetentionPolicy
from extensions import db
from kernel.access import CLI_ACTOR, Actor
from tests.conftest import count_rows
from tests.crm.retention_helpers import add_contact, at, exists
from tests.staff.helpers import client_as, make_contact

SALES = Actor(kind="token", name="crm", role="sales")
RULE_SETS = Path(__file__).resolve().parents[2] / "policies" / "retention"


def test_an_activity_dated_long_ago_does_not_purge_a_contact_that_never_interacted(
    app, api_as
) -> None:
    """The reported attack, through the API with a sales token."""
    admin, sales = api_as("admin"), api_as("sales")
    created = admin.post("/api/v1/contacts", json={"email": "lena@kund.se", "country": "SE"})
    contact_id = created.json["id"]
    purge_on = created.json["retention"]["purge_on"]

    refused = sales.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "call", "occurred_at": "1900-01-01T00:00:00+00:00"},
    )
    assert refused.status_code == 422
    assert refused.json["error"]["fields"] == {
        "occurred_at": ["An activity cannot have occurred before 1970-01-01."]
    }
    # The earliest date accepted: a real activity, but before the contact was
    # created here, so retention still counts from the creation.
    logged = sales.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "call", "occurred_at": "1970-01-02T00:00:00+00:00", "note": "Long ago"},
    )
    assert logged.status_code == 201
    contact = sales.get(f"/api/v1/contacts/{contact_id}").json
    assert contact["last_interaction_at"] is None
    assert contact["retention"]["purge_on"] == purge_on

    with app.app_context():
        retention.run(datetime.now(UTC).date(), started_by="test")
        assert exists("lena@kund.se")
        # Nor was the activity itself due (support cases count from the contact's clock too).
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 1


def _policies(app) -> list[tuple[str, RetentionPolicy]]:  # type: ignore[no-untyped-def]
    with app.app_context():
        found = [("default", retention.current_retention_policy())]
    for path in sorted(RULE_SETS.glob("*.toml")):
        with open(path, "rb") as handle:
            found.append((path.name, RetentionPolicy.from_mapping(tomllib.load(handle))))
    return found


@pytest.mark.parametrize("last_interaction", [None, "2026-01-10T09:00:00"])
def test_no_activity_of_any_kind_or_date_brings_a_purge_date_closer_under_any_shipped_policy(
    app, last_interaction: str | None
) -> None:
    """Every kind, dated from 1970 to just before the contact's clock, logged one after
    another: under the default rules and the five reference policies (with their
    activity-based rules: customers with an order, CRM-only contacts, support
    cases counting from the last interaction), no step moves a purge date earlier."""
    dates = ["1970-01-02T00:00:00", "2000-01-01T00:00:00", "2025-05-31T00:00:00"]
    if last_interaction:
        dates.append("2026-01-10T08:59:59")
    closer = []
    for name, policy in _policies(app):
        with app.app_context():
            contact = add_contact(
                f"{name.split('.')[0]}@kund.se",
                created="2025-06-01T00:00:00",
                last_interaction=last_interaction,
            )
            db.session.commit()
            contact_id = contact.id
            for kind in ActivityKind:
                for moment in dates:
                    db.session.expire_all()
                    contact = db.session.get(Contact, contact_id)
                    before = retention.purge_outlook(contact, policy).purge_on
                    services.log_activity(SALES, contact_id, kind.value, at(moment), None)
                    db.session.expire_all()
                    contact = db.session.get(Contact, contact_id)
                    after = retention.purge_outlook(contact, policy).purge_on
                    if (before is None and after is not None) or (
                        before and after and after < before
                    ):
                        closer.append((name, kind.value, moment, before, after))
            assert contact.last_interaction_at == (
                at(last_interaction) if last_interaction else None
            )
            # And a run today, under that policy, removes neither the contact nor
            # any activity but the back-dated ones a rule counts from their own date.
            retention.run(datetime.now(UTC).date(), started_by="test", policy=policy)
            assert exists(contact.email), name
            db.session.remove()
    assert closer == []


def test_the_objections_one_statement_path_keeps_the_same_rule(app) -> None:
    """``hold_contact`` notes an interaction in its UPDATE (the objection's hot path)."""
    with app.app_context():
        contact = add_contact("nie@kund.se", created="2025-06-01T00:00:00")
        db.session.commit()
        services.hold_contact(contact.id, at("1999-01-01T00:00:00"))
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Contact, contact.id).last_interaction_at is None
        services.hold_contact(contact.id, at("2025-07-01T00:00:00"))
        services.hold_contact(contact.id, at("2025-06-15T00:00:00"))
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Contact, contact.id).last_interaction_at == at("2025-07-01T00:00:00")


def test_an_import_does_not_bring_a_known_contacts_purge_date_closer(app) -> None:
    """A file's "last interaction" column moves a known contact's clock as an activity
    does; a new contact takes the file's date (its history, brought with it)."""
    known_id = make_contact(app, email="known@kund.se")
    with app.app_context():
        before = retention.purge_outlook(db.session.get(Contact, known_id)).purge_on
        report = imports.import_contacts(
            CLI_ACTOR,
            io.BytesIO(
                b"email;last interaction date;last interaction kind\n"
                b"known@kund.se;1970-01-02;call\nnew@kund.se;2020-05-05;order\n"
            ),
            basis="customer",
            source="test",
        )
        assert (report.updated, report.created, report.rejected) == (0, 1, 0)
        db.session.expire_all()
        known = db.session.get(Contact, known_id)
        assert known.last_interaction_at is None
        assert retention.purge_outlook(known).purge_on == before
        new = db.session.scalar(sa.select(Contact).where(Contact.email == "new@kund.se"))
        assert new.last_interaction_at == at("2020-05-05T00:00:00")


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("0001-01-01T00:00", "An activity cannot have occurred before 1970-01-01."),
        ("1969-12-31T23:59", "An activity cannot have occurred before 1970-01-01."),
        ("2999-01-01T00:00", "cannot have occurred in the future (more than a day from now)"),
    ],
)
def test_the_staff_page_refuses_dates_before_1970_or_more_than_a_day_ahead(
    app, typed: str, message: str
) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "sales")
    before = count_rows(app)
    response = client.post(
        f"/staff/contacts/{contact_id}/activities", data={"kind": "call", "occurred_at": typed}
    )
    page = client.get(response.location).get_data(as_text=True)
    assert f"occurred_at: {message}" in page or message in page
    assert count_rows(app)["activity"] == before["activity"]


def test_the_api_refuses_more_than_a_day_ahead_and_takes_a_time_just_ahead(app, api_as) -> None:
    """The staff page takes the typed time as UTC: a user east of Greenwich is ahead."""
    sales = api_as("sales")
    contact_id = make_contact(app)
    now = datetime.now(UTC)
    ahead = sales.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "call", "occurred_at": (now + timedelta(hours=3)).isoformat()},
    )
    assert ahead.status_code == 201
    too_far = sales.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "call", "occurred_at": (now + timedelta(days=2)).isoformat()},
    )
    assert too_far.status_code == 422
    assert "more than a day from now" in too_far.json["error"]["fields"]["occurred_at"][0]
