"""The mailbox poller: returned mail read from an IMAP folder (``BOUNCE_IMAP_URL``).

Run by a worker when the scheduler sends ``POLL_JOB`` (``kernel.scheduling``) and
by ``flask bounces poll``. Each message goes through the one processing path
(``mailing.bounces.ingest_message``); then:

- a bounce or complaint it recognised and recorded is deleted, or moved to
  ``BOUNCE_IMAP_DONE_FOLDER`` when that is set;
- a message it cannot read (malformed MIME) is moved aside to
  ``BOUNCE_IMAP_ERROR_FOLDER``, and the poll goes on with the next;
- anything else (a person's reply, an out-of-office, a message too large to
  read) is left untouched, unread (``BODY.PEEK``), for a person to look at.

When the database is down the poll stops and leaves the message where it is:
the next poll tries again.

Each poll reads only what is new: the highest UID processed per folder is kept
with the folder's UIDVALIDITY (``mailing.models.BounceMailbox``), and the poll
searches ``UID <last+1>:*``, so messages left for a person never hold newer
mail back. A changed UIDVALIDITY starts the folder over. One worker at a time
reads a folder: the poll takes a lease on its row first (an UPDATE that only
one transaction can win, on PostgreSQL and SQLite alike) and skips the folder
while another worker holds it; a lease that ran out (a worker that died) is
taken over.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import re
import socket
import ssl
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from flask import current_app

from extensions import db
from kernel.database import insert_for_dialect
from kernel.timestamps import utcnow
from mailing.bounces import ingest_message, max_bytes
from mailing.models import BounceMailbox

log = logging.getLogger(__name__)

# At most this many messages per poll: the next poll takes the rest.
POLL_LIMIT = 500
# Sent every BOUNCE_IMAP_INTERVAL_S by the scheduler (kernel.scheduling) when a mailbox is set.
POLL_JOB = "poll_bounce_mailbox"
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
# The poll's lease on its folder, renewed every LEASE_EVERY messages.
LEASE = timedelta(minutes=10)
LEASE_EVERY = 50


@dataclass
class PollResult:
    processed: int = 0  # recognised and recorded: deleted or moved to the done folder
    left: int = 0  # no bounce, or too large: untouched
    set_aside: int = 0  # unreadable: moved to the error folder
    busy: bool = False  # another worker is reading the folder: nothing done


@dataclass(frozen=True)
class MailboxSettings:
    host: str
    port: int
    username: str
    password: str
    folder: str
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> MailboxSettings:
        """``imaps://user:password@host:993/INBOX`` (TLS, verified); ``imap://`` only
        for a server on the same host or network segment, without TLS."""
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise RuntimeError("BOUNCE_IMAP_URL must look like imaps://user:password@host/INBOX")
        tls = parts.scheme == "imaps"
        return cls(
            host=parts.hostname,
            port=parts.port or (993 if tls else 143),
            username=unquote(parts.username),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
            tls=tls,
        )

    @property
    def key(self) -> str:
        """The folder's name in ``bounce_mailbox``."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"[:255]


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _connect(settings: MailboxSettings) -> imaplib.IMAP4:
    if settings.tls:
        connection: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            settings.host, settings.port, ssl_context=ssl.create_default_context(), timeout=60
        )
    else:
        connection = imaplib.IMAP4(settings.host, settings.port, timeout=60)
    connection.login(settings.username, settings.password)
    # The server names what it can do (MOVE, UIDPLUS) once the login is done.
    _, answer = connection.capability()
    connection.capabilities = tuple(answer[0].decode().upper().split())
    return connection


def poll_mailbox(url: str | None = None, limit: int = POLL_LIMIT) -> PollResult:
    """Read what is new in the folder once and process it (see the module's doc);
    ``busy`` and nothing done while another worker reads the folder."""
    config = current_app.config
    settings = MailboxSettings.from_url(url or config["BOUNCE_IMAP_URL"])
    holder = _take_lease(settings.key)
    if holder is None:
        log.info("Bounce mailbox: another worker is reading it; skipped.")
        return PollResult(busy=True)
    try:
        result = _poll(settings, holder, limit)
    finally:
        _release_lease(settings.key, holder)
    log.info(
        "Bounce mailbox: %d processed, %d left, %d set aside.",
        result.processed,
        result.left,
        result.set_aside,
    )
    return result


def _poll(settings: MailboxSettings, holder: str, limit: int) -> PollResult:
    config = current_app.config
    done_folder = config.get("BOUNCE_IMAP_DONE_FOLDER")
    error_folder = config.get("BOUNCE_IMAP_ERROR_FOLDER") or "bounces-unreadable"
    result = PollResult()
    connection = _connect(settings)
    removed: list[str] = []
    try:
        status, _ = connection.select(_quoted(settings.folder))
        if status != "OK":
            raise RuntimeError(f"IMAP folder {settings.folder!r} cannot be opened")
        can_move = "MOVE" in connection.capabilities
        validity = _uidvalidity(connection, settings.folder)
        last = _last_uid(settings.key, validity)
        # "n:*" names the last message even when its UID is below n (RFC 3501
        # 6.4.8): keep only the new ones, oldest first.
        _, found = connection.uid("SEARCH", f"UID {last + 1}:*")
        uids = sorted(int(uid) for uid in (found[0] or b"").split() if int(uid) > last)[:limit]
        done = last
        try:
            for count, number in enumerate(uids, start=1):
                uid = str(number)
                outcome = _process(connection, uid)
                if outcome == "processed":
                    result.processed += 1
                    if done_folder:
                        _move(connection, uid, done_folder, can_move, removed)
                    else:
                        connection.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
                        removed.append(uid)
                elif outcome == "unreadable":
                    result.set_aside += 1
                    _move(connection, uid, error_folder, can_move, removed)
                else:
                    result.left += 1
                done = number
                if count % LEASE_EVERY == 0:
                    _save_progress(settings.key, holder, validity, done)
        finally:
            # Also when a message failed (the database away): what went before
            # it is done, the rest is read again next time.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                _save_progress(settings.key, holder, validity, done)
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                _expunge(connection, removed)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            connection.logout()
    return result


def _uidvalidity(connection: imaplib.IMAP4, folder: str) -> int | None:
    """The folder's UIDVALIDITY, from the SELECT's answer or a STATUS."""
    _, answer = connection.response("UIDVALIDITY")
    values = [v for v in answer or [] if v]
    if values:
        return int(values[-1])
    _, answer = connection.status(_quoted(folder), "(UIDVALIDITY)")
    found = _UIDVALIDITY.search(b" ".join(x for x in answer if isinstance(x, bytes)))
    return int(found.group(1)) if found else None


def _take_lease(key: str) -> str | None:
    """The lease on the folder's row for this poll (its holder id), or None
    while another worker's lease runs; commits. One UPDATE decides: on
    PostgreSQL the second of two waits for the first's commit and then finds
    the lease taken, SQLite runs one write at a time."""
    table = BounceMailbox.__table__
    db.session.execute(
        insert_for_dialect(table)
        .values(mailbox=key, last_uid=0)
        .on_conflict_do_nothing(index_elements=["mailbox"])
    )
    now = utcnow()
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[-64:]
    taken = db.session.execute(
        sa.update(table)
        .where(
            table.c.mailbox == key,
            sa.or_(table.c.locked_until.is_(None), table.c.locked_until < now),
        )
        .values(holder=holder, locked_until=now + LEASE)
    )
    db.session.commit()
    return holder if taken.rowcount == 1 else None  # type: ignore[attr-defined]


def _last_uid(key: str, validity: int | None) -> int:
    """The highest UID processed in the folder; 0 (start over) when its
    UIDVALIDITY changed, since the UIDs then name other messages."""
    row = db.session.execute(
        sa.select(BounceMailbox.uidvalidity, BounceMailbox.last_uid).where(
            BounceMailbox.mailbox == key
        )
    ).first()
    db.session.commit()
    if row is None or row.uidvalidity is None or row.uidvalidity != validity:
        if row is not None and row.uidvalidity is not None:
            log.warning("Bounce mailbox: UIDVALIDITY changed; reading the folder from the start.")
        return 0
    return int(row.last_uid or 0)


def _save_progress(key: str, holder: str, validity: int | None, last_uid: int) -> None:
    """Remember how far the poll read, and renew its lease; commits."""
    table = BounceMailbox.__table__
    db.session.execute(
        sa.update(table)
        .where(table.c.mailbox == key, table.c.holder == holder)
        .values(uidvalidity=validity, last_uid=last_uid, locked_until=utcnow() + LEASE)
    )
    db.session.commit()


def _release_lease(key: str, holder: str) -> None:
    table = BounceMailbox.__table__
    try:
        db.session.execute(
            sa.update(table)
            .where(table.c.mailbox == key, table.c.holder == holder)
            .values(holder=None, locked_until=None)
        )
        db.session.commit()
    except sa.exc.SQLAlchemyError:
        # The database is away: the lease runs out on its own.
        db.session.rollback()
        log.warning("Bounce mailbox: the lease could not be released; it runs out by itself.")


def _process(connection: imaplib.IMAP4, uid: str) -> str:
    """``processed``, ``unreadable`` or ``left`` for one message."""
    _, sized = connection.uid("FETCH", uid, "(RFC822.SIZE)")
    size = _SIZE.search(b" ".join(x for x in sized if isinstance(x, bytes)) or b"")
    if size is None:
        return "left"  # gone meanwhile (another worker took it)
    if int(size.group(1)) > max_bytes():
        log.warning("Bounce mailbox: a message of %s bytes left unread.", size.group(1).decode())
        return "left"
    _, fetched = connection.uid("FETCH", uid, "(BODY.PEEK[])")
    raw = next((part[1] for part in fetched if isinstance(part, tuple)), None)
    if raw is None:
        return "left"
    ingested = ingest_message(raw)
    if ingested.ignored == "unreadable":
        return "unreadable"
    return "processed" if ingested.recognised else "left"


def _move(
    connection: imaplib.IMAP4, uid: str, folder: str, can_move: bool, removed: list[str]
) -> None:
    connection.create(_quoted(folder))  # "already exists" is an answer, not an error
    if can_move:
        status, _ = connection.uid("MOVE", uid, _quoted(folder))
        if status != "OK":
            raise RuntimeError(f"IMAP MOVE to {folder!r} failed")
        return
    status, _ = connection.uid("COPY", uid, _quoted(folder))
    if status != "OK":
        raise RuntimeError(f"IMAP COPY to {folder!r} failed")
    connection.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
    removed.append(uid)


def _expunge(connection: imaplib.IMAP4, removed: list[str]) -> None:
    """Remove only the messages this poll flagged (RFC 4315 UID EXPUNGE); a
    server without UIDPLUS expunges every message flagged \\Deleted."""
    if not removed:
        return
    if "UIDPLUS" in connection.capabilities:
        connection.uid("EXPUNGE", ",".join(removed))
    else:
        connection.expunge()
