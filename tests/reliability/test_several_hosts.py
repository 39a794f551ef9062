"""Row "several hosts" (issue 22 item 9): two web processes and two `dramatiq
worker` processes, each on its own port as separate hosts would be, against
one PostgreSQL and one Redis.

- The per-address signup limit holds across both web processes: its counts
  live in Redis (``RATELIMIT_STORAGE_URI``), not in each process.
- A campaign of 5,000 messages loses none while one web process and one
  worker (host A's) get SIGKILL midway and are not started again. Host B
  alone finishes: the scheduler's outbox sweep hands over again what host A's worker
  had fetched from Redis, and the rows host A had claimed once the claim
  timeout has passed (10 s here). Signups keep arriving at both web
  processes meanwhile; every one answered 200 gets its confirmation.
- Duplicates: a message accepted by SMTP in the moment between the server's
  "250" and its note in Redis (``mailing.acceptances``) goes again, with the
  same Message-ID. There is at most one such moment per SMTP connection open
  at the kill, that is per thread of the killed worker; the test counts them.

PostgreSQL only: several hosts cannot share a SQLite file.
"""

from __future__ import annotations

import collections
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import LONG, figure
from tests.reliability.production import OwnRedis, Production, consented_contacts_in_bulk, post
from tests.reliability.test_worker_kills import _statuses

# Real processes (production.py): the long job, `make test-long` (docs/testing.md).
pytestmark = [pytest.mark.redis, pytest.mark.long]

SIZE = 5_000
THREADS = 4
CLAIM_TIMEOUT_S = 10
SIGNUP = {"topics": "newsletter", "consent": "on", "form_id": "hosted", "language": "en"}
PER_ADDRESS = 5
LIMITED = "limited@example.org"


def _api(base: str, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


class Signups(threading.Thread):
    """New people signing up at both web processes, one after another, until
    stopped; a request to a dead process fails and the next goes elsewhere."""

    def __init__(self, hosts: list[Production]) -> None:
        super().__init__(daemon=True)
        self.hosts = hosts
        self.stop = threading.Event()
        self.answered: dict[str, int] = {}
        self.failed = 0

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            host = self.hosts[n % len(self.hosts)]
            address = f"newcomer{n}@example.org"
            n += 1
            try:
                status, _ = post(f"{host.base}/subscribe", {**SIGNUP, "email": address}, 10)
            except OSError:
                self.failed += 1
                time.sleep(0.05)
                continue
            self.answered[address] = status


def test_two_hosts_share_the_limits_and_lose_no_message_when_one_dies(
    app, database_url, smtp, token_for, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs a server database: runs on the suite's second pass")
    redis = OwnRedis(tmp_path)
    redis.start()
    namespace = f"consent-hosts-{uuid.uuid4().hex[:8]}"
    settings = {
        "RATELIMIT_STORAGE_URI": redis.url(1),
        "SIGNUP_LIMIT_PER_ADDRESS": f"{PER_ADDRESS} per hour",
        # Every request comes from 127.0.0.1 here: only the per-address limit is under test.
        "SIGNUP_LIMIT_PER_IP": "100000 per hour",
        "SIGNUP_LIMIT_PER_DOMAIN": "100000 per hour",
        "OUTBOX_CLAIM_TIMEOUT_S": str(CLAIM_TIMEOUT_S),
        "OUTBOX_SWEEP_INTERVAL_S": "2",
        "OUTBOX_SWEEP_GRACE_S": "5",
        "OUTBOX_MIN_BACKOFF_MS": "200",
    }
    hosts = [
        Production(database_url, redis.url(0), smtp.url, tmp_path / name, namespace, **settings)
        for name in ("host-a", "host-b")
    ]
    host_a, host_b = hosts
    token = token_for("marketing")
    signups = Signups(hosts)
    killed_at = 0
    started = time.monotonic()
    try:
        for host in hosts:
            host.start_workers(processes=1, threads=THREADS)  # they boot meanwhile
        for host in hosts:
            host.start_web()
        # Both hosts run a scheduler (its turns are taken once, kernel.scheduling):
        # host A's goes on after the kill, as a scheduler on a third host would.
        for host in hosts:
            host.start_scheduler()
        # Posts for one address, taking turns between the two web processes.
        limited = collections.Counter(
            post(f"{hosts[n % 2].base}/subscribe", {**SIGNUP, "email": LIMITED})[0]
            for n in range(4 * PER_ADDRESS)
        )
        audience = {address for _, address in consented_contacts_in_bulk(app, "reader", SIZE)}
        campaign = _api(host_a.base, token, "/api/v1/campaigns", {
            "topic": "newsletter", "subject_sv": "Nyheter", "body_sv": "Hej!",
            "subject_en": "News", "body_en": "Hello!",
        })  # fmt: skip
        sent = _api(host_b.base, token, f"/api/v1/campaigns/{campaign['id']}/send")
        assert sent["audience"] == SIZE
        signups.start()
        deadline = time.monotonic() + 300
        while len(smtp.messages) < SIZE // 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        host_a.kill_workers()
        host_a.kill_web()
        killed_at = len(smtp.messages)
        time.sleep(2)  # signups go on at host B alone
        signups.stop.set()
        signups.join(timeout=15)
        confirmed = {a for a, status in signups.answered.items() if status == 200}
        # Nobody runs a command or starts host A again: host B finishes by itself.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            received = {str(m["To"]) for m in smtp.messages}
            if _statuses(app, campaign["id"]).get("sent") == SIZE and received >= (
                audience | confirmed | {LIMITED}
            ):
                break
            time.sleep(1)
        time.sleep(3)  # a late duplicate would arrive now
    finally:
        signups.stop.set()
        for host in hosts:
            host.stop()
        redis.stop()

    with smtp.lock:
        received_all = list(smtp.messages)
    campaign_mail = [m for m in received_all if str(m["To"]) in audience]
    per_address = collections.Counter(str(m["To"]) for m in campaign_mail)
    duplicates = {a: n - 1 for a, n in per_address.items() if n > 1}
    ids_per_duplicate = {
        a: {str(m["Message-ID"]) for m in campaign_mail if str(m["To"]) == a} for a in duplicates
    }
    confirmations = collections.Counter(
        str(m["To"]) for m in received_all if str(m["To"]) not in audience
    )
    statuses = _statuses(app, campaign["id"])
    figure("several_hosts", messages=SIZE, killed_at_received=killed_at,
           missing=len(audience - set(per_address)), duplicates=sum(duplicates.values()),
           bound=THREADS, outbox=statuses, signups=len(signups.answered),
           signups_ok=len(confirmed), signups_failed=signups.failed,
           confirmations_missing=len(confirmed - set(confirmations)),
           limited_posts=dict(limited), seconds=round(time.monotonic() - started, 1),
           long=LONG)  # fmt: skip

    # The limit is one count for both web processes, not one per process.
    assert limited[200] == PER_ADDRESS, limited
    assert limited[429] == 3 * PER_ADDRESS, limited
    assert confirmations[LIMITED] == 1
    # Nothing lost.
    assert set(per_address) == audience
    assert statuses == {"sent": SIZE}
    assert confirmed and confirmed <= set(confirmations)
    # At most one duplicate per SMTP connection of the killed worker, each the same message.
    assert all(len(ids) == 1 for ids in ids_per_duplicate.values()), ids_per_duplicate
    assert sum(duplicates.values()) <= THREADS
