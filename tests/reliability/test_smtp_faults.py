"""Row "SMTP server refusing (4xx), then failing (5xx), then slow":
0 lost after 4xx, 0 retries after 5xx.

A real SMTP server (aiosmtpd) in this process answers as the phase says; a
real dramatiq worker delivers the outbox rows that signups queued.
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailing.models import MailStatus
from tests.mailing.conftest import free_port
from tests.mailing.helpers import outbox, signup
from tests.reliability.conftest import figure, scale


class FaultySmtp:
    """``mode``: ``accept``, ``refuse`` (451 on DATA), ``fail`` (554 on DATA) or
    ``slow`` (accept after ``delay`` seconds). Counts every DATA attempt per recipient."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "accept"
        self.delay = 0.0
        self.attempts: collections.Counter[str] = collections.Counter()
        self.accepted: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        to = str(parsed["To"])
        with self.lock:
            self.attempts[to] += 1
            mode = self.mode
        if mode == "refuse":
            return "451 4.3.0 Try again later"
        if mode == "fail":
            return "554 5.7.1 Rejected"
        if mode == "slow":
            await asyncio.sleep(self.delay)
        with self.lock:
            self.accepted[to] += 1
        return "250 OK"


@pytest.fixture
def faulty_smtp(app: Any) -> Iterator[FaultySmtp]:
    server = FaultySmtp()
    server.controller.start()
    previous = app.config.get("SMTP_URL")
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{server.port}"
    yield server
    app.config["SMTP_URL"] = previous
    server.controller.stop()


def _signups(client: Any, prefix: str, count: int) -> list[str]:
    addresses = [f"{prefix}{n}@example.se" for n in range(count)]
    for address in addresses:
        assert signup(client, address).status_code == 200
    return addresses


def _rows_for(app: Any, count_from: int) -> list[Any]:
    return outbox(app)[count_from:]


def test_smtp_refusing_then_failing_then_slow(app, client, faulty_smtp, mail_worker) -> None:
    import time

    count = scale(20, 200)

    # 4xx: every message is refused for a while, then accepted: none lost.
    faulty_smtp.mode = "refuse"
    refused = _signups(client, "refused", count)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline and sum(faulty_smtp.attempts[a] >= 2 for a in refused) < count
    ):
        time.sleep(0.05)
    with faulty_smtp.lock:
        faulty_smtp.mode = "accept"
    mail_worker.drain(timeout_ms=60_000)
    lost_after_4xx = sum(faulty_smtp.accepted[a] == 0 for a in refused)
    doubled_after_4xx = sum(faulty_smtp.accepted[a] > 1 for a in refused)
    retried = sum(faulty_smtp.attempts[a] >= 2 for a in refused)
    statuses = collections.Counter(row.status for row in _rows_for(app, 0))
    assert statuses == {MailStatus.SENT: count}

    # 5xx: each message is tried once and marked failed, never retried.
    done = len(outbox(app))
    faulty_smtp.mode = "fail"
    failing = _signups(client, "failing", count)
    mail_worker.drain(timeout_ms=30_000)
    time.sleep(0.5)  # a retry would come after 100-400 ms
    retries_after_5xx = sum(faulty_smtp.attempts[a] - 1 for a in failing)
    failed_rows = _rows_for(app, done)
    assert {row.status for row in failed_rows} == {MailStatus.FAILED}
    assert all(row.attempts == 1 and "554" in (row.last_error or "") for row in failed_rows)

    # Slow: a server taking a second per message still gets each exactly once.
    faulty_smtp.mode, faulty_smtp.delay = "slow", 1.0
    slow = _signups(client, "slow", max(4, count // 5))
    mail_worker.drain(timeout_ms=60_000)
    lost_slow = sum(faulty_smtp.accepted[a] != 1 for a in slow)

    figure(
        "smtp",
        refused_messages=count,
        retried_after_4xx=retried,
        lost_after_4xx=lost_after_4xx,
        doubled_after_4xx=doubled_after_4xx,
        failed_messages=count,
        retries_after_5xx=retries_after_5xx,
        slow_messages=len(slow),
        lost_or_doubled_slow=lost_slow,
    )
    assert retried == count  # the refusal really happened to every message
    assert lost_after_4xx == 0 and doubled_after_4xx == 0
    assert retries_after_5xx == 0
    assert lost_slow == 0
