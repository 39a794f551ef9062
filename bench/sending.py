"""Campaign send rate: a campaign sent through the API to an SMTP sink by
``dramatiq worker --processes 2``, against a raw smtplib loop sending the same
messages to the same sink over one connection.

Setup (untimed): ``CONTACTS`` contacts with consent to the newsletter by email
(half Swedish, half English); an aiosmtpd sink in its own process whose handler
only counts; a real Redis broker under a namespace of its own (deleted
afterwards); the web app (werkzeug, its own process) and ``dramatiq worker
--processes 2 --threads THREADS`` as real processes. Each repetition creates a
campaign (``POST /api/v1/campaigns``) and times ``POST
/api/v1/campaigns/<id>/send`` until the sink has counted all ``CONTACTS``
messages: the audience query, the outbox rows, the hand-over to Redis, and in
the workers the claim, the contact hold, the policy's last check, rendering,
SMTP and the sent mark of every message.

The baseline sends the same messages, rendered beforehand by the product's
builder (``mailing.messages.build_message`` on the outbox rows of the first
campaign), with ``smtplib`` in one loop over one connection: the cost of SMTP
alone.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import smtplib
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.__main__ import Context, database_version
from bench.server import Process, app_env, werkzeug

TITLE = "Campaign send rate (issue 7)"
TOPIC = "newsletter"
PROCESSES = 2
# dramatiq's default, which `dramatiq worker` (README) runs with.
THREADS = 8
BAR = 0.5
SENDER = "Consent Service <no-reply@bench.example>"
CONSENTED_AT = datetime(2025, 6, 1, 10, tzinfo=UTC)
BIN = Path(sys.executable).parent


def _sizes(ctx: Context) -> tuple[int, int]:
    """(contacts, worker threads per process)."""
    threads = int(os.environ.get("BENCH_SENDING_THREADS", THREADS))
    if ctx.smoke:
        return 20, threads
    return int(os.environ.get("BENCH_SENDING_CONTACTS", 10_000)), threads


def _redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


# The sink ------------------------------------------------------------------------


def _serve_sink(port: int, count: Any, ready: Any, stop: Any) -> None:
    """The SMTP server's process: accept everything, count messages, nothing else."""
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with count.get_lock():
                count.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class Sink:
    """An aiosmtpd server in its own process; ``count`` is what it accepted."""

    def __init__(self) -> None:
        from bench.server import free_port

        # Forked before this process starts any thread of its own: the child
        # only runs aiosmtpd, and any script (not only ``python -m bench``) can
        # start one.
        fork = multiprocessing.get_context("fork")
        self.port = free_port()
        self._count = fork.Value("q", 0)
        self._stop = fork.Event()
        ready = fork.Event()
        self.process = fork.Process(
            target=_serve_sink, args=(self.port, self._count, ready, self._stop), daemon=True
        )
        self.process.start()
        if not ready.wait(30):
            self.close()
            raise RuntimeError("the SMTP sink did not start")

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def count(self) -> int:
        return int(self._count.value)

    def wait_for(self, total: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sink received {self.count} of {total} messages")
            time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


# The data and the product's processes -----------------------------------------------


def _seed(app: Any, n: int) -> tuple[str, str]:
    """``n`` contacts with consent to TOPIC by email; returns (API token, server version)."""
    from flask_migrate import upgrade

    from consent.models import PermissionState
    from crm.models import Contact
    from extensions import db
    from kernel.access import create_api_token
    from kernel.addresses import keyed_hash

    with app.app_context():
        upgrade(revision="heads")
        _, token = create_api_token("bench", "marketing")
        contacts = []
        for g in range(1, n + 1):
            address = f"person{g}@bench.example"
            contacts.append(
                {
                    "id": g,
                    "email": address,
                    "address_hash": keyed_hash(address),
                    "name": f"Contact {g}",
                    "language": "sv" if g % 2 else "en",
                    "created_at": CONSENTED_AT,
                    "updated_at": CONSENTED_AT,
                }
            )
        db.session.execute(sa.insert(Contact.__table__), contacts)
        db.session.execute(
            sa.insert(PermissionState.__table__),
            [
                {"contact_id": g, "topic": TOPIC, "channel": "email", "consent_since": CONSENTED_AT}
                for g in range(1, n + 1)
            ],
        )
        db.session.commit()
        version = database_version()
        db.session.remove()
        db.engine.dispose()
    return token, str(version).split(" on ")[0].split(" (")[0]


def _worker(env: dict[str, str], threads: int, log: Path) -> Process:
    """``dramatiq worker`` as an operator runs it; ready once every process says so."""
    handle = log.open("wb")

    def is_ready() -> bool:
        return log.read_text(errors="replace").count("ready for action") >= PROCESSES

    return Process(
        [
            str(BIN / "dramatiq"),
            "worker",
            "--processes",
            str(PROCESSES),
            "--threads",
            str(threads),
        ],
        env,
        is_ready,
        what="dramatiq worker",
        timeout=60,
        output=handle,
    )


def _call(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else b"",
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def _rendered(app: Any, campaign_id: int, sink_url: str) -> list[tuple[str, bytes]]:
    """The campaign's messages as the workers built them: (address, bytes) per row."""
    from crm.models import Contact
    from extensions import db
    from mailing.messages import build_message
    from mailing.models import OutboxMessage

    app.config.update(MAIL_FROM=SENDER, SMTP_URL=sink_url)
    out = []
    with app.app_context():
        rows = db.session.execute(
            sa.select(OutboxMessage, Contact)
            .join(Contact, Contact.id == OutboxMessage.contact_id)
            .where(OutboxMessage.campaign_id == campaign_id)
            .order_by(OutboxMessage.id)
        ).all()
        for row, contact in rows:
            message = build_message(row, contact)
            # On the wire as smtplib's send_message puts it: CRLF line ends.
            wire = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
            out.append((contact.email, wire))
        db.session.remove()
    return out


def _statuses(app: Any) -> dict[str, int]:
    from extensions import db
    from mailing.models import OutboxMessage

    with app.app_context():
        counts = dict(
            db.session.execute(
                sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
            ).all()
        )
        db.session.remove()
    return {str(k): int(v) for k, v in counts.items()}


def _one_database(ctx: Context, root: str, n: int, threads: int) -> dict[str, Any]:
    import redis

    from bench.retention import _app

    probe = ctx.on(root)
    namespace = f"consent-bench-{uuid.uuid4().hex[:8]}"
    broker = _redis_url()
    with probe.fresh_database() as url:
        app = _app(url)
        token, version = _seed(app, n)
        sink = Sink()
        # The web process and the workers share one broker, namespace and sink.
        settings = {
            "DRAMATIQ_BROKER_URL": broker,
            "DRAMATIQ_NAMESPACE": namespace,
            "SMTP_URL": sink.url,
            "MAIL_FROM": SENDER,
        }
        env = app_env(url, **settings)
        log = Path(f"/tmp/{namespace}-worker.log")
        try:
            web = werkzeug(url, **settings)
            try:
                with _worker(env, threads, log):
                    campaigns: list[int] = []
                    handed: list[int] = []

                    def create() -> None:
                        created = _call(
                            web.base,
                            token,
                            "POST",
                            "/api/v1/campaigns",
                            {
                                "topic": TOPIC,
                                "subject_sv": "Nyheter i november",
                                "body_sv": "Hej! Här är månadens nyheter.\n\n" + "Mer text. " * 40,
                                "subject_en": "News in November",
                                "body_en": "Hello! Here is this month's news.\n\n"
                                + "More text. " * 40,
                            },
                        )
                        campaigns.append(created["id"])

                    def send() -> dict[str, Any]:
                        before = sink.count
                        sent = _call(
                            web.base, token, "POST", f"/api/v1/campaigns/{campaigns[-1]}/send"
                        )
                        handed.append(sent["audience"])
                        sink.wait_for(before + n, timeout=max(120.0, n * 0.5))
                        return {"messages": sink.count - before}

                    product = probe.measure(
                        f"campaign send, {PROCESSES} worker processes", send, setup=create
                    )
                    # Let the last sent marks commit before the tables are read.
                    deadline = time.monotonic() + 60
                    while _statuses(app).get("sent", 0) < n * ctx.repeat:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.2)
                    statuses = _statuses(app)
            finally:
                web.stop()
            messages = _rendered(app, campaigns[0], sink.url)
            host, port = "127.0.0.1", sink.port

            def raw() -> dict[str, Any]:
                before = sink.count
                with smtplib.SMTP(host, port, timeout=30) as server:
                    server.ehlo()
                    for address, data in messages:
                        server.sendmail("no-reply@bench.example", [address], data)
                sink.wait_for(before + len(messages), timeout=60)
                return {"messages": sink.count - before}

            baseline = probe.measure("raw smtplib loop, one connection", raw)
        finally:
            sink.close()
            client = redis.Redis.from_url(broker)
            keys = list(client.scan_iter(f"{namespace}*"))
            if keys:
                client.delete(*keys)
            log.unlink(missing_ok=True)
    return {
        "version": version,
        "product": product,
        "baseline": baseline,
        "statuses": statuses,
        "handed": handed,
        "size": sum(len(data) for _, data in messages) / max(len(messages), 1),
    }


def _redis_reachable(url: str) -> str | None:
    """None when Redis answers at ``url``, else why not."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def run(ctx: Context) -> list[str]:
    n, threads = _sizes(ctx)
    trouble = _redis_reachable(_redis_url())
    if trouble:
        print(f"  sending: not run, no Redis at {_redis_url()} ({trouble})", file=sys.stderr)
        return [f"Not run: no Redis at `{_redis_url()}` (set BENCH_REDIS_URL)."]
    lines = [
        f"{n:,} contacts with consent to `{TOPIC}` by email (half Swedish, half English). "
        f"A campaign is created and sent through the API (`POST /api/v1/campaigns/<id>/send`, "
        f"werkzeug in its own process); `dramatiq worker --processes {PROCESSES} --threads "
        f"{threads}` delivers through a real Redis broker to an aiosmtpd sink in its own "
        "process whose handler only counts. Timed from the send request until the sink "
        "has counted every message. The baseline sends the same messages, rendered "
        "beforehand by the product's message builder, with `smtplib` in one loop over one "
        "connection to the same sink. Figures are messages per second (median).",
        "",
        "| database | campaign send (median) | messages/s | raw smtplib loop (median) | messages/s | ratio | bar (>= 0.5x) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for root in ctx.databases():
        result = _one_database(ctx, root, n, threads)
        product, baseline = result["product"], result["baseline"]
        assert all(d["messages"] == n for d in product.details), "the sink missed messages"
        assert result["statuses"] == {"sent": n * ctx.repeat}, result["statuses"]
        rate, raw_rate = n / product.median, n / baseline.median
        ratio = rate / raw_rate
        lines.append(
            f"| {result['version']} | {product.median:.2f} s | {rate:,.0f} "
            f"| {baseline.median:.2f} s | {raw_rate:,.0f} | {ratio:.2f}x "
            f"| {'met' if ratio >= BAR else '**not met**'} |"
        )
        notes.append(
            f"{result['version']}: campaign send per repetition "
            + ", ".join(f"{s:.2f} s" for s in product.seconds)
            + "; raw loop "
            + ", ".join(f"{s:.2f} s" for s in baseline.seconds)
            + f"; {result['size']:,.0f} bytes per message; every outbox row `sent`."
        )
    return [*lines, *(line for note in notes for line in ("", note))]
