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
    # A second poll finds nothing new to do and changes nothing.
    with app.app_context():
        again = poll_mailbox()
        db.session.remove()
    assert (again.processed, again.left, again.set_aside) == (0, 2, 0)
    assert len(reports(app)) == 1
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


def test_each_worker_reads_the_mailbox_on_its_schedule(app, smtp, imap, admin_api) -> None:
    """``PeriodicBouncePoll``, the middleware worker.py adds, with no command run."""
    import threading
    import time

    from mailing.tasks import PeriodicBouncePoll

    contact_id, _, message_id = send_campaign_to(app)
    mailbox = Mailbox(imap)
    mailbox.put(dsn(to="bounces@example.com", recipient=ADDRESS, message_id=message_id))
    previous = app.config["BOUNCE_IMAP_INTERVAL_S"]
    app.config["BOUNCE_IMAP_INTERVAL_S"] = 0.2
    poller = PeriodicBouncePoll(app)
    try:
        poller.start()
        deadline = time.monotonic() + 20
        while not reports(app) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        poller.stopping.set()
        for thread in threading.enumerate():
            if thread.name == "bounce-poller":
                thread.join(timeout=30)
        app.config["BOUNCE_IMAP_INTERVAL_S"] = previous
    assert email_reasons(admin_api, contact_id) == {"undeliverable"}
    assert mailbox.subjects("INBOX") == []
    mailbox.close()


def test_no_mailbox_no_poller(app) -> None:
    import threading

    from mailing.tasks import PeriodicBouncePoll

    assert app.config.get("BOUNCE_IMAP_URL") is None
    PeriodicBouncePoll(app).start()
    assert "bounce-poller" not in [t.name for t in threading.enumerate()]
