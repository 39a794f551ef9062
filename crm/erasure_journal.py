"""The erasure journal: one line per contact erased or purged, kept outside the
database so that restoring an older backup does not take the removals back
(``consent.restore`` re-applies them; docs/operations.md, "Backup and restore").

A line holds hashes, ids and dates only, never an address: the kind
(``erasure`` or ``purge``), the contact's id, the keyed hash of its address
(the suppression list's key, ``kernel.addresses.keyed_hash``), the retention
rule of a purge, and when. It is a JSON-lines file at ``ERASURE_JOURNAL_PATH``
(default ``instance/erasure-journal.jsonl``), opened for appending only,
locked while written (web and worker processes write to it), and synced to
disk before the database transaction that removes the contacts commits.

Written ahead of the commit rather than after: a crash between the two then
leaves a line for a removal that did not happen, which a later restore
completes (the person asked, or the rule was due), instead of a removal
without a line, which a restore would silently undo. A journal that cannot
be written stops the removal (``Unavailable``): an erasure that a restore
could bring back is not done.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import current_app

from kernel.errors import Unavailable

ERASURE = "erasure"
PURGE = "purge"
KINDS = (ERASURE, PURGE)
FILE_NAME = "erasure-journal.jsonl"
# The format of a line; a reader refuses lines of a later version it does not know.
VERSION = 1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JournalEntry:
    kind: str
    contact_id: int
    address_hash: str | None
    at: datetime
    rule: str | None = None

    def to_line(self) -> str:
        # Spelled out rather than json.dumps of a dict: a retention batch writes a
        # thousand lines inside its transaction. Every value but the rule is an
        # int, hex or an ISO time; the rule (a name from the policy file) is escaped.
        digest = "null" if self.address_hash is None else f'"{self.address_hash}"'
        return (
            f'{{"v":{VERSION},"kind":"{self.kind}","contact_id":{int(self.contact_id)},'
            f'"address_hash":{digest},"rule":{json.dumps(self.rule)},'
            f'"at":"{self.at.isoformat()}"}}'
        )

    @classmethod
    def from_line(cls, line: str) -> JournalEntry:
        """Raises ValueError for anything but a complete line this version wrote."""
        data = json.loads(line)
        if not isinstance(data, dict) or data.get("v") != VERSION:
            raise ValueError("not a journal line of version 1")
        kind, contact_id, digest, rule = (
            data.get("kind"),
            data.get("contact_id"),
            data.get("address_hash"),
            data.get("rule"),
        )
        if kind not in KINDS or type(contact_id) is not int:
            raise ValueError("kind or contact_id missing")
        if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
            raise ValueError("address_hash is not a keyed hash")
        if rule is not None and not isinstance(rule, str):
            raise ValueError("rule is not text")
        at = datetime.fromisoformat(str(data.get("at")))
        if at.tzinfo is None:
            raise ValueError("at has no time zone")
        return cls(kind=kind, contact_id=contact_id, address_hash=digest, at=at, rule=rule)


@dataclass
class JournalRead:
    """The entries since a moment, in the order written, and the numbers of the
    lines that could not be read (a line torn by a crash mid-write belongs to a
    transaction that never committed: the line is synced before the commit)."""

    entries: list[JournalEntry] = field(default_factory=list)
    unreadable_lines: list[int] = field(default_factory=list)


def journal_path() -> Path:
    configured = current_app.config.get("ERASURE_JOURNAL_PATH")
    return Path(configured) if configured else Path(current_app.instance_path) / FILE_NAME


def append(entries: Sequence[JournalEntry]) -> None:
    """Append ``entries`` and sync them to disk, before the caller commits.

    Raises ``Unavailable`` when the journal cannot be written; the caller's
    transaction then rolls back, so nothing is removed without its line.
    """
    if not entries:
        return
    path = journal_path()
    payload = "".join(entry.to_line() + "\n" for entry in entries).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # Web and worker processes append at the same time; one writer at a time.
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A crash tore the last line: start on a fresh one, so that only
                # the torn line is unreadable, not this one too.
                payload = b"\n" + payload
            _write_all(fd, payload)
            # The data and the file's new length; the rest of its metadata may wait.
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if created:
            # The new file's directory entry must survive a crash as well.
            _fsync_directory(path.parent)
    except OSError as exc:
        # The path may name the host's layout but never a person.
        log.error("The erasure journal at %s cannot be written: %s", path, exc.strerror)
        raise Unavailable(
            "The erasure journal cannot be written (ERASURE_JOURNAL_PATH); "
            "nothing was erased or purged. Fix the journal's disk or permissions and retry.",
            code="erasure_journal_unavailable",
        ) from exc


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(since: datetime) -> JournalRead:
    """The entries written at or after ``since``. Raises FileNotFoundError when
    there is no journal at the configured path (a restore must not mistake a
    wrong path for "nothing was erased")."""
    result = JournalRead()
    with journal_path().open("r", encoding="utf-8", errors="replace") as handle:
        for number, entry in _parse(handle):
            if entry is None:
                result.unreadable_lines.append(number)
            elif entry.at >= since:
                result.entries.append(entry)
    return result


def _parse(lines: Iterable[str]) -> Iterator[tuple[int, JournalEntry | None]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, JournalEntry.from_line(line)
        except (ValueError, TypeError):
            yield number, None


def entries_for(
    kind: str, removed: Iterable[tuple[int, str | None]], at: datetime, **data: Any
) -> list[JournalEntry]:
    """One entry per removed contact: ``removed`` holds (id, address hash) pairs."""
    rule = data.get("rule")
    return [
        JournalEntry(
            kind=kind,
            contact_id=contact_id,
            address_hash=digest,
            at=at,
            rule=str(rule) if rule is not None else None,
        )
        for contact_id, digest in removed
    ]
