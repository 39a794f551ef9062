"""Webhooks: signed posts of every decision change, surviving a receiver that is down."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from consent.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature


class Receiver:
    """A real HTTP server on loopback that fails its first ``failures`` posts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wsgi(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        if self.refused < self.failures:
            self.refused += 1
            return Response("down for maintenance", status=503)(environ, start_response)
        self.received.append((dict(request.headers), request.get_data()))
        return Response("ok")(environ, start_response)


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(failures: int = 0) -> Receiver:
        receiver = Receiver(failures)
        receiver.thread.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.server.shutdown()


@pytest.fixture
def fast_retries(app: Any) -> Iterator[None]:
    app.config.update(WEBHOOK_MIN_BACKOFF_MS=50, WEBHOOK_MAX_BACKOFF_MS=200)
    yield
    app.config.update(WEBHOOK_MIN_BACKOFF_MS=5_000, WEBHOOK_MAX_BACKOFF_MS=3_600_000)


def test_objection_is_posted_signed_after_a_receiver_outage(
    app, admin_api, stub_worker, receiver_factory, fast_retries
) -> None:
    receiver = receiver_factory(failures=3)
    created = admin_api.post("/api/v1/webhooks", json={"url": receiver.url, "description": "CRM"})
    assert created.status_code == 201
    secret = created.json["secret"]
    assert "secret" not in admin_api.get("/api/v1/webhooks").json[0]

    contact_id = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "lena@kund.se",
            "country": "SE",
            "basis": {"type": "legitimate_interest", "kind": "customer", "source": "crm"},
        },
    ).json["id"]
    admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    stub_worker.join("webhooks", timeout=20_000)

    assert receiver.refused == 3
    assert len(receiver.received) == 2  # the basis, then the objection: one post per transaction
    headers, body = receiver.received[-1]
    assert verify_signature(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify_signature(
        secret, headers[TIMESTAMP_HEADER], body + b" ", headers[SIGNATURE_HEADER]
    )
    assert not verify_signature(
        "whsec_wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
    )
    payload = json.loads(body)
    assert payload["email"] == "lena@kund.se"
    assert {d["reason"] for d in payload["decisions"]} == {"objection"}
    with app.app_context():
        from consent.models import WebhookDelivery
        from extensions import db

        statuses = db.session.scalars(sa.select(WebhookDelivery.status)).all()
    assert statuses == ["delivered", "delivered"]


def test_each_delivery_of_an_address_leaves_one_audit_entry_without_it(
    app, admin_api, stub_worker, receiver_factory, fast_retries
) -> None:
    """R25, X14: the receiver got the contact's address; the audit log says
    which endpoint got whose, by ids, once per delivery however often retried."""
    receiver = receiver_factory(failures=2)
    endpoint_id = admin_api.post("/api/v1/webhooks", json={"url": receiver.url}).json["id"]
    contact_id = admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "mira@kund.se",
            "country": "SE",
            "basis": {"type": "legitimate_interest", "kind": "customer", "source": "crm"},
        },
    ).json["id"]
    stub_worker.join("webhooks", timeout=20_000)
    assert receiver.refused == 2 and len(receiver.received) == 1
    assert json.loads(receiver.received[0][1])["email"] == "mira@kund.se"

    with app.app_context():
        from consent.models import WebhookDelivery
        from crm.models import AuditEntry
        from extensions import db

        delivery_id = db.session.scalars(sa.select(WebhookDelivery.id)).one()
        entries = db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "webhook.deliver")
        ).all()
        [entry] = entries
        assert (entry.actor, entry.contact_id) == ("system:consent-service", contact_id)
        assert entry.detail == f"endpoint={endpoint_id} delivery={delivery_id}"
        everything = " ".join(
            f"{e.actor} {e.action} {e.detail}" for e in db.session.scalars(sa.select(AuditEntry))
        )
    assert "mira" not in everything
    # The log reader sees the disclosure among the contact's entries.
    read = admin_api.get(f"/api/v1/audit?contact_id={contact_id}&action=webhook.deliver")
    assert [e["detail"] for e in read.json] == [f"endpoint={endpoint_id} delivery={delivery_id}"]


def test_a_receiver_that_refuses_for_good_is_not_retried(
    app, admin_api, stub_worker, receiver_factory, fast_retries
) -> None:
    receiver = receiver_factory()
    receiver.wsgi = lambda environ, start_response: Response("gone", status=410)(
        environ, start_response
    )  # type: ignore[method-assign]
    receiver.server.app = receiver.wsgi
    admin_api.post("/api/v1/webhooks", json={"url": receiver.url})
    admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "a@kund.se",
            "country": "SE",
            "basis": {"type": "legitimate_interest", "kind": "industry_list", "source": "list"},
        },
    )
    stub_worker.join("webhooks", timeout=10_000)
    with app.app_context():
        from consent.models import WebhookDelivery
        from extensions import db

        delivery = db.session.scalars(sa.select(WebhookDelivery)).one()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, "HTTP 410")


def test_deliveries_left_by_a_broker_outage_are_swept(
    app, admin_api, stub_worker, receiver_factory, monkeypatch
) -> None:
    receiver = receiver_factory()
    admin_api.post("/api/v1/webhooks", json={"url": receiver.url})
    from consent import tasks

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.deliver_webhook, "send_with_options", broker_down)
    admin_api.post(
        "/api/v1/contacts",
        json={
            "email": "b@kund.se",
            "country": "SE",
            "basis": {"type": "legitimate_interest", "kind": "customer", "source": "crm"},
        },
    )
    monkeypatch.undo()
    assert receiver.received == []
    with app.app_context():
        from consent.webhooks import sweep

        assert sweep(older_than_seconds=0) == 1
    stub_worker.join("webhooks", timeout=10_000)
    assert len(receiver.received) == 1


def test_webhook_url_must_be_http(admin_api) -> None:
    response = admin_api.post("/api/v1/webhooks", json={"url": "file:///etc/passwd"})
    assert response.status_code == 422
    assert "url" in response.json["error"]["fields"]
