"""Retention as staff and operators meet it: API, CLI, contact reads, a killed run, the purge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from crm import retention
from crm.models import RetentionRun
from extensions import db
from tests.conftest import TEST_CONFIG, known_since
from tests.crm.retention_helpers import add_contact, day, exists, snapshot

ROOT = Path(__file__).resolve().parents[2]
RUN_ARGS = ["--as-of", "2026-01-01", "--batch-size", "3"]


def test_every_contact_read_shows_its_purge_date(app, admin_api) -> None:
    created = admin_api.post(
        "/api/v1/contacts",
        json={"email": "lena@kund.se", "country": "SE", "name": "Lena"},
    )
    contact_id = created.json["id"]
    # Known since before the call, so that the call is its last interaction (X16).
    known_since(app, contact_id, "2018-01-01T00:00:00")
    admin_api.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "call", "occurred_at": "2019-03-15T09:00:00+00:00", "note": "Quote"},
    )
    for response in (
        admin_api.get(f"/api/v1/contacts/{contact_id}"),
        admin_api.get("/api/v1/contacts?email=lena@kund.se"),
        admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"name": "Lena L"}),
    ):
        assert response.status_code == 200, response.json
        assert response.json["retention"] == {
            "purge_on": "2027-01-01",
            "rule": "crm-contacts",
            "excluded_because": None,
        }
    # The creation response already carries one (counted from creation until an interaction).
    assert created.json["retention"]["rule"] == "crm-contacts"


def test_the_preview_api_lists_due_contacts_with_their_purge_dates(app, admin_api) -> None:
    with app.app_context():
        due = add_contact("due@kund.se", last_interaction="2018-05-05T10:00:00")
        held = add_contact(
            "held@kund.se", last_interaction="2018-05-05T10:00:00", legal_hold="Litigation"
        )
        add_contact("fresh@kund.se", last_interaction="2024-05-05T10:00:00")
        db.session.commit()
        due_id, held_id = due.id, held.id
    response = admin_api.get("/api/v1/retention/preview?as_of=2026-01-01")
    assert response.status_code == 200
    body = response.json
    assert body["as_of"] == "2026-01-01"
    contacts = next(r for r in body["rules"] if r["rule"]["name"] == "crm-contacts")
    assert contacts["count"] == 1
    assert contacts["items"] == [
        {"contact_id": due_id, "activity_id": None, "purge_on": "2026-01-01"}
    ]
    assert contacts["excluded"] == [
        {
            "contact_id": held_id,
            "activity_id": None,
            "purge_on": "2026-01-01",
            "reason": "legal hold: Litigation",
        }
    ]
    assert contacts["rule"]["explanation"].startswith(
        "delete contact 7 years after last_interaction"
    )
    # A preview changes nothing.
    with app.app_context():
        assert exists("due@kund.se")
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RetentionRun)) == 0


def test_the_preview_api_is_for_admins_and_checks_its_date(api_as) -> None:
    assert api_as("sales").get("/api/v1/retention/preview").status_code == 403
    admin = api_as("admin")
    for wrong in ("2026-13-01", "0001-01-01", "9999-12-31"):
        bad = admin.get(f"/api/v1/retention/preview?as_of={wrong}")
        assert bad.status_code == 422
        assert "as_of" in bad.json["error"]["fields"]
    assert admin.get("/api/v1/retention/preview").status_code == 200


def test_cli_preview_and_run(app, runner_for) -> None:
    with app.app_context():
        add_contact(
            "gammal@kund.se",
            last_interaction="2018-05-05T10:00:00",
            activities=[("support_case", "2018-01-09T10:00:00", "Gateway")],
        )
        add_contact("ny@kund.se", last_interaction="2025-05-05T10:00:00")
        db.session.commit()
    runner = runner_for(app)
    shown = runner.invoke(args=["retention", "preview", "--as-of", "2026-01-01", "--json"])
    assert shown.exit_code == 0, shown.output
    preview = json.loads(shown.output)
    assert {r["rule"]["name"]: r["count"] for r in preview["rules"]} == {
        "support-cases": 1,
        "crm-contacts": 1,
    }
    human = runner.invoke(args=["retention", "preview", "--as-of", "2026-01-01"])
    assert "crm-contacts: delete 1 contacts" in human.output
    assert "due since 2026-01-01" in human.output

    done = runner.invoke(args=["retention", "run", "--as-of", "2026-01-01"])
    assert done.exit_code == 0, done.output
    assert "completed" in done.output
    assert "crm-contacts: deleted 1" in done.output
    history = runner.invoke(args=["retention", "history", "--json"])
    runs = json.loads(history.output)
    assert runs[0]["started_by"].startswith("cli:")
    assert runs[0]["counts"]["support-cases"]["anonymised"] == 1
    with app.app_context():
        assert not exists("gammal@kund.se") and exists("ny@kund.se")

    bad = runner.invoke(args=["retention", "run", "--as-of", "soon"])
    assert bad.exit_code != 0 and "YYYY-MM-DD" in bad.output


def rows_naming(app, contact_id: int, texts: list[str]) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Every (table, column) holding one of ``texts`` or, in a column that refers to
    contacts, the id."""
    found = []
    with app.app_context(), db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            id_columns = {
                c.name
                for c in table.columns
                if c.name == "contact_id"
                or any(fk.column.table.name == "contact" for fk in c.foreign_keys)
                or (table.name == "contact" and c.name == "id")
            }
            for row in conn.execute(sa.select(table)).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    names_id = column in id_columns and value == contact_id
                    if names_id or any(t.lower() in str(value).lower() for t in texts):
                        found.append((table.name, column))
    return found


def test_after_a_purge_nothing_about_the_contact_remains_but_its_suppression_hash(
    app, admin_api
) -> None:
    contact_id = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "borta@kund.se",
            "name": "Greta Borta",
            "phone": "+46 70 123 45 67",
            "country": "SE",
            "company": {"name": "Kund AB", "customer_since": "2010-01-01"},
            "basis": {"type": "legitimate_interest", "kind": "customer", "source": "crm"},
        },
    ).json["id"]
    for kind, note in [("call", "Greta Borta asked"), ("support_case", "Greta's router")]:
        admin_api.post(
            f"/api/v1/contacts/{contact_id}/activities",
            json={"kind": kind, "occurred_at": "2018-02-02T10:00:00+00:00", "note": note},
        )
    admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    admin_api.get(f"/api/v1/contacts/{contact_id}")
    stays = admin_api.post("/api/v1/contacts", json={"email": "kvar@kund.se"}).json["id"]
    admin_api.post(
        f"/api/v1/contacts/{stays}/activities",
        json={"kind": "call", "occurred_at": "2026-02-02T10:00:00+00:00"},
    )
    with app.app_context():
        from crm.models import Contact

        # All of this happened long ago: the last interaction (the phoned-in
        # objection) in 2018.
        db.session.execute(
            sa.update(Contact)
            .where(Contact.id == contact_id)
            .values(
                created_at=retention.start_of_day(day("2017-01-01")),
                last_interaction_at=retention.start_of_day(day("2018-02-02")),
            )
        )
        db.session.commit()
        record = retention.run(day("2026-01-01"), started_by="test")
        assert record.counts["crm-contacts"]["deleted"] == 1
        assert record.counts["support-cases"]["anonymised"] == 1
    texts = ["borta@kund.se", "Greta", "Borta", "+46 70 123 45 67"]
    # The change feed keeps the bare id (and never a text) until it is pruned
    # (CHANGE_FEED_KEEP_DAYS): the purge's tombstone must name whom the
    # connected systems delete (docs/retention.md, "Data that lives in a CRM").
    assert [f for f in rows_naming(app, contact_id, texts) if f != ("change", "contact_id")] == []
    with app.app_context():
        from consent.models import Suppression
        from consent.suppression import address_hash

        suppressed = db.session.scalars(sa.select(Suppression.address_hash)).all()
        assert address_hash("borta@kund.se") in suppressed, "the suppression hash outlives it"
        run_row = db.session.scalars(sa.select(RetentionRun)).one()
        assert "borta" not in json.dumps(run_row.counts)
        assert exists("kvar@kund.se")


def test_a_killed_run_resumes_to_the_state_of_one_uninterrupted_run(app, database_url) -> None:
    with app.app_context():
        for n in range(40):
            add_contact(
                f"old{n:02d}@kund.se",
                last_interaction="2017-06-06T10:00:00",
                activities=[
                    ("call", "2017-06-06T10:00:00", f"Call {n}"),
                    ("support_case", "2017-06-01T10:00:00", f"Case {n}"),
                ],
            )
        for n in range(5):
            add_contact(f"new{n}@kund.se", last_interaction="2025-06-06T10:00:00")
        db.session.commit()
        before = retention.preview(day("2026-01-01"), limit=None)
        due_contacts = next(o for o in before.outcomes if o.rule.name == "crm-contacts").count
        assert due_contacts == 40

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CONSENT_ENV": "testing",
        "SECRET_KEY": TEST_CONFIG["SECRET_KEY"],
        "SUPPRESSION_KEY": TEST_CONFIG["SUPPRESSION_KEY"],
        "RETENTION_BATCH_PAUSE_S": "0.1",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "retention", "run", *RUN_ARGS],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        with app.app_context():
            while time.monotonic() < deadline:
                batches = db.session.scalar(sa.select(sa.func.max(RetentionRun.batches)))
                db.session.rollback()
                if batches and batches >= 16:  # past the support cases, inside the contacts
                    break
                time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -signal.SIGKILL

    with app.app_context():
        killed = db.session.scalars(sa.select(RetentionRun)).one()
        assert killed.status == "running" and killed.ended_at is None
        halfway = snapshot()
        assert 5 < len(halfway["contacts"]) < 45, "killed mid-way through the contacts"
        # Whole contacts only: each one left still has both of its activities... or
        # its support case already anonymised (the first rule finished before the kill).
        for email in halfway["contacts"]:
            if email.startswith("old"):
                kinds = [k for e, k, _ in halfway["activities"] if e == email]
                assert kinds == ["call"]

        # The next run takes over the dead process's lock and finishes the work.
        record = retention.run(day("2026-01-01"), started_by="test")
        assert record.status == "completed"
        assert db.session.get(RetentionRun, killed.id, populate_existing=True).status == (
            "interrupted"
        )
        after = snapshot()
    assert after["contacts"] == [f"new{n}@kund.se" for n in range(5)]
    assert after["activities"] == []
    assert after["anonymised"] == [("support_case", "2017-06-01", "support-cases")] * 40


def test_the_preview_counts_everything_but_lists_up_to_the_limit(app, admin_api) -> None:
    with app.app_context():
        for n in range(3):
            add_contact(f"due{n}@kund.se", last_interaction="2018-05-05T10:00:00")
        db.session.commit()
    body = admin_api.get("/api/v1/retention/preview?as_of=2026-01-01&limit=1").json
    contacts = next(r for r in body["rules"] if r["rule"]["name"] == "crm-contacts")
    assert contacts["count"] == 3
    assert len(contacts["items"]) == 1
    assert contacts["truncated"] is True


def test_the_staff_contact_page_shows_the_purge_date_or_why_not(app) -> None:
    import re

    from crm.models import Contact
    from tests.staff.helpers import client_as, make_contact

    staff = client_as(app, "sales")

    def purge_line() -> str:
        page = staff.get(f"/staff/contacts/{contact_id}").get_data(as_text=True)
        shown = re.search(r'<dd class="purge-date">(.*?)</dd>', page, re.S).group(1)
        return " ".join(re.sub(r"<[^>]+>", " ", shown).split())

    contact_id = make_contact(app)
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        contact.last_interaction_at = retention.start_of_day(day("2019-03-15"))
        db.session.commit()
    assert purge_line() == "2027-01-01"

    with app.app_context():
        db.session.get(Contact, contact_id).legal_hold_reason = "Warranty dispute"
        db.session.commit()
    assert purge_line() == "2027-01-01 (not while legal hold: Warranty dispute)"


def test_the_staff_retention_page_shows_the_preview_and_the_runs(app) -> None:
    import re

    from tests.staff.helpers import client_as

    with app.app_context():
        add_contact("due@kund.se", last_interaction="2018-05-05T10:00:00")
        held = add_contact(
            "held@kund.se", last_interaction="2018-05-05T10:00:00", legal_hold="Tax audit"
        )
        db.session.commit()
        held_id = held.id
        retention.run(day("2025-06-01"), started_by="cli:flask")
    admin = client_as(app, "admin")
    response = admin.get("/staff/admin/retention?as_of=2026-01-01")
    assert response.status_code == 200
    page = " ".join(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)).split())
    assert "crm-contacts : would delete 1 contacts, skipped 1" in page
    assert f"#{held_id} 2026-01-01 legal hold: Tax audit" in page
    assert "2025-06-01" in page and "cli:flask" in page and "completed" in page
    assert admin.get("/staff/admin/retention?as_of=someday").status_code == 422
    assert admin.get("/staff/admin/retention?as_of=0001-01-01").status_code == 422
    swedish = admin.get("/staff/admin/retention?lang=sv", headers={"Accept-Language": "sv"})
    assert "Gallringskörningar" in swedish.get_data(as_text=True)
