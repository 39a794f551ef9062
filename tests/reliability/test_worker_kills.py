"""Row "worker processes killed (SIGKILL) ten times during a 10,000-message
campaign": 0 messages lost; duplicates counted and explained.

The production shape (``tests/reliability/production.py``): a web process and
`dramatiq worker --processes 2 --threads 2` on a Redis broker of the test's
own. The campaign is created and sent through the HTTP API; while it sends,
the worker's whole process group (the dramatiq master and both worker
processes) gets SIGKILL at evenly spaced points, and a new one is started at
once. Nobody runs a command afterwards: what a killed worker held comes back
by itself.

- Messages a killed worker had fetched but not started stay unacknowledged in
  Redis; dramatiq requeues them once the dead worker's heartbeat is older than
  its timeout (60 s), and the outbox sweeper hands their rows over again once
  they are older than the claim timeout.
- A row a killed worker had claimed (``sending``) is freed by the sweeper after
  the claim timeout (``OUTBOX_CLAIM_TIMEOUT_S``, 10 minutes in production,
  10 s here so that the test ends) and sent by a live worker.
- A job delivers up to ``DELIVERY_BATCH`` rows and marks them sent in one
  commit, but notes each acceptance in Redis the moment SMTP gives it
  (``mailing.acceptances``); the row claimed again is marked sent without
  leaving twice. A duplicate is possible only for a kill between the SMTP
  server's "250" and that note: the row goes again, with the same
  deterministic Message-ID. Each thread has one SMTP connection and one
  message on it at a time, so the test checks that every duplicate carries
  one Message-ID and that there are no more than one per connection open at
  the kills (kills x processes x threads).

500 messages and 3 kills by default; 10,000 and 10 with RELIABILITY_LONG=1.
"""

from __future__ import annotations

import collections
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from extensions import db
from mailing.models import OutboxMessage
from tests.reliability.conftest import LONG, figure, scale
from tests.reliability.production import OwnRedis, Production, consented_contacts

# Real processes (production.py): the long job, `make test-long` (docs/testing.md).
pytestmark = [pytest.mark.redis, pytest.mark.long]

PROCESSES, THREADS = 2, 2
CLAIM_TIMEOUT_S = 10


def _api(base: str, token: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _statuses(app: Any, campaign_id: int) -> dict[str, int]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(OutboxMessage.status, sa.func.count())
            .where(OutboxMessage.campaign_id == campaign_id)
            .group_by(OutboxMessage.status)
        ).all()
        db.session.remove()
    return {status: count for status, count in rows}


def test_worker_processes_killed_during_a_campaign_lose_no_message(
    app, database_url, smtp, token_for, tmp_path: Path
) -> None:
    size, kills = scale(500, 10_000), scale(3, 10)
    redis = OwnRedis(tmp_path)
    redis.start()
    production = Production(
        database_url, redis.url(0), smtp.url, tmp_path,
        OUTBOX_CLAIM_TIMEOUT_S=str(CLAIM_TIMEOUT_S), OUTBOX_SWEEP_INTERVAL_S="2",
        OUTBOX_SWEEP_GRACE_S="5", OUTBOX_MIN_BACKOFF_MS="200",
    )  # fmt: skip
    token = token_for("marketing")
    killed_at: list[int] = []
    try:
        production.start_workers(PROCESSES, THREADS)  # they boot while the contacts are written
        production.start_web()
        production.start_scheduler()  # the sweeper's turns
        audience = {address for _, address in consented_contacts(app, "reader", size)}
        campaign = _api(production.base, token, "/api/v1/campaigns", {
            "topic": "newsletter", "subject_sv": "Nyheter", "body_sv": "Hej!",
            "subject_en": "News", "body_en": "Hello!",
        })  # fmt: skip
        sent = _api(production.base, token, f"/api/v1/campaigns/{campaign['id']}/send")
        assert sent["audience"] == size
        for kill in range(1, kills + 1):
            mark = size * kill // (kills + 1)
            deadline = time.monotonic() + 300
            while len(smtp.messages) < mark and time.monotonic() < deadline:
                time.sleep(0.02)
            production.kill_workers()
            killed_at.append(len(smtp.messages))
            production.start_workers(PROCESSES, THREADS)
        # No command, no restart: wait for the service to finish by itself.
        deadline = time.monotonic() + scale(120, 900)
        while time.monotonic() < deadline:
            statuses = _statuses(app, campaign["id"])
            if statuses.get("sent") == size and {str(m["To"]) for m in smtp.messages} >= audience:
                break
            time.sleep(1)
        time.sleep(3)  # a late duplicate would arrive now
    finally:
        production.stop()
        redis.stop()

    with smtp.lock:
        received = list(smtp.messages)
    per_address = collections.Counter(str(m["To"]) for m in received)
    missing = audience - set(per_address)
    duplicates = {a: n - 1 for a, n in per_address.items() if n > 1}
    ids_per_duplicate = {
        a: {str(m["Message-ID"]) for m in received if str(m["To"]) == a} for a in duplicates
    }
    statuses = _statuses(app, campaign["id"])
    figure("worker_kills", messages=size, kills=kills, killed_at_received=killed_at,
           processes=PROCESSES, threads=THREADS, received=len(received), missing=len(missing),
           duplicates=sum(duplicates.values()), outbox=statuses, long=LONG)  # fmt: skip

    assert missing == set()
    assert statuses == {"sent": size}
    assert set(per_address) == audience
    # Every duplicate is the same message again (one Message-ID), and there can be
    # no more than one per SMTP connection open when the workers died.
    assert all(len(ids) == 1 for ids in ids_per_duplicate.values()), ids_per_duplicate
    assert sum(duplicates.values()) <= kills * PROCESSES * THREADS
