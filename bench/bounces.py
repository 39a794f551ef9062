"""Bounce ingestion rate: DSNs per second through ``flask bounces ingest`` in one
process and through ``POST /api/v1/bounces``, each against baselines measured
in the same run.

Setup (untimed): contacts with consent to the newsletter by email, each sent
one campaign message (an outbox row marked sent, with its Message-ID); one
realistic DSN per contact, as Postfix writes them (``multipart/report;
report-type=delivery-status``: a human-readable part, the
``message/delivery-status`` part with ``Final-Recipient``, ``Action: failed``,
``Status: 5.1.1`` and ``Diagnostic-Code``, and the returned headers with the
original ``Message-ID``). Every repetition takes contacts no earlier one
touched, so each DSN is a first hard bounce: parsed, tied to its message by
the Message-ID, a ``bounce_report`` row and an ``undeliverable`` ledger event
written, the projection updated, committed.

- **flask bounces ingest, one process**: the command as an MTA runs it, through
  click's runner on one app (what the command does for each message, without
  starting a Python interpreter per message, which is the MTA's cost).
  Baselines: ``mailing.bounces.parse_message`` alone on the same DSNs (the
  parsing share), and a bare one-row INSERT and COMMIT per DSN (the least
  any path that records something must pay).
- **POST /api/v1/bounces**: the same bounces as JSON to the app served by
  werkzeug in its own process, one request after another. Baseline: ``GET
  /healthz`` (one ``SELECT 1``) on the same server, the cost of a request.
"""

from __future__ import annotations

import json
import os
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench.__main__ import Context, Measurement, database_version
from bench.server import SECRET, SUPPRESSION_KEY, werkzeug

TITLE = "Bounce ingestion rate (issue 21)"
TOPIC = "newsletter"
DOMAIN = "kund.example"


# Printed under the tables of every run.
READING = [
    "How to read it: every DSN here is a first hard bounce, so the one path",
    "parses it, finds its message by the Message-ID, writes the bounce report",
    "and the `undeliverable` ledger event with the projection, and commits; the",
    "after-commit signal then hands over whatever the change owes (webhook",
    "deliveries, none here). The bare write is one statement and one commit, so",
    "the ratio to it is about how many commits' worth of work a bounce costs,",
    "and parsing is a small share of it. Both ways in cost about the same per",
    "bounce: the API adds an HTTP request and a token check, the command adds",
    "click. The rates are low because the machine was shared with other test",
    "runs (see the bare commit's rate above); compare the",
    "ratios, which were measured in turns with their baselines.",
]


def _count(ctx: Context) -> int:
    """DSNs per repetition and path."""
    return 10 if ctx.smoke else int(os.environ.get("BENCH_BOUNCES", 500))


def _message_id(g: int) -> str:
    return f"<campaign.1.{g}@bench.example>"


def _address(g: int) -> str:
    return f"person{g}@{DOMAIN}"


def dsn(g: int) -> bytes:
    """A DSN for contact ``g``'s message as Postfix writes one for an unknown user."""
    boundary = f"B{g:08d}.1733475600/mx.bench.example"
    address = _address(g)
    return (
        "Return-Path: <>\r\n"
        "Received: by mx.bench.example (Postfix) id 4X; Fri,  6 Dec 2024 09:00:00 +0000 (UTC)\r\n"
        "Date: Fri,  6 Dec 2024 09:00:00 +0000 (UTC)\r\n"
        "From: MAILER-DAEMON@mx.bench.example (Mail Delivery System)\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "To: no-reply@bench.example\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"Message-Id: <dsn.{g}@mx.bench.example>\r\n"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "This is the mail system at host mx.bench.example.\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients. It's attached below.\r\n"
        "\r\n"
        f"<{address}>: host mx.{DOMAIN}[192.0.2.25] said: 550 5.1.1\r\n"
        f"    <{address}>: Recipient address rejected: User unknown in virtual\r\n"
        "    mailbox table (in reply to RCPT TO command)\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.bench.example\r\n"
        "X-Postfix-Queue-ID: 4X\r\n"
        "Arrival-Date: Fri,  6 Dec 2024 08:59:59 +0000 (UTC)\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {address}\r\n"
        f"Original-Recipient: rfc822;{address}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        f"Remote-MTA: dns; mx.{DOMAIN}\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{address}>: Recipient address rejected:\r\n"
        "    User unknown in virtual mailbox table\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "From: Consent Service <no-reply@bench.example>\r\n"
        f"To: {address}\r\n"
        "Subject: News\r\n"
        f"Message-ID: {_message_id(g)}\r\n"
        "Date: Fri,  6 Dec 2024 08:59:58 +0000\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def _config(url: str) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": url.replace("postgresql://", "postgresql+psycopg://", 1),
        "CONSENT_ENV": "testing",
        "SECRET_KEY": SECRET,
        "SUPPRESSION_KEY": SUPPRESSION_KEY,
        "RATELIMIT_ENABLED": False,
        "INPROCESS_WORKER": False,
    }


def _seed(app: Any, total: int) -> tuple[str, str]:
    """``total`` contacts with consent, each sent one message of one campaign;
    returns (a marketing API token, the database's version)."""
    from flask_migrate import upgrade

    from consent.models import PermissionState
    from crm.models import Contact
    from extensions import db
    from kernel.access import CLI_ACTOR, create_api_token
    from kernel.addresses import keyed_hash
    from mailing import campaigns
    from mailing.models import OutboxMessage

    now = datetime.now(UTC)
    with app.app_context():
        upgrade(revision="heads")
        _, token = create_api_token("bench", "marketing")
        texts = campaigns.CampaignInput(TOPIC, "Nyheter", "Hej!", "News", "Hello!")
        campaign = campaigns.create_campaign(CLI_ACTOR, texts)
        rows = range(1, total + 1)
        db.session.execute(
            sa.insert(Contact.__table__),
            [
                {
                    "id": g,
                    "email": _address(g),
                    "address_hash": keyed_hash(_address(g)),
                    "name": f"Contact {g}",
                    "language": "en",
                    "created_at": now - timedelta(days=30),
                    "updated_at": now - timedelta(days=30),
                }
                for g in rows
            ],
        )
        db.session.execute(
            sa.insert(PermissionState.__table__),
            [
                {"contact_id": g, "topic": TOPIC, "channel": "email", "consent_since": now}
                for g in rows
            ],
        )
        db.session.execute(
            sa.insert(OutboxMessage.__table__),
            [
                {
                    "idempotency_key": f"campaign:{campaign.id}:contact:{g}",
                    "kind": "marketing",
                    "contact_id": g,
                    "campaign_id": campaign.id,
                    "template": "campaign",
                    "language": "en",
                    "topic": TOPIC,
                    "params": {},
                    "status": "sent",
                    "attempts": 1,
                    "message_id": _message_id(g),
                    "created_at": now - timedelta(hours=1),
                    "sent_at": now - timedelta(hours=1),
                }
                for g in rows
            ],
        )
        if db.engine.dialect.name == "postgresql":
            db.session.execute(sa.text("SELECT setval('contact_id_seq', :n)"), {"n": total})
        db.session.execute(sa.text("CREATE TABLE bench_write (id INTEGER PRIMARY KEY, note TEXT)"))
        db.session.commit()
        version = database_version()
        db.session.remove()
    return token, str(version).split(" on ")[0].split(" (")[0]


class _Slices:
    """Hands out contacts no earlier repetition used: ``n`` at a time."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.next = 1

    def take(self) -> range:
        start = self.next
        self.next += self.n
        return range(start, start + self.n)


def _ingest_measurements(ctx: Context, app: Any, n: int, slices: _Slices) -> dict[str, Measurement]:
    from extensions import db
    from mailing.bounces import parse_message

    runner = app.test_cli_runner()
    parse_batch = [dsn(g) for g in range(1, n + 1)]
    written = iter(range(1, 10**9))

    def parse_alone() -> dict[str, Any]:
        with app.app_context():
            found = sum(len(parse_message(raw)) for raw in parse_batch)
        assert found == n, found
        return {}

    def bare_write() -> dict[str, Any]:
        with app.app_context():
            for _ in range(n):
                db.session.execute(
                    sa.text("INSERT INTO bench_write (id, note) VALUES (:id, :note)"),
                    {"id": next(written), "note": "5.1.1"},
                )
                db.session.commit()
            db.session.remove()
        return {}

    def ingest() -> dict[str, Any]:
        recorded = 0
        for g in slices.take():
            result = runner.invoke(args=["bounces", "ingest", "-"], input=dsn(g))
            assert result.exit_code == 0, result.output
            recorded += result.output.startswith("recorded")
        assert recorded == n, f"{recorded} of {n} recorded"
        return {}

    return ctx.measure_in_turns(
        {
            "parse_message alone": parse_alone,
            "bare INSERT + COMMIT per DSN": bare_write,
            "flask bounces ingest, one process": ingest,
        }
    )


def _api_measurements(
    ctx: Context, url: str, token: str, n: int, slices: _Slices
) -> dict[str, Measurement]:
    with werkzeug(url) as server:
        base = server.base

        def healthz() -> dict[str, Any]:
            for _ in range(n):
                urllib.request.urlopen(f"{base}/healthz", timeout=30).close()
            return {}

        def post() -> dict[str, Any]:
            recorded = 0
            for g in slices.take():
                body = {
                    "email": _address(g),
                    "type": "hard",
                    "source": "bench",
                    "status": "5.1.1",
                    "message_id": _message_id(g),
                }
                request = urllib.request.Request(
                    f"{base}/api/v1/bounces",
                    data=json.dumps(body).encode(),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                    method="POST",
                )
                with urllib.request.urlopen(request, timeout=30) as response:
                    recorded += json.load(response)["outcome"] == "recorded"
            assert recorded == n, f"{recorded} of {n} recorded"
            return {}

        return ctx.measure_in_turns({"GET /healthz": healthz, "POST /api/v1/bounces": post})


def _row(label: str, m: Measurement, n: int, baseline: Measurement | None, unit: str) -> str:
    rate = n / m.median
    ratio = f"{baseline.median / m.median:.2f}x" if baseline is not None else "1.00x"
    return f"| {label} | {n:,} | {m.median:.3f} s | {rate:,.0f} {unit}/s | {ratio} |"


def run(ctx: Context) -> list[str]:
    from app import create_app

    n = _count(ctx)
    lines: list[str] = []
    for url in ctx.databases():
        on = ctx.on(url)
        with on.fresh_database() as scratch:
            app = create_app(_config(scratch))
            token, version = _seed(app, 2 * n * on.repeat)
            ingest = _ingest_measurements(on, app, n, _Slices(n))
            with app.app_context():
                from extensions import db

                db.engine.dispose()
            api_slices = _Slices(n)
            api_slices.next = n * on.repeat + 1
            api = _api_measurements(on, scratch, token, n, api_slices)
        parse = ingest["parse_message alone"]
        bare = ingest["bare INSERT + COMMIT per DSN"]
        cli = ingest["flask bounces ingest, one process"]
        health, post = api["GET /healthz"], api["POST /api/v1/bounces"]
        lines += [
            f"### {version}",
            "",
            f"{n:,} DSNs (hard bounces, one per contact, each a first) per repetition and path.",
            "",
            "| | DSNs or requests | time (median) | rate | ratio: rate / baseline's rate |",
            "| --- | --- | --- | --- | --- |",
            _row("parse_message alone (baseline)", parse, n, None, "DSNs"),
            _row("bare INSERT + COMMIT per DSN (baseline)", bare, n, None, "rows"),
            _row("flask bounces ingest, one process, vs parsing", cli, n, parse, "DSNs"),
            _row("flask bounces ingest, one process, vs bare write", cli, n, bare, "DSNs"),
            _row("GET /healthz (baseline)", health, n, None, "requests"),
            _row("POST /api/v1/bounces vs GET /healthz", post, n, health, "bounces"),
            _row("POST /api/v1/bounces vs bare write", post, n, bare, "bounces"),
            "",
            "Per repetition: ingest "
            + ", ".join(f"{s:.2f} s" for s in cli.seconds)
            + "; API "
            + ", ".join(f"{s:.2f} s" for s in post.seconds)
            + ".",
            "",
        ]
    return [*lines, *READING]
