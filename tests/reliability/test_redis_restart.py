"""Row "Redis killed and restarted during 1,000 unsubscribes and 1,000 signups":
0 opt-outs lost, 0 confirmation emails lost; doubles only for a kill between
SMTP acceptance and the commit (none here: no worker dies), counted.

The production shape (``tests/reliability/production.py``): a web process, a
`dramatiq worker` with two processes, and a Redis of the test's own that is
both the broker and the rate limiter's store. A third of the requests (one-click
unsubscribes and signups, interleaved, four at a time) go out; half-way
through them Redis gets SIGKILL; the next third is posted while it is down;
it comes back EMPTY (no persistence), and the last third follows. The broker
forgot every message it held: the outbox in the database is the record of
what is owed, and the sweeper (sent by `flask scheduler run` every second
here, not stored in Redis between turns) hands it over again
(``mailing.outbox.sweep``, which tells an emptied broker by the mark it
keeps beside the queues). The claim timeout stays at its production value
(10 minutes), so nothing but that recovery can deliver the lost messages
within the test's wait.

While Redis is down the test also posts the two forms whose only record is a
job (unsubscribe-by-address, privacy request): they must not answer success
(503, never 500), and after the restart they work again.

100 + 100 by default, 1,000 + 1,000 with RELIABILITY_LONG=1.
"""

from __future__ import annotations

import collections
import random
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consent.tokens import Purpose, make_token
from extensions import db
from mailing.models import OutboxMessage
from tests.reliability.conftest import figure, scale
from tests.reliability.production import OwnRedis, Production, consented_contacts, post

# Real processes (production.py): the long job, `make test-long` (docs/testing.md).
pytestmark = [pytest.mark.redis, pytest.mark.long]

SIGNUP = {"topics": "newsletter", "consent": "on", "form_id": "hosted", "language": "en"}


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def _unsubscribe_link(app: Any, contact_id: int) -> str:
    with app.app_context():
        return make_token(Purpose.UNSUBSCRIBE, {"c": contact_id, "t": "newsletter"})


def _decisions(app: Any, addresses: list[str]) -> dict[str, str]:
    from consent.services import check_permissions

    with app.app_context():
        found = {
            d.email: ("allowed" if d.allowed else d.reason.value)
            for d in check_permissions(addresses, "newsletter", "email")
        }
        db.session.remove()
    return found


def _confirm_rows(app: Any) -> collections.Counter[str]:
    from crm.models import Contact

    with app.app_context():
        rows = db.session.execute(
            sa.select(Contact.email, OutboxMessage.status)
            .join(Contact, Contact.id == OutboxMessage.contact_id)
            .where(OutboxMessage.template == "confirm")
        ).all()
        db.session.remove()
    return collections.Counter(status for _, status in rows)


def _waiting_rows(app: Any) -> dict[str, int]:
    """Confirmations still owed: handed to the broker (it holds them, or held them
    until it died) or never handed over (posted while it was down)."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(OutboxMessage.handed_over_at.is_(None), sa.func.count())
            .where(OutboxMessage.template == "confirm", OutboxMessage.status == "queued")
            .group_by(OutboxMessage.handed_over_at.is_(None))
        ).all()
        db.session.remove()
    named = {True: "never_handed_over", False: "in_the_dead_broker"}
    return {named[bool(unhanded)]: count for unhanded, count in rows}


def test_redis_killed_and_restarted_empty_loses_no_opt_out_and_no_confirmation(
    app, database_url, smtp, own_redis, tmp_path
) -> None:
    size = scale(100, 1000)
    leaving = consented_contacts(app, "leaving", size)
    links = {address: _unsubscribe_link(app, cid) for cid, address in leaving}
    joining = [f"joining{n}@example.se" for n in range(size)]
    production = Production(
        database_url, own_redis.url(0), smtp.url, tmp_path,
        RATELIMIT_STORAGE_URI=own_redis.url(1), SIGNUP_LIMIT_PER_IP="100000 per hour",
        SIGNUP_LIMIT_PER_DOMAIN="100000 per hour",  # every signup is at example.se
        OUTBOX_SWEEP_INTERVAL_S="1", OUTBOX_SWEEP_GRACE_S="2",
    )  # fmt: skip
    production.start_web()
    production.start_workers(processes=2, threads=2)
    production.start_scheduler()
    base = production.base

    def unsubscribe(address: str) -> tuple[str, str, int]:
        status, _ = post(f"{base}/unsubscribe/{links[address]}/one-click",
                         {"List-Unsubscribe": "One-Click"})  # fmt: skip
        return "unsubscribe", address, status

    def signup(address: str) -> tuple[str, str, int]:
        status, _ = post(f"{base}/subscribe", {**SIGNUP, "email": address})
        return "signup", address, status

    work = [(unsubscribe, a) for a in links] + [(signup, a) for a in joining]
    random.Random(8).shuffle(work)
    thirds = [work[: len(work) // 3], work[len(work) // 3 : 2 * len(work) // 3],
              work[2 * len(work) // 3 :]]  # fmt: skip
    during: list[tuple[str, int]] = []
    try:
        with ThreadPoolExecutor(4) as pool:
            first = [pool.submit(job, address) for job, address in thirds[0]]
            while sum(f.done() for f in first) < len(first) // 2:
                time.sleep(0.005)
            own_redis.kill()
            killed_at = time.monotonic()
            second = [pool.submit(job, address) for job, address in thirds[1]]
            # The forms whose only record is a job, while the broker is down.
            for n in range(3):
                during.append(("unsubscribe_by_address",
                               post(f"{base}/unsubscribe", {"email": leaving[n][1]})[0]))  # fmt: skip
                during.append(("privacy_request",
                               post(f"{base}/privacy/requests",
                                    {"email": leaving[n][1], "kind": "access"})[0]))  # fmt: skip
            wait(first + second)
            time.sleep(max(0.0, 2.0 - (time.monotonic() - killed_at)))  # down for 2 s at least
            waiting = _waiting_rows(app)
            own_redis.start()
            down_for = time.monotonic() - killed_at
            third = [pool.submit(job, address) for job, address in thirds[2]]
            wait(third)
        answers = [f.result() for f in first + second + third]
        after = post(f"{base}/unsubscribe", {"email": leaving[-1][1]})[0]

        # Every signup answered "check your inbox" gets exactly one confirmation.
        accepted = [a for kind, a, status in answers if kind == "signup" and status == 200]
        deadline = time.monotonic() + scale(60, 300)
        while time.monotonic() < deadline:
            received = {a for a in accepted if smtp.to(a)}
            if len(received) == len(accepted) and smtp.to(leaving[-1][1]):
                break
            time.sleep(0.5)
        time.sleep(3)  # a late double would arrive now
        per_address = {a: len(smtp.to(a)) for a in joining}
    finally:
        production.stop()

    statuses = collections.Counter((kind, status) for kind, _, status in answers)
    decisions = _decisions(app, [a for _, a in leaving])
    unsubscribed = [a for kind, a, status in answers if kind == "unsubscribe" and status == 200]
    opt_outs_lost = [a for a in unsubscribed if decisions.get(a) != "unsubscribed"]
    lost = [a for a in accepted if per_address[a] == 0]
    doubled = [a for a in accepted if per_address[a] > 1]
    rows = _confirm_rows(app)
    figure("redis_restart", unsubscribes=size, signups=size, redis_down_s=round(down_for, 1),
           owed_at_restart=waiting,
           answers={f"{k} {s}": n for (k, s), n in sorted(statuses.items())},
           job_forms_while_down=dict(collections.Counter(f"{k} {s}" for k, s in during)),
           address_form_after_restart=after, opt_outs_lost=len(opt_outs_lost),
           confirmations_lost=len(lost), confirmations_doubled=len(doubled),
           confirm_rows=dict(rows))  # fmt: skip

    assert all(status == 200 for _, _, status in answers), statuses
    assert opt_outs_lost == []
    assert lost == [] and doubled == []
    assert rows == {"sent": size}
    assert all(status == 503 for _, status in during), during
    assert after == 200 and len(smtp.to(leaving[-1][1])) == 1
