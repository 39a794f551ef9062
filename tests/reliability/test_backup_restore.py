"""Backup and restore keep erasures (docs/operations.md, "Backup and restore").

A real backup of the test database (``pg_dump`` and ``pg_restore`` on
PostgreSQL, SQLite's online backup on a SQLite file), an erasure and a
retention purge after it, the restore, and ``flask rights reapply``: the
people stay gone and the erased address stays suppressed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import sqlalchemy as sa

from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import service_unavailable
from tests.consent.test_rights import CUSTOMER, create, decision


def _backup(app, target: Path) -> None:  # type: ignore[no-untyped-def]
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(str(url.database)) as source, sqlite3.connect(target) as copy:
            source.backup(copy)
        return
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={target}", f"--dbname={_libpq(url)}"],
        check=True,
        capture_output=True,
    )


def _restore(app, dump: Path) -> None:  # type: ignore[no-untyped-def]
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(dump) as source, sqlite3.connect(str(url.database)) as live:
            source.backup(live)
        return
    subprocess.run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--no-owner",
            f"--dbname={_libpq(url)}",
            str(dump),
        ],
        check=True,
        capture_output=True,
    )


def _libpq(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _needs_dump_tools(app) -> None:  # type: ignore[no-untyped-def]
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite" and not (
        shutil.which("pg_dump") and shutil.which("pg_restore")
    ):
        service_unavailable("needs pg_dump and pg_restore on PATH")


def _purge_one_old_contact(app) -> int:  # type: ignore[no-untyped-def]
    """A contact the default rule purges on a run as on 2026-01-01."""
    from tests.crm.retention_helpers import add_contact

    with app.app_context():
        contact = add_contact("import@lista.se", created="2018-06-01T10:00:00")
        db.session.commit()
        return contact.id


def _run_retention(app) -> None:  # type: ignore[no-untyped-def]
    from crm import retention
    from tests.crm.retention_helpers import day

    with app.app_context():
        retention.run(day("2026-01-01"), started_by="test")
        db.session.remove()


def test_a_restored_backup_keeps_erasures_and_purges_after_reapply(
    app, admin_api, tmp_path
) -> None:
    _needs_dump_tools(app)
    erased = create(admin_api, basis=CUSTOMER)
    kept = create(admin_api, "otto@kund.se", basis=CUSTOMER)
    purged = _purge_one_old_contact(app)
    backed_up_at = utcnow()
    dump = tmp_path / "consent.dump"
    _backup(app, dump)

    # After the backup: Eva asks to be erased; retention purges the old import.
    assert admin_api.delete(f"/api/v1/contacts/{erased}").status_code == 200
    _run_retention(app)
    assert admin_api.get(f"/api/v1/contacts/{purged}").status_code == 404

    _restore(app, dump)
    # The restore alone brings them back, and Eva's address is not suppressed.
    assert admin_api.get(f"/api/v1/contacts/{erased}").status_code == 200
    assert admin_api.get(f"/api/v1/contacts/{purged}").status_code == 200
    assert decision(admin_api, "eva@kund.se")["allowed"] is True

    result = app.test_cli_runner().invoke(
        args=["rights", "reapply", "--since", backed_up_at.isoformat(), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["erased"], report["purged"], report["suppressions_restored"]) == (1, 1, 1)

    assert admin_api.get(f"/api/v1/contacts/{erased}").status_code == 404
    assert admin_api.get(f"/api/v1/contacts/{purged}").status_code == 404
    assert admin_api.get(f"/api/v1/contacts/{kept}").status_code == 200
    # The suppression holds as before: Eva re-created by a CRM sync is never allowed.
    again = create(admin_api, basis=CUSTOMER)
    assert decision(admin_api, "eva@kund.se")["reason"] == "suppressed"
    events = admin_api.get(f"/api/v1/contacts/{again}/events").json
    assert events[0]["kind"] == "created_while_suppressed"

    # A second run finds everything applied.
    second = app.test_cli_runner().invoke(
        args=["rights", "reapply", "--since", backed_up_at.isoformat(), "--json"]
    )
    assert json.loads(second.output)["erased"] == 0
    assert admin_api.get(f"/api/v1/contacts/{again}").status_code == 200
