"""On SQLite, the writers of one process queue on a lock (extensions._SQLiteWriters)
rather than on SQLite's busy handler, which sleeps in growing steps."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy as sa

import extensions
from crm.models import AuditEntry
from extensions import db
from kernel.timestamps import utcnow


@pytest.fixture
def sqlite_app(app: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        pytest.skip("the write queue is for SQLite only; this run is on another database")
    # A lock that is never given back shows up as this timeout, not as a hang.
    monkeypatch.setattr(extensions._sqlite_writers, "timeout", 5.0)
    return app


def _entry(action: str) -> dict[str, Any]:
    return {"at": utcnow(), "actor": "write-queue-test", "action": action}


def _actions() -> list[str]:
    """What these tests wrote (other tests' servers may still be logging)."""
    return sorted(
        db.session.scalars(
            sa.select(AuditEntry.action).where(AuditEntry.actor == "write-queue-test")
        )
    )


def test_a_second_writer_waits_for_the_first_instead_of_failing(sqlite_app) -> None:
    written, go = threading.Event(), threading.Event()

    def first() -> None:
        with sqlite_app.app_context():
            db.session.execute(sa.insert(AuditEntry), [_entry("first")])
            written.set()
            go.wait(10)
            db.session.commit()
            db.session.remove()

    outcome: list[Any] = []

    def second() -> None:
        with sqlite_app.app_context():
            try:
                with db.engine.connect() as conn:
                    # Without the queue this fails at once with "database is locked".
                    conn.exec_driver_sql("PRAGMA busy_timeout=0")
                    conn.execute(sa.insert(AuditEntry), [_entry("second")])
                    conn.commit()
                    conn.exec_driver_sql("PRAGMA busy_timeout=30000")
                outcome.append("written")
            except sa.exc.OperationalError as exc:
                outcome.append(exc)

    one = threading.Thread(target=first)
    one.start()
    assert written.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.5)
    assert two.is_alive(), f"the second writer did not wait for the first: {outcome}"
    go.set()
    one.join(10)
    two.join(10)
    assert outcome == ["written"]
    with sqlite_app.app_context():
        assert _actions() == ["first", "second"]


def test_a_writer_that_failed_and_rolled_back_frees_the_queue(sqlite_app) -> None:
    def failing() -> None:
        with sqlite_app.app_context():
            db.session.execute(sa.insert(AuditEntry), [_entry("kept out")])
            with pytest.raises(sa.exc.IntegrityError):
                db.session.execute(sa.insert(AuditEntry), [{"id": 1, **_entry("a")}] * 2)
            db.session.rollback()
            db.session.remove()

    thread = threading.Thread(target=failing)
    thread.start()
    thread.join(10)
    # Another thread writes: it would wait out the 5 s timeout and fail if the
    # failed writer had kept the lock.
    with sqlite_app.app_context():
        db.session.execute(sa.insert(AuditEntry), [_entry("after")])
        db.session.commit()
        assert _actions() == ["after"]
        db.session.remove()


def test_a_write_after_a_commit_on_a_second_connection_does_not_wait(sqlite_app) -> None:
    """The webhook hand-over writes on its own connection in ``after_commit``,
    while the session's connection is not yet back in the pool."""

    def hand_over(session: Any) -> None:
        with db.engine.begin() as conn:
            conn.execute(sa.insert(AuditEntry), [_entry("after commit")])

    with sqlite_app.app_context():
        session = db.session()
        sa.event.listen(session, "after_commit", hand_over, once=True)
        db.session.execute(sa.insert(AuditEntry), [_entry("committed")])
        db.session.commit()
        assert _actions() == ["after commit", "committed"]
        db.session.remove()
