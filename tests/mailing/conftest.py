"""Real parts for the mail tests: an SMTP server (aiosmtpd) in this process and a
dramatiq worker on the in-memory broker, both wired to the session's app."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from dramatiq import Worker

from extensions import AppContextMiddleware, broker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Handler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.sink.refuse:
            return "550 5.1.1 No such mailbox"
        if address in self.sink.defer:
            return "451 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        if envelope.smtp_utf8:
            # Headers in UTF-8 (RFC 6532), which the bytes parser leaves as
            # escapes: read them from the text instead (the bodies are right).
            head = envelope.content.split(b"\r\n\r\n", 1)[0].decode("utf-8")
            for name, value in email.message_from_string(head, policy=email.policy.default).items():
                parsed.replace_header(name, str(value))
        with self.sink.lock:
            self.sink.messages.append(parsed)  # type: ignore[arg-type]
            self.sink.raw.append(envelope.content)
            self.sink.mail_options.append(list(envelope.mail_options))
            self.sink.recipients.extend(envelope.rcpt_tos)
            self.sink.senders.append(envelope.mail_from)
        return "250 Message accepted for delivery"


class _SevenBitHandler(_Handler):
    """A server that does not offer 8BITMIME (RFC 6152): it takes 7-bit data only."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        return [line for line in responses if line[4:].upper() != "8BITMIME"]


class SmtpSink:
    """An SMTP server that keeps what it receives; it can be stopped and restarted."""

    def __init__(self, *, smtputf8: bool = True, eight_bit_mime: bool = True) -> None:
        self.port = free_port()
        self.smtputf8 = smtputf8  # whether EHLO offers SMTPUTF8 (RFC 6531)
        self.eight_bit_mime = eight_bit_mime  # whether EHLO offers 8BITMIME (RFC 6152)
        self.messages: list[EmailMessage] = []
        # The bytes as received, beside each parsed message: what a mailbox
        # provider's parser sees before any decoding.
        self.raw: list[bytes] = []
        self.recipients: list[str] = []  # the envelope's RCPT TO of every message taken
        self.senders: list[str] = []  # the envelope's MAIL FROM of each message, beside it
        # The MAIL FROM parameters (BODY=8BITMIME, SMTPUTF8) of each message, beside it.
        self.mail_options: list[list[str]] = []
        self.refuse: set[str] = set()  # answered 550 (permanent)
        self.defer: set[str] = set()  # answered 451 (temporary)
        self.delay = 0.0  # seconds before each message is accepted
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        handler = _Handler(self) if self.eight_bit_mime else _SevenBitHandler(self)
        self.controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=self.port,
            enable_SMTPUTF8=self.smtputf8,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in str(m["To"])]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} emails, received {len(self.messages)}")


def serve(app: Any, sink: SmtpSink) -> Iterator[SmtpSink]:
    """Start ``sink`` as the app's SMTP server for one test."""
    sink.start()
    previous = app.config.get("SMTP_URL")
    app.config["SMTP_URL"] = sink.url
    yield sink
    app.config["SMTP_URL"] = previous
    sink.stop()


@pytest.fixture
def smtp(app: Any) -> Iterator[SmtpSink]:
    yield from serve(app, SmtpSink())


class MailWorker:
    def __init__(self, worker: Worker):
        self.worker = worker

    def drain(self, timeout_ms: int = 30_000) -> None:
        """Wait until every queued job (and every retry) has run."""
        broker.join("mail", timeout=timeout_ms, fail_fast=False)
        self.worker.join()


@pytest.fixture(scope="session")
def _mail_folder(app: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = str(tmp_path_factory.mktemp("mail"))
    app.config["MAIL_FOLDER"] = folder
    return folder


@pytest.fixture(autouse=True)
def _drop_jobs_nobody_ran() -> Iterator[None]:
    """Jobs a test queued without a worker must not run in a later test."""
    yield
    broker.flush_all()


@pytest.fixture
def mail_worker(app: Any, _mail_folder: str) -> Iterator[MailWorker]:
    """A real dramatiq Worker on the in-memory broker, running actors in the app,
    with retries fast enough for a test; stopped before the database is cleaned."""
    if not any(isinstance(m, AppContextMiddleware) for m in broker.middleware):
        broker.add_middleware(AppContextMiddleware(app))
    previous = app.config["OUTBOX_MIN_BACKOFF_MS"], app.config["OUTBOX_MAX_BACKOFF_MS"]
    app.config["OUTBOX_MIN_BACKOFF_MS"], app.config["OUTBOX_MAX_BACKOFF_MS"] = 100, 400
    broker.flush_all()
    worker = Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    own_middleware = [m for m in broker.middleware if getattr(m, "worker", None) is worker]
    helper = MailWorker(worker)
    yield helper
    try:
        helper.drain(timeout_ms=10_000)
    finally:
        worker.stop()
        # Each Worker registers a middleware on the broker; take this one's away again.
        for middleware in own_middleware:
            broker.middleware.remove(middleware)
        broker.flush_all()
        app.config["OUTBOX_MIN_BACKOFF_MS"], app.config["OUTBOX_MAX_BACKOFF_MS"] = previous


_LINK = re.compile(r"https?://[^\s<>\"]+")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def links_in(message: EmailMessage) -> list[str]:
    """Every link a person could click: in the text part, the HTML part and the headers."""
    found: list[str] = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            found += _LINK.findall(part.get_content())
    found += _LINK.findall(str(message.get("List-Unsubscribe", "")))
    return list(dict.fromkeys(link.rstrip(">") for link in found))


def link(message: EmailMessage, path_part: str) -> str:
    """The path (for the test client) of the first link containing ``path_part``."""
    for url in _LINK.findall(text_of(message)):
        if path_part in url:
            return url.removeprefix("http://localhost")
    raise AssertionError(f"no {path_part} link in:\n{text_of(message)}")
