"""SMTP connections are kept per thread and reused, and a kept connection the
server dropped is replaced before a message is handed over."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailing import transport
from mailing.transport import SmtpSettings, send_smtp
from tests.mailing.conftest import SmtpSink, _Handler


class CountingHandler(_Handler):
    """Keeps what it receives and counts the connections that greeted it and
    the RSET commands it was sent."""

    def __init__(self, sink: SmtpSink) -> None:
        super().__init__(sink)
        self.connections = 0
        self.resets = 0

    async def handle_RSET(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.resets += 1
        return "250 OK"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        self.connections += 1
        session.host_name = hostname
        return responses


class CountingSink(SmtpSink):
    def start(self) -> None:
        previous = getattr(self, "handler", None)
        self.handler = CountingHandler(self)
        if previous is not None:
            self.handler.connections = previous.connections
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()


@pytest.fixture
def sink() -> Iterator[CountingSink]:
    server = CountingSink()
    server.start()
    yield server
    transport.close_connection()
    server.stop()


def _message(n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "no-reply@example.com"
    message["To"] = f"person{n}@example.se"
    message["Subject"] = f"Message {n}"
    message.set_content("Hello.\n")
    return message


def test_one_thread_sends_its_messages_over_one_connection(sink: Any) -> None:
    settings = SmtpSettings.from_url(sink.url)
    for n in range(5):
        send_smtp(_message(n), settings)
    assert len(sink.wait_for(5)) == 5
    assert sink.handler.connections == 1


@pytest.mark.parametrize(
    "rset_after, resets", [(60.0, 0), (0.0, 2)], ids=["used a moment ago", "idle"]
)
def test_a_kept_connection_answers_rset_only_after_it_sat_idle(
    sink: Any, monkeypatch: Any, rset_after: float, resets: int
) -> None:
    monkeypatch.setattr(transport, "RSET_AFTER_IDLE_SECONDS", rset_after)
    settings = SmtpSettings.from_url(sink.url)
    for n in range(3):
        send_smtp(_message(n), settings)
    assert len(sink.wait_for(3)) == 3
    assert (sink.handler.connections, sink.handler.resets) == (1, resets)


@pytest.mark.parametrize("rset_after", [0.0, 60.0], ids=["idle, RSET first", "no RSET"])
def test_a_connection_the_server_dropped_is_replaced_and_the_message_still_goes(
    sink: Any, monkeypatch: Any, rset_after: float
) -> None:
    """Noticed by RSET on an idle connection, or by the message's first command
    on one used a moment ago: either way a new connection takes the message."""
    monkeypatch.setattr(transport, "RSET_AFTER_IDLE_SECONDS", rset_after)
    settings = SmtpSettings.from_url(sink.url)
    send_smtp(_message(1), settings)
    sink.stop()  # drops the kept connection
    sink.start()
    send_smtp(_message(2), settings)  # no TemporaryFailure: a new connection took it
    assert [str(m["To"]) for m in sink.wait_for(2)] == ["person1@example.se", "person2@example.se"]
    assert sink.handler.connections == 2


def test_a_connection_carries_at_most_its_share_of_messages(sink: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(transport, "MAX_MESSAGES_PER_CONNECTION", 2)
    settings = SmtpSettings.from_url(sink.url)
    for n in range(5):
        send_smtp(_message(n), settings)
    assert len(sink.wait_for(5)) == 5
    assert sink.handler.connections == 3


def test_a_server_that_offers_no_auth_is_a_temporary_failure_not_an_address_problem(
    sink: Any,
) -> None:
    """smtplib raises the same error class for a missing AUTH as for a missing
    SMTPUTF8; only the latter is the address's fault, and final."""
    with_user = SmtpSettings.from_url(sink.url.replace("smtp://", "smtp://user:secret@"))
    with pytest.raises(transport.TemporaryFailure, match="AUTH"):
        send_smtp(_message(1), with_user)
    assert sink.messages == []
