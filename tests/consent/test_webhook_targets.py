"""Webhooks to internal addresses (issue 18, item 13): an admin's URL must not make
the service post to itself, its Redis, its database or a cloud metadata service.

Refused when registered (422) and again at every delivery, after resolving the
name; a delivery connects to the address it checked. The suite's app allows
private targets (its webhook tests use a receiver on 127.0.0.1); these tests
turn that off, as production has it.

DNS is the one part replaced in two tests (``dns``): a name must answer one
address at registration and another at delivery, which needs a resolver the
test controls. Everything else is real: the receivers are HTTP servers on
loopback, the delivery opens real connections.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from consent import webhooks
from consent.models import WebhookDelivery, WebhookEndpoint
from extensions import db
from kernel.access import CLI_ACTOR
from kernel.errors import InvalidInput
from tests.conftest import count_rows

PUBLIC = "93.184.215.14"  # a public address; nothing here connects to it


@pytest.fixture
def production(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)


class Resolver:
    """Answers for names the test chooses, one list of addresses per name for
    successive lookups (the last repeats); other names go to the real resolver."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.asked: dict[str, int] = {}
        self.real = socket.getaddrinfo

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in self.answers:
            return self.real(host, port, *args, **kwargs)
        turn = self.asked.get(host, 0)
        self.asked[host] = turn + 1
        address = self.answers[host][min(turn, len(self.answers[host]) - 1)]
        return self.real(address, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    resolver = Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", resolver.getaddrinfo)
    return resolver


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, ssl_context: Any = None) -> None:
        self.received: list[bytes] = []
        self.server = make_server(host, port, self.wsgi, threaded=True, ssl_context=ssl_context)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wsgi(self, environ: Any, start_response: Any) -> Any:
        self.received.append(Request(environ).get_data())
        return Response("ok")(environ, start_response)


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(*args: Any, **kwargs: Any) -> Receiver:
        receiver = Receiver(*args, **kwargs)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.server.shutdown()


INTERNAL = [
    ("http://127.0.0.1:8080/hooks", "loopback"),
    ("http://127.1/hooks", "loopback"),
    ("http://2130706433/hooks", "loopback"),  # 127.0.0.1 as one number
    ("http://0x7f.1/hooks", "loopback"),
    ("http://localhost:6379/", "loopback"),  # a name that resolves to loopback
    ("http://[::1]:6379/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://10.0.0.5/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "not a public address"),  # shared address space (carrier NAT)
    ("http://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "unique-local"),
    ("http://[fd12:3456::1]/", "unique-local"),
    ("http://[::ffff:127.0.0.1]:6379/", "IPv4 address 127.0.0.1 inside IPv6"),
    ("http://[::ffff:a00:5]/", "IPv4 address 10.0.0.5 inside IPv6"),
    ("http://[2002:7f00:1::1]/", "IPv4 address 127.0.0.1 inside IPv6"),  # 6to4
    ("http://[64:ff9b::a9fe:a9fe]/", "IPv4 address 169.254.169.254 inside IPv6"),  # NAT64
    ("http://[::7f00:1]/", "IPv4-compatible"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
]


@pytest.mark.parametrize(("url", "kind"), INTERNAL)
def test_registration_refuses_internal_targets(
    app, admin_api, production, url: str, kind: str
) -> None:
    before = count_rows(app)
    response = admin_api.post("/api/v1/webhooks", json={"url": url})
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert "url" in error["fields"]
    assert count_rows(app) == before
    # The API's URL field refuses a few spellings itself (127.1, 0x7f.1, IPv4
    # inside IPv6); the service refuses every one, whoever calls it.
    with app.app_context(), pytest.raises(InvalidInput) as refused:
        webhooks.create_endpoint(CLI_ACTOR, url)
    assert refused.value.code == "webhook_target_refused"
    assert kind in refused.value.message
    assert "WEBHOOK_ALLOW_PRIVATE_TARGETS" in refused.value.message
    if error["code"] == "webhook_target_refused":
        assert error["message"] == refused.value.message


def test_a_public_address_is_registered_and_an_unknown_name_is_not(
    app, admin_api, production
) -> None:
    assert (
        admin_api.post("/api/v1/webhooks", json={"url": f"https://{PUBLIC}/h"}).status_code == 201
    )
    unknown = admin_api.post("/api/v1/webhooks", json={"url": "https://no-such-host.invalid/h"})
    assert unknown.status_code == 422
    assert unknown.json["error"]["code"] == "webhook_target_unresolvable"
    assert "cannot be resolved" in unknown.json["error"]["message"]


def test_with_private_targets_allowed_they_are_registered(app, admin_api) -> None:
    assert app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"] is True  # the suite's receivers
    response = admin_api.post("/api/v1/webhooks", json={"url": "http://[::1]:6379/"})
    assert response.status_code == 201


def _endpoint_and_delivery(app: Any, url: str) -> int:
    """A registered receiver owed one delivery, written as the service writes them."""
    from crm import changes
    from crm.models import Contact

    with app.app_context():
        endpoint = WebhookEndpoint(url=url, secret=webhooks.new_secret())
        contact = Contact(email="lena@kund.se")
        db.session.add_all([endpoint, contact])
        db.session.flush()
        # The change feed's writer writes the delivery (kernel.signals.change_recorded).
        changes.record(changes.CONTACT_CREATED, [contact.id])
        db.session.commit()
        delivery_id = db.session.scalars(
            sa.select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint.id)
        ).one()
        db.session.remove()
    return delivery_id


def _deliver(app: Any, delivery_id: int) -> tuple[str, WebhookDelivery]:
    with app.app_context():
        try:
            outcome = webhooks.deliver(delivery_id)
        except webhooks.DeliveryFailed:
            outcome = "retry"
        db.session.expire_all()
        delivery = db.session.get(WebhookDelivery, delivery_id)
        db.session.expunge(delivery)
        db.session.remove()
    return outcome, delivery


def test_a_delivery_is_refused_when_the_name_now_resolves_inside(
    app, admin_api, production, dns, receivers
) -> None:
    """DNS rebinding: public when registered, loopback (where Redis would be) when posted."""
    receiver = receivers()
    dns.answers["hooks.crm.example"] = [PUBLIC, "127.0.0.1"]
    url = f"http://hooks.crm.example:{receiver.port}/hooks"
    assert admin_api.post("/api/v1/webhooks", json={"url": url}).status_code == 201

    delivery_id = _endpoint_and_delivery(app, url)
    outcome, delivery = _deliver(app, delivery_id)
    assert outcome == "failed" and delivery.status == "failed"
    assert delivery.last_error == (
        "refused: hooks.crm.example resolves to 127.0.0.1 (a loopback address)"
    )
    assert receiver.received == []


def test_a_receiver_registered_as_an_internal_address_is_not_posted_to(
    app, production, receivers
) -> None:
    """A row written before this check existed (or by hand) is checked at delivery too."""
    receiver = receivers()
    delivery_id = _endpoint_and_delivery(app, f"http://127.0.0.1:{receiver.port}/hooks")
    outcome, delivery = _deliver(app, delivery_id)
    assert (outcome, delivery.last_error) == (
        "failed",
        "refused: the host is 127.0.0.1 (a loopback address)",
    )
    assert receiver.received == []


def test_a_delivery_connects_to_the_address_it_checked(app, dns, receivers) -> None:
    """One lookup per delivery: the connection goes to the address that lookup gave,
    not to whatever a second lookup would answer (here another receiver). Both
    receivers are on loopback, so private targets stay allowed in this test;
    the check runs on the same lookup when they are not."""
    checked = receivers("127.0.0.1")
    try:
        other = receivers("127.0.0.2", checked.port)
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here")
    dns.answers["hooks.crm.example"] = ["127.0.0.1", "127.0.0.2"]
    delivery_id = _endpoint_and_delivery(app, f"http://hooks.crm.example:{checked.port}/hooks")
    outcome, _ = _deliver(app, delivery_id)
    assert outcome == "delivered"
    assert len(checked.received) == 1 and other.received == []
    assert dns.asked["hooks.crm.example"] == 1


def test_https_to_the_checked_address_verifies_the_certificate_for_the_name(
    app, dns, receivers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to an IP address, yet TLS checks the certificate against
    the host's name (SNI and verification), as a plain HTTPS client would."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.crm.example"),
            *("-addext", "subjectAltName=DNS:hooks.crm.example"),
        ],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver = receivers("127.0.0.1", ssl_context=context)
    dns.answers["hooks.crm.example"] = ["127.0.0.1"]
    dns.answers["other.crm.example"] = ["127.0.0.1"]
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test certificate

    good = _endpoint_and_delivery(app, f"https://hooks.crm.example:{receiver.port}/hooks")
    assert _deliver(app, good)[0] == "delivered"
    with app.app_context():
        db.session.execute(sa.delete(WebhookDelivery))
        db.session.execute(sa.delete(WebhookEndpoint))
        from crm.models import Contact

        db.session.execute(sa.delete(Contact))
        db.session.commit()
    wrong_name = _endpoint_and_delivery(app, f"https://other.crm.example:{receiver.port}/hooks")
    outcome, delivery = _deliver(app, wrong_name)
    assert outcome == "retry" and delivery.last_error == "unreachable: SSLCertVerificationError"
    assert len(receiver.received) == 1


def test_a_redirect_is_not_followed(app, receivers) -> None:
    """A receiver's 3xx could point anywhere, unchecked: the delivery fails instead."""
    target = receivers()
    redirecting = receivers()
    redirecting.server.app = lambda environ, start_response: Response(  # type: ignore[method-assign]
        "", status=307, headers={"Location": f"http://127.0.0.1:{target.port}/"}
    )(environ, start_response)
    delivery_id = _endpoint_and_delivery(app, f"http://127.0.0.1:{redirecting.port}/hooks")
    outcome, delivery = _deliver(app, delivery_id)
    assert (outcome, delivery.last_error) == ("failed", "HTTP 307 (redirects are not followed)")
    assert target.received == []
