"""The outbox under failure: SMTP down, broker down, permanent refusals, no SMTP at all."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

from extensions import broker, db
from kernel.timestamps import utcnow
from tests.mailing.conftest import free_port, link
from tests.mailing.helpers import outbox, signup


def test_with_smtp_down_during_100_signups_every_confirmation_arrives_once(
    app, client, smtp, mail_worker
) -> None:
    # Retries every second at most, so the failing worker does not crowd out the web.
    app.config.update(OUTBOX_MIN_BACKOFF_MS=200, OUTBOX_MAX_BACKOFF_MS=1000)
    smtp.stop()
    addresses = [f"person{n}@example.se" for n in range(100)]
    for address in addresses:
        assert signup(client, address).status_code == 200
    time.sleep(1.0)  # the worker keeps failing and scheduling retries meanwhile
    assert smtp.messages == []
    failed_once = [row for row in outbox(app) if row.attempts >= 1 and row.last_error]
    assert failed_once, "the worker should have met the closed port"

    smtp.start()
    mail_worker.drain(timeout_ms=60_000)
    received = Counter(str(m["To"]) for m in smtp.wait_for(100))
    assert sorted(received) == sorted(addresses)
    assert set(received.values()) == {1}
    assert {row.status for row in outbox(app)} == {"sent"}


def test_with_the_broker_down_at_commit_the_sweeper_delivers(
    app, client, smtp, mail_worker, runner_for
) -> None:
    from dramatiq.brokers.redis import RedisBroker

    from mailing.tasks import deliver_emails

    # A real Redis broker on a port where nothing listens: every enqueue fails.
    deliver_emails.broker = RedisBroker(url=f"redis://127.0.0.1:{free_port()}/0")
    try:
        for n in range(5):
            assert signup(client, f"swept{n}@example.se").status_code == 200
    finally:
        deliver_emails.broker = broker
    rows = outbox(app)
    assert len(rows) == 5
    assert all(row.handed_over_at is None and row.status == "queued" for row in rows)

    with app.app_context():
        from mailing.outbox import sweep

        assert sweep() == []  # a grace minute: a commit may be handing over right now
        db.session.remove()
    result = runner_for(app).invoke(args=["outbox", "sweep"])
    assert "Handed over 0" in result.output
    with app.app_context():
        handed = sweep(at=utcnow() + timedelta(minutes=2))
        db.session.remove()
    assert len(handed) == 5
    mail_worker.drain()
    received = Counter(str(m["To"]) for m in smtp.wait_for(5))
    assert set(received.values()) == {1} and len(received) == 5
    with app.app_context():
        assert sweep(at=utcnow() + timedelta(minutes=2)) == []
        db.session.remove()


def test_a_permanent_refusal_is_recorded_and_never_retried(app, client, smtp, mail_worker) -> None:
    smtp.refuse.add("bounce@example.se")
    signup(client, "bounce@example.se")
    mail_worker.drain()
    time.sleep(0.5)
    mail_worker.drain()
    [row] = outbox(app)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "550" in row.last_error
    assert smtp.messages == []


def test_delivering_a_row_twice_sends_it_once(app, client, smtp, mail_worker) -> None:
    from mailing import delivery

    signup(client, "once@example.se")
    mail_worker.drain()
    [row] = outbox(app)
    with app.app_context():
        again = delivery.deliver(row.id)
        db.session.remove()
    assert (again.status, again.reason) == ("skipped", "already_sent")
    assert len(smtp.wait_for(1)) == 1


def test_without_smtp_mail_is_written_to_files_listed_on_a_development_page(
    app, client, mail_worker, tmp_path
) -> None:
    previous = app.config["MAIL_FOLDER"]
    app.config.update(SMTP_URL=None, MAIL_FOLDER=str(tmp_path))
    try:
        signup(client, "files@example.se")
        mail_worker.drain()
        [eml] = list(tmp_path.glob("*.eml"))
        assert "/confirm/" in eml.read_text()
        assert client.get("/dev/mail").status_code == 404  # not outside development
        app.config["CONSENT_ENV"] = "development"
        listing = client.get("/dev/mail")
        assert listing.status_code == 200 and eml.name.encode() in listing.data
        shown = client.get(f"/dev/mail/{eml.name}")
        assert b"files@example.se" in shown.data
        assert client.get("/dev/mail/..%2Fconsent.db").status_code == 404
    finally:
        app.config.update(CONSENT_ENV="testing", MAIL_FOLDER=previous)


def test_the_confirmation_from_a_file_works_like_one_from_smtp(
    app, client, mail_worker, tmp_path, admin_api
) -> None:
    import email
    import email.policy

    from tests.mailing.helpers import contact_id_of, decision

    previous = app.config["MAIL_FOLDER"]
    app.config.update(SMTP_URL=None, MAIL_FOLDER=str(tmp_path))
    try:
        signup(client, "eml@example.se")
        mail_worker.drain()
        [eml] = list(tmp_path.glob("*.eml"))
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        client.post(link(message, "/confirm/"))  # type: ignore[arg-type]
    finally:
        app.config.update(MAIL_FOLDER=previous)
    contact_id = contact_id_of(app, "eml@example.se")
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "consent"


def test_an_operator_can_deliver_one_row_from_the_command_line(
    app, client, smtp, runner_for
) -> None:
    signup(client, "cli@example.se")
    [row] = outbox(app)
    runner = runner_for(app)
    first = runner.invoke(args=["outbox", "deliver", str(row.id)])
    assert first.exit_code == 0 and first.output.strip() == "sent"
    second = runner.invoke(args=["outbox", "deliver", str(row.id)])
    assert second.output.strip() == "skipped: already_sent"
    assert len(smtp.wait_for(1)) == 1

    smtp.stop()
    signup(client, "cli2@example.se")
    queued = outbox(app)[-1]
    failed = runner.invoke(args=["outbox", "deliver", str(queued.id)])
    assert failed.exit_code == 1 and "Temporary failure" in failed.output
    assert outbox(app)[-1].status == "queued"


def test_the_hand_over_and_a_claim_lock_rows_lowest_id_first(app, client, smtp, mail_worker):  # type: ignore[no-untyped-def]
    """Both statements that update a set of outbox rows take the rows' locks in
    id order first, so that a hand-over and a worker's claim of overlapping rows
    wait for each other instead of deadlocking (PostgreSQL)."""
    import sqlalchemy as sa

    from mailing import delivery
    from mailing.outbox import hand_over

    mail_worker.worker.pause()
    signup(client, "first@example.se")
    signup(client, "second@example.se")
    ids = sorted(row.id for row in outbox(app))
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            hand_over(list(reversed(ids)))
            delivery._claim(list(reversed(ids)), utcnow())
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        on_server = db.engine.dialect.name == "postgresql"
        db.session.remove()
    mail_worker.worker.resume()
    updates = [i for i, s in enumerate(statements) if s.startswith("UPDATE outbox_message")]
    assert len(updates) == 2
    for update in updates:
        lock = statements[update - 1]
        assert lock.startswith("SELECT outbox_message.id FROM outbox_message")
        assert "ORDER BY outbox_message.id" in lock
        assert ("FOR UPDATE" in lock) == on_server
