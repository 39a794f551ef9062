"""The mailbox poller against a real IMAP server: Debian's Dovecot, a private
instance on 127.0.0.1 started by the test (tests/mailing/dovecot_instance.py).

It removes only what it recognised and recorded, leaves every other message
untouched (and unread), moves a malformed one aside and goes on. Skipped where
Dovecot or root is missing; under CI=true that is a failure.
"""

from __future__ import annotations

import imaplib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extensions import db
from mailing.bounce_mailbox import poll_mailbox
from tests.conftest import service_unavailable
from tests.mailing.bounce_samples import arf, dsn, out_of_office
from tests.mailing.dovecot_instance import PASSWORD, USER, DovecotInstance, why_unavailable
from tests.mailing.test_bounces import ADDRESS, email_reasons, reports, send_campaign_to

MALFORMED = (
    b"From: MAILER-DAEMON@mx.example.net\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n"
    b"The parts of this report have no boundary to find them by.\r\n"
)
A_PERSON_WRITES = (
    b"From: Anna <anna.andersson@example.se>\r\n"
    b"To: bounces@example.com\r\n"
    b"Subject: A question about your newsletter\r\n\r\n"
    b"Hello, how do I change my address?\r\n"
)


@pytest.fixture
def imap(app: Any) -> Iterator[DovecotInstance]:
    reason = why_unavailable()
    if reason:
        service_unavailable(reason)
    folder = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
    folder.chmod(0o755)
    server = DovecotInstance(folder)
    server.start()
    previous = app.config.get("BOUNCE_IMAP_URL"), app.config.get("BOUNCE_IMAP_DONE_FOLDER")
    app.config["BOUNCE_IMAP_URL"] = server.url
    yield server
    app.config["BOUNCE_IMAP_URL"], app.config["BOUNCE_IMAP_DONE_FOLDER"] = previous
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


class Mailbox:
    """What a person sees in the mailbox, through a second IMAP connection."""

    def __init__(self, server: DovecotInstance) -> None:
        self.connection = imaplib.IMAP4("127.0.0.1", server.port)
        self.connection.login(USER, PASSWORD)

    def put(self, raw: bytes) -> None:
        status, _ = self.connection.append("INBOX", None, None, raw)
        assert status == "OK"

    def subjects(self, folder: str) -> list[tuple[str, bool]]:
        """(Subject, whether it is marked read) of each message in ``folder``."""
        status, _ = self.connection.select(f'"{folder}"', readonly=True)
        if status != "OK":
            return []
        _, found = self.connection.search(None, "ALL")
        result = []
        for number in (found[0] or b"").split():
            _, data = self.connection.fetch(number, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            flags = data[0][0] if isinstance(data[0], tuple) else b""
            header = data[0][1].decode().strip() if isinstance(data[0], tuple) else ""
            result.append((header.removeprefix("Subject: "), b"\\Seen" in flags))
        return sorted(result)

    def close(self) -> None:
        self.connection.logout()


def test_the_poller_removes_only_what_it_recorded_and_moves_a_malformed_message_aside(
    app, smtp, imap, admin_api
) -> None:
    contact_id, _, message_id = send_campaign_to(app)
    mailbox = Mailbox(imap)
    mailbox.put(dsn(to="bounces@example.com", recipient=ADDRESS, message_id=message_id))
    mailbox.put(MALFORMED)
    mailbox.put(out_of_office(to="bounces@example.com", sender=ADDRESS))
    mailbox.put(A_PERSON_WRITES)
    with app.app_context():
        result = poll_mailbox()
        db.session.remove()
    assert (result.processed, result.left, result.set_aside) == (1, 2, 1)
    # Untouched: still there, still unread, for a person to answer.
    assert mailbox.subjects("INBOX") == [
        ("A question about your newsletter", False),
        ("Out of office: News in November", False),
    ]
    assert mailbox.subjects("bounces-unreadable") == [
        ("Undelivered Mail Returned to Sender", False)
    ]
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    (report,) = reports(app)
    assert (report.status, report.matched_by) == ("5.1.1", "message_id")
    # A second poll finds nothing new (what it left is not read again) and
    # changes nothing.
    with app.app_context():
        again = poll_mailbox()
        db.session.remove()
    assert (again.processed, again.left, again.set_aside) == (0, 0, 0)
    assert [s for s, _ in mailbox.subjects("INBOX")] == [
        "A question about your newsletter",
        "Out of office: News in November",
    ]
    assert len(reports(app)) == 1
    mailbox.close()


def test_a_bounce_after_600_unrecognised_messages_is_processed_within_two_polls(
    app, smtp, imap, admin_api
) -> None:
    """What a poll leaves for a person is not read again: the next poll goes on
    after the highest UID it saw, so left mail never holds newer mail back."""
    contact_id, _, message_id = send_campaign_to(app)
    mailbox = Mailbox(imap)
    for number in range(600):
        mailbox.put(A_PERSON_WRITES.replace(b"A question", f"Question {number}".encode()))
    mailbox.put(dsn(to="bounces@example.com", recipient=ADDRESS, message_id=message_id))
    polls = []
    with app.app_context():
        for _ in range(2):
            polls.append(poll_mailbox())
            db.session.remove()
    assert [(p.processed, p.left) for p in polls] == [(0, 500), (1, 100)]
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    assert len(mailbox.subjects("INBOX")) == 600
    mailbox.close()


def test_one_worker_at_a_time_reads_the_mailbox(app, smtp, imap, admin_api) -> None:
    """While another worker's lease on the folder runs, a poll does nothing; a
    lease that ran out (a worker that died) is taken over."""
    from datetime import timedelta

    import sqlalchemy as sa

    from kernel.timestamps import utcnow
    from mailing.bounce_mailbox import MailboxSettings
    from mailing.models import BounceMailbox

    contact_id, _, message_id = send_campaign_to(app)
    mailbox = Mailbox(imap)
    mailbox.put(dsn(to="bounces@example.com", recipient=ADDRESS, message_id=message_id))
    key = MailboxSettings.from_url(imap.url).key

    def leased(until: Any) -> None:
        table = BounceMailbox.__table__
        with app.app_context():
            db.session.execute(
                sa.insert(table).values(
                    mailbox=key, last_uid=0, holder="other-worker", locked_until=until
                )
                if db.session.get(BounceMailbox, key) is None
                else sa.update(table).values(holder="other-worker", locked_until=until)
            )
            db.session.commit()
            db.session.remove()

    leased(utcnow() + timedelta(minutes=5))
    with app.app_context():
        busy = poll_mailbox()
        db.session.remove()
    assert busy.busy and (busy.processed, busy.left) == (0, 0)
    assert reports(app) == []
    assert len(mailbox.subjects("INBOX")) == 1
    leased(utcnow() - timedelta(seconds=1))
    with app.app_context():
        taken_over = poll_mailbox()
        state = db.session.get(BounceMailbox, key)
        assert (state.holder, state.locked_until) == (None, None)
        db.session.remove()
    assert (taken_over.busy, taken_over.processed) == (False, 1)
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    mailbox.close()


def test_a_changed_uidvalidity_reads_the_folder_from_the_start(app, smtp, imap, admin_api) -> None:
    import sqlalchemy as sa

    from mailing.bounce_mailbox import MailboxSettings
    from mailing.models import BounceMailbox

    contact_id, _, message_id = send_campaign_to(app)
    mailbox = Mailbox(imap)
    mailbox.put(dsn(to="bounces@example.com", recipient=ADDRESS, message_id=message_id))
    with app.app_context():
        # UIDs remembered from another incarnation of the folder.
        db.session.execute(
            sa.insert(BounceMailbox.__table__).values(
                mailbox=MailboxSettings.from_url(imap.url).key, uidvalidity=1, last_uid=10**6
            )
        )
        db.session.commit()
        result = poll_mailbox()
        db.session.remove()
    assert result.processed == 1
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    mailbox.close()


def test_the_poller_moves_what_it_recorded_to_the_done_folder_when_one_is_set(
    app, smtp, imap, admin_api
) -> None:
    contact_id, _, message_id = send_campaign_to(app)
    app.config["BOUNCE_IMAP_DONE_FOLDER"] = "bounces-done"
    mailbox = Mailbox(imap)
    mailbox.put(arf(to="bounces@example.com", recipient=ADDRESS, message_id=message_id))
    with app.app_context():
        result = poll_mailbox()
        db.session.remove()
    assert result.processed == 1
    assert mailbox.subjects("INBOX") == []
    assert [s for s, _ in mailbox.subjects("bounces-done")] == ["Abuse report"]
    assert email_reasons(admin_api, contact_id) == {"objection"}
    mailbox.close()


def test_the_scheduler_has_the_mailbox_read_on_its_schedule(
    app, smtp, imap, admin_api, stub_worker
) -> None:
    """The scheduler's bounce job (kernel.scheduling) reaches a worker, with no command run."""
    import time
    from datetime import timedelta

    from kernel.scheduling import Periodic, start_in_background
    from mailing.bounce_mailbox import POLL_JOB

    contact_id, _, message_id = send_campaign_to(app)
    mailbox = Mailbox(imap)
    mailbox.put(dsn(to="bounces@example.com", recipient=ADDRESS, message_id=message_id))
    jobs = app.extensions["periodic_jobs"]
    app.extensions["periodic_jobs"] = [
        Periodic("bounce-poll", POLL_JOB, every=timedelta(seconds=0.2))
    ]
    scheduler = start_in_background(app)
    try:
        deadline = time.monotonic() + 20
        while not reports(app) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        scheduler.shutdown()
        app.extensions["periodic_jobs"] = jobs
        stub_worker.join("mail")
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    assert mailbox.subjects("INBOX") == []
    mailbox.close()


def test_no_mailbox_no_poll_job(database_url) -> None:
    from app import create_app
    from kernel.scheduling import periodic_jobs
    from tests.conftest import TEST_CONFIG

    def poll_jobs(mailbox: str | None) -> list[float]:
        built = create_app(
            {**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, "BOUNCE_IMAP_URL": mailbox}
        )
        return [j.every.total_seconds() for j in periodic_jobs(built) if j.name == "bounce-poll"]

    assert poll_jobs(None) == []
    assert poll_jobs("imap://u:p@127.0.0.1:1/INBOX") == [300.0]
