"""The erasure journal (crm/erasure_journal.py) and its re-application after a
restore (consent/restore.py, ``flask rights reapply``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm import erasure_journal
from crm.erasure_journal import JournalEntry
from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import count_rows
from tests.consent.test_rights import CUSTOMER, create, decision

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def journal_lines(app) -> list[dict]:  # type: ignore[no-untyped-def]
    path = Path(app.config["ERASURE_JOURNAL_PATH"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def keyed(app, email: str) -> str:  # type: ignore[no-untyped-def]
    from kernel.addresses import keyed_hash

    with app.app_context():
        return keyed_hash(email)


def reapply(app, *args: str):  # type: ignore[no-untyped-def]
    return app.test_cli_runner().invoke(args=["rights", "reapply", *args])


def test_an_erasure_writes_one_line_of_hashes_ids_and_dates(app, admin_api) -> None:
    contact_id = create(admin_api, basis=CUSTOMER)
    before = utcnow()
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}").status_code == 200

    [line] = journal_lines(app)
    assert line["kind"] == "erasure"
    assert line["contact_id"] == contact_id
    assert line["address_hash"] == keyed(app, "eva@kund.se")
    assert line["rule"] is None
    assert datetime.fromisoformat(line["at"]) >= before
    # Nothing that names the person: the address, the name, the phone.
    text = Path(app.config["ERASURE_JOURNAL_PATH"]).read_text()
    for needle in ("eva", "kund.se", "Lind", "123 45 67"):
        assert needle not in text


def test_a_retention_purge_writes_a_line_per_contact_naming_its_rule(app, app_ctx) -> None:
    from crm import retention
    from tests.crm.retention_helpers import add_contact, day

    first = add_contact("import@lista.se", created="2018-06-01T10:00:00")
    second = add_contact("andra@lista.se", created="2018-06-01T10:00:00")
    ids = {first.id, second.id}
    db.session.commit()
    retention.run(day("2026-01-01"), started_by="test")

    lines = journal_lines(app)
    assert {line["contact_id"] for line in lines} == ids
    assert {line["kind"] for line in lines} == {"purge"}
    assert {line["rule"] for line in lines} == {"crm-contacts"}


def test_an_erasure_is_refused_whole_when_the_journal_cannot_be_written(
    app, admin_api, tmp_path, monkeypatch
) -> None:
    contact_id = create(admin_api, basis=CUSTOMER)
    before = count_rows(app)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setitem(app.config, "ERASURE_JOURNAL_PATH", str(blocker / "journal.jsonl"))

    answer = admin_api.delete(f"/api/v1/contacts/{contact_id}")

    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "erasure_journal_unavailable"
    assert "ERASURE_JOURNAL_PATH" in answer.json["error"]["message"]
    # Not erased, not suppressed: nothing half-done.
    assert count_rows(app) == before
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").status_code == 200


def test_a_retention_run_stops_whole_when_the_journal_cannot_be_written(
    app, app_ctx, tmp_path, monkeypatch
) -> None:
    from crm import retention
    from crm.models import RetentionRun
    from kernel.errors import Unavailable
    from tests.crm.retention_helpers import add_contact, day, exists

    add_contact("import@lista.se", created="2018-06-01T10:00:00")
    db.session.commit()
    monkeypatch.setitem(app.config, "ERASURE_JOURNAL_PATH", str(tmp_path))  # a directory

    with pytest.raises(Unavailable):
        retention.run(day("2026-01-01"), started_by="test")

    assert exists("import@lista.se")
    assert db.session.scalar(sa.select(RetentionRun.status)) == "failed"
    # The journal back, the next run does the work.
    monkeypatch.setitem(app.config, "ERASURE_JOURNAL_PATH", str(tmp_path / "journal.jsonl"))
    retention.run(day("2026-01-01"), started_by="test")
    assert not exists("import@lista.se")


def test_a_line_torn_by_a_crash_spoils_no_later_line(app, app_ctx) -> None:
    path = erasure_journal.journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"v":1,"kind":"erasure","contact_id":7,"addr')
    entry = JournalEntry(kind="purge", contact_id=8, address_hash=None, at=utcnow(), rule="r")
    erasure_journal.append([entry])

    read = erasure_journal.read(LONG_AGO)
    assert read.entries == [entry]
    assert read.unreadable_lines == [1]


def _journal_erasure(app, contact_id: int, email: str, at: datetime) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        erasure_journal.append(
            [
                JournalEntry(
                    kind="erasure", contact_id=contact_id, address_hash=keyed(app, email), at=at
                )
            ]
        )


def test_reapply_erases_again_restores_the_suppression_and_is_idempotent(app, admin_api) -> None:
    """A journal line whose erasure the database does not show (as after a
    restore): the contact goes, its address is suppressed, and a second run
    finds nothing to do."""
    contact_id = create(admin_api, basis=CUSTOMER)
    kept = create(admin_api, "other@kund.se", basis=CUSTOMER)
    _journal_erasure(app, contact_id, "eva@kund.se", utcnow())

    first = reapply(app, "--since", "2026-01-01", "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert (report["erased"], report["suppressions_restored"]) == (1, 1)
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").status_code == 404
    assert admin_api.get(f"/api/v1/contacts/{kept}").status_code == 200
    # Re-created by a CRM sync: stored, never allowed (R22), as after the erasure itself.
    create(admin_api, basis=CUSTOMER)
    assert decision(admin_api, "eva@kund.se")["reason"] == "suppressed"

    rows = count_rows(app)
    second = reapply(app, "--since", "2026-01-01", "--json")
    assert second.exit_code == 0, second.output
    again = json.loads(second.output)
    assert (again["erased"], again["suppressions_restored"]) == (0, 0)
    assert count_rows(app) == rows


def test_reapply_leaves_a_newer_contact_under_a_reused_id_alone(app, admin_api) -> None:
    """A restored sequence hands out an erased contact's id again: that is someone else."""
    contact_id = create(admin_api, basis=CUSTOMER)
    _journal_erasure(app, contact_id, "somebody@else.se", LONG_AGO)

    result = reapply(app, "--since", "2019-01-01", "--json")

    report = json.loads(result.output)
    assert (report["erased"], report["kept_newer_contact"]) == (0, 1)
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").status_code == 200


def test_reapply_does_not_resuppress_an_address_that_came_back_after_its_erasure(
    app, admin_api
) -> None:
    """An erasure older than the backup, whose address confirmed a new signup
    since (the one way a suppression is lifted): the database knows better, so
    a --since earlier than needed is harmless."""
    contact_id = create(admin_api, basis=CUSTOMER)
    with app.app_context():
        from consent.ledger import record
        from consent.models import EventKind
        from crm.models import Contact
        from kernel.access import SYSTEM_ACTOR

        contact = db.session.get(Contact, contact_id)
        record(contact, EventKind.SUPPRESSED, actor=SYSTEM_ACTOR, source="email_link")
        record(contact, EventKind.UNSUPPRESSED, actor=SYSTEM_ACTOR, source="email_link")
        db.session.commit()
    _journal_erasure(app, 999, "eva@kund.se", LONG_AGO)

    report = json.loads(reapply(app, "--since", "2019-01-01", "--json").output)

    assert (report["suppressions_restored"], report["kept_returned_address"]) == (0, 1)
    assert count_rows(app)["suppression"] == 0


def test_reapply_suppresses_an_address_merely_recreated_after_its_erasure(app, admin_api) -> None:
    """A CRM sync that brought the address back (here after the restore, before
    the reapply) proves no wish of the person: the suppression comes back."""
    _journal_erasure(app, 999, "eva@kund.se", utcnow() - timedelta(hours=1))
    create(admin_api, basis=CUSTOMER)
    assert decision(admin_api, "eva@kund.se")["allowed"] is True

    report = json.loads(reapply(app, "--since", "2019-01-01", "--json").output)

    assert (report["suppressions_restored"], report["kept_returned_address"]) == (1, 0)
    assert decision(admin_api, "eva@kund.se")["reason"] == "suppressed"


def test_reapply_dry_run_counts_and_changes_nothing(app, admin_api) -> None:
    contact_id = create(admin_api, basis=CUSTOMER)
    _journal_erasure(app, contact_id, "eva@kund.se", utcnow())
    before = count_rows(app)

    result = reapply(app, "--since", "2026-01-01", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "1 contacts would be erased again" in result.output
    assert count_rows(app) == before


def test_reapply_refuses_a_bad_date_and_a_missing_journal_clearly(
    app, tmp_path, monkeypatch
) -> None:
    bad = reapply(app, "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "--since" in bad.output and "YYYY-MM-DD" in bad.output
    assert "Traceback" not in bad.output

    missing = reapply(app, "--since", "2026-01-01")
    assert missing.exit_code == 1
    assert "No erasure journal at" in missing.output
    assert "ERASURE_JOURNAL_PATH" in missing.output

    monkeypatch.setitem(app.config, "ERASURE_JOURNAL_PATH", str(tmp_path))
    unreadable = reapply(app, "--since", "2026-01-01")
    assert unreadable.exit_code == 1
    assert "cannot be read" in unreadable.output
    assert "Traceback" not in unreadable.output


def test_reapply_purges_again_with_the_rule_tombstone(app, app_ctx) -> None:
    from crm.models import Contact
    from tests.crm.retention_helpers import add_contact

    contact = add_contact("import@lista.se")
    db.session.commit()
    entry = JournalEntry(
        kind="purge", contact_id=contact.id, address_hash=None, at=utcnow(), rule="crm-contacts"
    )
    erasure_journal.append([entry])

    result = reapply(app, "--since", (utcnow() - timedelta(days=1)).date().isoformat(), "--json")

    assert json.loads(result.output)["purged"] == 1
    db.session.remove()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Contact)) == 0
    # Purges do not suppress: nobody asked to be left alone.
    assert count_rows(app)["suppression"] == 0


def test_every_line_is_json_that_reads_back_as_written() -> None:
    entries = [
        JournalEntry(
            kind="purge", contact_id=1, address_hash="ab" * 32, at=utcnow(), rule='a"b\\c'
        ),
        JournalEntry(kind="erasure", contact_id=2, address_hash=None, at=LONG_AGO),
    ]
    for entry in entries:
        assert json.loads(entry.to_line())["rule"] == entry.rule
        assert JournalEntry.from_line(entry.to_line()) == entry
