"""Row "PostgreSQL stopped for 30 s under signup load": 0 requests answered
"success" without a stored record; clear 503 pages meanwhile; recovery without
a restart.

The machine's PostgreSQL is shared, so it is not stopped: a TCP proxy in this
process stands between the app and the server, and the outage cuts it (every
open connection closed, every new one closed at once), which the app sees as
the database becoming unreachable. 3 s in the default run, 30 s with
RELIABILITY_LONG=1. Runs on the PostgreSQL pass of the suite.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from app import create_app
from extensions import db
from tests.conftest import TEST_CONFIG
from tests.mailing.helpers import signup
from tests.reliability.conftest import LONG, figure


class CuttableProxy:
    """Forwards loopback TCP connections to ``target``; ``cut()`` drops them all."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                conn.close()
                continue
            with self.lock:
                self.open |= {conn, upstream}
            threading.Thread(target=self._pipe, args=(conn, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                if not self.up:
                    break
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    (b if sock is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in (a, b):
                with self.lock:
                    self.open.discard(sock)
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        self.up = False
        with self.lock:
            doomed = list(self.open)
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.running = False
        self.cut()
        self.listener.close()


@pytest.fixture
def proxied_app(app: Any, database_url: str) -> Any:
    url = sa.make_url(database_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("needs a server database: runs on the suite's second pass")
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxied = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": through,
            "SQLALCHEMY_ENGINE_OPTIONS": {
                "pool_pre_ping": True,
                "connect_args": {"connect_timeout": 2},
            },
        }
    )
    yield proxied, proxy
    proxy.close()
    with proxied.app_context():
        db.engine.dispose()


def _stored(app: Any, address: str) -> bool:
    from consent.models import SubscriptionRequest
    from crm.models import Contact

    with app.app_context():
        found = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(SubscriptionRequest)
            .join(Contact, Contact.id == SubscriptionRequest.contact_id)
            .where(Contact.email == address)
        )
        db.session.remove()
    return bool(found)


def test_signups_during_a_database_outage_never_claim_success(app, proxied_app) -> None:
    proxied, proxy = proxied_app
    outage = 30.0 if LONG else 3.0
    results: list[tuple[str, int, str, float]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        client = proxied.test_client()
        n = 0
        while not stop.is_set():
            address = f"load{worker}-{n}@example.se"
            n += 1
            response = signup(client, address)
            with lock:
                results.append(
                    (
                        address,
                        response.status_code,
                        response.get_data(as_text=True),
                        time.monotonic(),
                    )
                )

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        for worker in range(4):
            pool.submit(load, worker)
        time.sleep(1.0)
        cut_at = time.monotonic()
        proxy.cut()
        time.sleep(outage)
        proxy.restore()
        restored_at = time.monotonic()
        time.sleep(3.0)
        stop.set()

    statuses = collections.Counter(status for _, status, _, _ in results)
    false_success = [a for a, status, _, _ in results if status == 200 and not _stored(app, a)]
    during = [r for r in results if cut_at + 0.5 < r[3] < restored_at]
    unclear = [r for r in during if r[1] != 503 or "briefly unavailable" not in r[2]]
    recovered = [r for r in results if r[3] > restored_at + 2.0]
    figure(
        "database_outage",
        outage_s=outage,
        requests=len(results),
        statuses=dict(statuses),
        success_without_record=len(false_success),
        answers_during_outage=len(during),
        not_a_clear_503=len([r for r in during if r[1] != 503]),
        ok_after_recovery=sum(r[1] == 200 for r in recovered),
        seconds=round(time.monotonic() - started, 1),
    )
    assert false_success == []
    assert during and unclear == []
    assert statuses[500] == 0
    assert recovered and all(r[1] == 200 for r in recovered)


def test_the_outage_page_is_in_the_reader_s_language(proxied_app) -> None:
    proxied, proxy = proxied_app
    client = proxied.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "sv-SE,sv;q=0.9,en;q=0.5"
    assert signup(client, "fore@example.se", language="sv").status_code == 200
    proxy.cut()
    try:
        refused = signup(client, "under@example.se", language="sv")
    finally:
        proxy.restore()
    assert refused.status_code == 503
    page = refused.get_data(as_text=True)
    assert "Tjänsten är tillfälligt otillgänglig; försök igen om en liten stund." in page
    assert "briefly unavailable" not in page
