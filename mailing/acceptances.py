"""Acceptances: each message the SMTP server took, noted the moment it took it.

A delivery job marks its rows ``sent`` in one commit after its batch's last
message (``mailing.delivery``): the commit ends the contacts' hold, and one
statement per batch is what keeps the send rate near raw SMTP. A worker
killed before that commit leaves its rows ``sending``; they are handed over
again after the claim timeout, and without this note every message of the
batch that had left would leave a second time (up to ``DELIVERY_BATCH`` per
thread).

So each acceptance is also written at once, outside the batch's transaction,
as one key in the Redis the workers already share (the broker's): one
round trip of a fraction of a millisecond. A claim of a row that was claimed
before (``attempts`` above one) asks for these keys and marks the rows found
``sent`` without sending them again. What remains is the moment between the
server's "250" and this write: at most one message per SMTP connection open
at the kill, that is one per worker thread (docs/reliability.md).

Without a Redis broker (the in-process worker of development, RabbitMQ)
nothing is noted and a killed batch is sent again as before. A Redis that
fails is logged and passed over, and not asked again for half a minute: a
message sent twice is better than one never sent, or sent late.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from extensions import broker

log = logging.getLogger(__name__)

# How long a note is kept when the batch's commit never came: longer than any
# claim timeout, after which the row is handed over again and the note read.
# A batch whose marks committed deletes its notes at once.
KEEP_SECONDS = 7 * 24 * 3600
# After a failure, this long without notes: a Redis that is down must not cost
# every message its connection attempts (and a batch its hold time).
PAUSE_AFTER_FAILURE_SECONDS = 30.0
_paused_until = 0.0


def _failed(what: str) -> None:
    global _paused_until
    _paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
    log.warning("%s failed; no acceptance notes for %.0f s", what,
                PAUSE_AFTER_FAILURE_SECONDS, exc_info=True)  # fmt: skip


def _store() -> tuple[Any, str] | None:
    """Where notes go: the broker's Redis, unless paused after a failure."""
    if time.monotonic() < _paused_until:
        return None
    return _client()


def _client() -> tuple[Any, str] | None:
    """The broker's Redis client and namespace, or None for another broker."""
    client = getattr(broker, "client", None)
    namespace = getattr(broker, "namespace", None)
    if client is None or namespace is None:
        return None
    return client, namespace


def _key(namespace: str, outbox_id: int) -> str:
    return f"{namespace}:accepted:{outbox_id}"


def note_accepted(outbox_id: int) -> None:
    """Note that the SMTP server accepted the message of outbox row ``outbox_id``."""
    found = _store()
    if found is None:
        return
    client, namespace = found
    try:
        client.set(_key(namespace, outbox_id), b"1", ex=KEEP_SECONDS)
    except Exception:
        # The row is still marked sent by its batch's commit; only a kill
        # before that commit would now send it twice.
        _failed(f"Noting the acceptance of outbox {outbox_id}")


def accepted(outbox_ids: Iterable[int]) -> set[int]:
    """Which of these rows' messages the SMTP server already accepted."""
    wanted = list(outbox_ids)
    found = _store()
    if found is None or not wanted:
        return set()
    client, namespace = found
    try:
        values = client.mget([_key(namespace, i) for i in wanted])
    except Exception:
        # Unknown: send. A duplicate is the lesser harm than a message lost.
        _failed("Reading acceptances")
        return set()
    return {i for i, value in zip(wanted, values, strict=True) if value is not None}


def forget(outbox_ids: Iterable[int]) -> None:
    """Drop the notes of rows whose ``sent`` mark has committed."""
    wanted = list(outbox_ids)
    found = _store()
    if found is None or not wanted:
        return
    client, namespace = found
    try:
        client.delete(*[_key(namespace, i) for i in wanted])
    except Exception:
        # They expire by themselves after KEEP_SECONDS.
        _failed(f"Dropping {len(wanted)} acceptance notes")
