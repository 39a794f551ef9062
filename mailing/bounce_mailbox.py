"""The mailbox poller: returned mail read from an IMAP folder (``BOUNCE_IMAP_URL``).

Run by every worker on a schedule (``mailing.tasks.PeriodicBouncePoll``) and
by ``flask bounces poll``. Each message goes through the one processing path
(``mailing.bounces.ingest_message``); then:

- a bounce or complaint it recognised and recorded is deleted, or moved to
  ``BOUNCE_IMAP_DONE_FOLDER`` when that is set;
- a message it cannot read (malformed MIME) is moved aside to
  ``BOUNCE_IMAP_ERROR_FOLDER``, and the poll goes on with the next;
- anything else (a person's reply, an out-of-office, a message too large to
  read) is left untouched, unread (``BODY.PEEK``), for a person to look at.

When the database is down the poll stops and leaves the message where it is:
the next poll tries again. Two workers polling at once may read the same
message; ``consent.deliverability`` records a report tied to its message once.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from flask import current_app

from mailing.bounces import ingest_message, max_bytes

log = logging.getLogger(__name__)

# At most this many messages per poll: the next poll takes the rest.
POLL_LIMIT = 500
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass
class PollResult:
    processed: int = 0  # recognised and recorded: deleted or moved to the done folder
    left: int = 0  # no bounce, or too large: untouched
    set_aside: int = 0  # unreadable: moved to the error folder


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
    """Read the folder once and process what is in it (see the module's doc)."""
    config = current_app.config
    settings = MailboxSettings.from_url(url or config["BOUNCE_IMAP_URL"])
    done_folder = config.get("BOUNCE_IMAP_DONE_FOLDER")
    error_folder = config.get("BOUNCE_IMAP_ERROR_FOLDER") or "bounces-unreadable"
    result = PollResult()
    connection = _connect(settings)
    try:
        status, _ = connection.select(_quoted(settings.folder))
        if status != "OK":
            raise RuntimeError(f"IMAP folder {settings.folder!r} cannot be opened")
        can_move = "MOVE" in connection.capabilities
        _, found = connection.uid("SEARCH", "ALL")
        uids = [uid.decode() for uid in (found[0] or b"").split()[:limit]]
        removed: list[str] = []
        for uid in uids:
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
        _expunge(connection, removed)
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            connection.logout()
    log.info(
        "Bounce mailbox: %d processed, %d left, %d set aside.",
        result.processed,
        result.left,
        result.set_aside,
    )
    return result


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
