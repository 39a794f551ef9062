"""The production shape for fault tests: a web process and `dramatiq worker`
processes on a Redis server of the test's own, which the test may kill.

Never the machine's shared Redis: this one is started on a free port without
persistence (``--save "" --appendonly no``), so a restart after ``kill -9``
comes back empty, the harshest case: every message it held is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from consent.ledger import record
from consent.models import Basis, EventKind
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from tests.conftest import TEST_CONFIG, service_unavailable
from tests.mailing.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_SERVER = "/usr/bin/redis-server"


def post(url: str, data: dict[str, str], timeout: float = 30) -> tuple[int, str]:
    """A form post as a browser or mailbox provider sends it: (status, body)."""
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class OwnRedis:
    """A redis-server on a free port that the test can ``kill()`` (SIGKILL) and ``start()`` again."""

    def __init__(self, folder: Path) -> None:
        if not Path(REDIS_SERVER).exists():
            service_unavailable(f"redis-server is not at {REDIS_SERVER}")
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        import redis

        self.starts += 1
        log = (self.folder / f"redis-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError(f"redis-server on {self.port} did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no save."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.kill()


class Production:
    """A `flask run` web process, a `dramatiq worker` master with its worker
    processes and (``start_scheduler``) a `flask scheduler run`, in a process
    group of its own so that ``kill_workers`` takes the master and every child
    at once (SIGKILL: nothing is cleaned up).

    Several of them with one ``namespace`` on one broker and one database are
    several hosts of one service (``test_several_hosts``)."""

    def __init__(
        self,
        database_url: str,
        broker_url: str,
        smtp_url: str,
        folder: Path,
        namespace: str | None = None,
        **settings: str,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.namespace = namespace or f"consent-rel-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.env = {
            **os.environ,
            "CONSENT_ENV": "testing",
            "DATABASE_URL": database_url,
            "SECRET_KEY": TEST_CONFIG["SECRET_KEY"],
            "SUPPRESSION_KEY": TEST_CONFIG["SUPPRESSION_KEY"],
            "DRAMATIQ_BROKER_URL": broker_url,
            "DRAMATIQ_NAMESPACE": self.namespace,
            "SMTP_URL": smtp_url,
            "PUBLIC_BASE_URL": self.base,
            "SESSION_COOKIE_SECURE": "0",
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: subprocess.Popen[bytes] | None = None
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.worker_starts = 0

    def _log(self, name: str) -> Any:
        return (self.folder / f"{name}.log").open("ab")

    def start_web(self) -> None:
        self.web = subprocess.Popen(
            [str(BIN / "flask"), "--app", "app", "run", "--port", str(self.port), "--no-reload"],
            cwd=ROOT, env=self.env, stdout=self._log("web"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_until_up()

    def start_workers(self, processes: int = 2, threads: int = 2) -> None:
        self.worker_starts += 1
        self.workers = subprocess.Popen(
            [str(BIN / "dramatiq"), "worker", "--processes", str(processes),
             "--threads", str(threads)],
            cwd=ROOT, env=self.env, stdout=self._log("worker"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def start_scheduler(self) -> None:
        """`flask scheduler run`: the outbox sweep (OUTBOX_SWEEP_INTERVAL_S) and
        the daily jobs reach the workers only through it."""
        self.scheduler = subprocess.Popen(
            [str(BIN / "flask"), "--app", "app", "scheduler", "run"],
            cwd=ROOT, env=self.env, stdout=self._log("scheduler"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill_workers(self) -> None:
        """SIGKILL to the whole group: the dramatiq master and its worker processes."""
        assert self.workers is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.workers.pid, signal.SIGKILL)
        self.workers.wait()
        self.workers = None

    def kill_web(self) -> None:
        """``kill -9`` the web process: requests in flight get no answer."""
        assert self.web is not None
        self.web.send_signal(signal.SIGKILL)
        self.web.wait()
        self.web = None

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.web is not None and self.web.poll() is None, "the web process exited"
            try:
                with urllib.request.urlopen(self.base + "/subscribe", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{self.base} did not come up")

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.terminate()
            try:
                self.scheduler.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.scheduler.kill()
        if self.workers is not None:
            os.killpg(self.workers.pid, signal.SIGTERM)
            try:
                self.workers.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_workers()
        if self.web is not None:
            self.web.terminate()
            try:
                self.web.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.web.kill()

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")


def consented_contacts(app: Any, prefix: str, count: int) -> list[tuple[int, str]]:
    """``count`` contacts with a confirmed newsletter consent, (id, address),
    written through the ledger a thousand to a transaction."""
    contacts = []
    with app.app_context():
        for n in range(count):
            contact = Contact(email=f"{prefix}{n}@example.se", language="sv" if n % 2 else "en")
            db.session.add(contact)
            db.session.flush()
            record(contact, EventKind.CONFIRMED, actor=Actor(kind="person", name="form"),
                   source="double_opt_in", topic="newsletter", channel="email",
                   basis=Basis.CONSENT.value)  # fmt: skip
            contacts.append((contact.id, contact.email))
            if n % 1000 == 999:
                db.session.commit()
        db.session.commit()
        db.session.remove()
    return contacts


def consented_contacts_in_bulk(app: Any, prefix: str, count: int) -> list[tuple[int, str]]:
    """``count`` contacts with consent to the newsletter by email, (id, address),
    in two statements, as ``bench/sending.py`` seeds them: the contacts and
    their standings (the projection the audience and the policy read), without
    the ledger events behind them. For tests about delivery, where writing
    thousands of events one by one through the ledger would take minutes."""
    from consent.models import PermissionState
    from kernel.addresses import keyed_hash
    from kernel.timestamps import utcnow

    now = utcnow()
    with app.app_context():
        rows = [
            {
                "email": f"{prefix}{n}@example.se",
                "address_hash": keyed_hash(f"{prefix}{n}@example.se"),
                "language": "sv" if n % 2 else "en",
                "created_at": now,
                "updated_at": now,
            }
            for n in range(count)
        ]
        contacts = [
            (row.id, row.email)
            for row in db.session.execute(
                sa.insert(Contact.__table__).returning(Contact.id, Contact.email), rows
            )
        ]
        db.session.execute(
            sa.insert(PermissionState.__table__),
            [
                {"contact_id": i, "topic": "newsletter", "channel": "email", "consent_since": now}
                for i, _ in contacts
            ],
        )
        db.session.commit()
        db.session.remove()
    return contacts
