"""A relay with a certificate from its own CA (issue 18, item 7): a local relay
that offers STARTTLS with a self-signed or private-CA certificate is used once
``SMTP_CA_FILE`` names that CA, and refused with a clear, temporary failure
until then.

The CA and the relay's certificate are made for each run with ``openssl``; the
relay is aiosmtpd in this process, speaking STARTTLS (``smtp://``) or TLS from
the first byte (``smtps://``).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from extensions import broker, db
from mailing import delivery, transport
from mailing.models import OutboxMessage
from tests.mailing.conftest import SmtpSink, _Handler
from tests.mailing.helpers import signup


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the private CA, what SMTP_CA_FILE names
    other_ca: Path  # a CA that did not sign the relay's certificate
    chain: Path  # the relay's certificate
    key: Path


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _make_ca(folder: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=folder,
    )  # fmt: skip


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test CA")
    folder = tmp_path_factory.mktemp("relay-ca")
    _make_ca(folder, "relay-ca")
    _make_ca(folder, "other-ca")
    (folder / "relay.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "relay.key",
        "-out", "relay.csr", "-subj", "/CN=127.0.0.1",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "relay.csr", "-days", "2", "-CA", "relay-ca.pem",
        "-CAkey", "relay-ca.key", "-CAcreateserial", "-out", "relay.pem",
        "-extfile", "relay.ext",
        cwd=folder,
    )  # fmt: skip
    return Certificates(
        ca=folder / "relay-ca.pem",
        other_ca=folder / "other-ca.pem",
        chain=folder / "relay.pem",
        key=folder / "relay.key",
    )


class TlsRelay(SmtpSink):
    """The SMTP sink behind TLS: STARTTLS, required before any mail (``smtp://``),
    or TLS from the first byte (``smtps://``)."""

    def __init__(self, certificates: Certificates, *, implicit: bool) -> None:
        super().__init__()
        self.implicit = implicit
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificates.chain, certificates.key)

    @property
    def url(self) -> str:
        return f"{'smtps' if self.implicit else 'smtp'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        tls = (
            {"ssl_context": self.context}
            if self.implicit
            else {"tls_context": self.context, "require_starttls": True}
        )
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **tls)
        self.controller.start()


def _relay(app: Any, certificates: Certificates, implicit: bool) -> Iterator[TlsRelay]:
    relay = TlsRelay(certificates, implicit=implicit)
    relay.start()
    previous = app.config.get("SMTP_URL"), app.config.get("SMTP_CA_FILE")
    app.config["SMTP_URL"] = relay.url
    yield relay
    app.config["SMTP_URL"], app.config["SMTP_CA_FILE"] = previous
    transport.close_connection()
    relay.stop()


@pytest.fixture(params=[False, True], ids=["smtp-starttls", "smtps"])
def relay(app: Any, certificates: Certificates, request: Any) -> Iterator[TlsRelay]:
    yield from _relay(app, certificates, request.param)


def _queued_confirmation(app: Any, client: Any) -> int:
    """A signup's confirmation email, waiting in the outbox (no worker runs)."""
    assert signup(client, "anna@example.com").status_code == 200
    broker.flush_all()
    with app.app_context():
        outbox_id = db.session.scalar(sa.select(OutboxMessage.id))
        db.session.remove()
    assert outbox_id is not None
    return outbox_id


def _deliver(app: Any, outbox_id: int) -> delivery.Delivery:
    with app.app_context():
        try:
            return delivery.deliver(outbox_id)
        finally:
            db.session.remove()


def _row(app: Any, outbox_id: int) -> tuple[str, str | None]:
    with app.app_context():
        row = db.session.get(OutboxMessage, outbox_id)
        assert row is not None
        found = row.status, row.last_error
        db.session.remove()
    return found


@pytest.mark.parametrize("ca_file", [None, "other_ca"], ids=["system store", "another CA"])
def test_a_relay_with_an_untrusted_certificate_is_a_temporary_failure_that_says_why(
    app, client, relay, certificates, ca_file
) -> None:
    app.config["SMTP_CA_FILE"] = str(getattr(certificates, ca_file)) if ca_file else None
    outbox_id = _queued_confirmation(app, client)
    with pytest.raises(transport.TemporaryFailure) as failure:
        _deliver(app, outbox_id)
    reason = str(failure.value)
    assert "certificate" in reason and "SMTP_CA_FILE" in reason, reason
    status, last_error = _row(app, outbox_id)
    assert status == "queued" and last_error == reason  # retried later, with the reason kept
    assert relay.messages == []


def test_a_relay_whose_ca_is_in_smtp_ca_file_takes_the_mail(
    app, client, relay, certificates
) -> None:
    app.config["SMTP_CA_FILE"] = str(certificates.ca)
    outbox_id = _queued_confirmation(app, client)
    assert _deliver(app, outbox_id).status == "sent"
    [message] = relay.wait_for(1)
    assert relay.recipients == ["anna@example.com"]
    assert "confirm" in str(message["Subject"]).lower()
    assert _row(app, outbox_id)[0] == "sent"


def test_a_missing_ca_file_is_named_in_the_failure(app, client, relay, tmp_path) -> None:
    app.config["SMTP_CA_FILE"] = str(tmp_path / "no-such-ca.pem")
    outbox_id = _queued_confirmation(app, client)
    with pytest.raises(transport.TemporaryFailure, match="SMTP_CA_FILE"):
        _deliver(app, outbox_id)
    assert relay.messages == []
