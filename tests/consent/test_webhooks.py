"""Webhooks in the Standard Webhooks format (issue 20 item 3), as a receiver
sees them: every post verified by a receiver built only with the published
``standardwebhooks`` package, in a real HTTP server on 127.0.0.1.

Nothing is replaced: the service's own worker (dramatiq on the in-memory
broker), a real database, real HTTP. The receiver never imports the
service's code: it holds the secret it was shown once and calls
``Webhook(secret).verify(body, headers)``, as an integrator's would.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from consent import webhooks
from consent.models import WebhookDelivery, WebhookEndpoint
from crm.models import AuditEntry
from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import count_rows

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}


class Receiver:
    """An integrator's endpoint: verifies each post with ``standardwebhooks``
    and answers 400 to one that does not verify. ``mode``: "up" (2xx after
    verifying), "down" (503 without reading), "gone" (410)."""

    def __init__(self) -> None:
        self.secret = ""
        self.mode = "up"
        self.verified: list[tuple[str, dict[str, Any]]] = []  # (webhook-id, body)
        self.raw: list[tuple[dict[str, str], bytes]] = []
        self.rejected: list[str] = []
        self.refused = 0
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wsgi(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        with self.lock:
            if self.mode == "down":
                self.refused += 1
                return Response("down for maintenance", status=503)(environ, start_response)
            if self.mode == "gone":
                return Response("gone", status=410)(environ, start_response)
            body = request.get_data()
            headers = dict(request.headers)
            try:
                payload = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError as exc:
                self.rejected.append(str(exc))
                return Response("signature does not verify", status=400)(environ, start_response)
            self.verified.append((headers["Webhook-Id"], payload))
            self.raw.append((headers, body))
        return Response("ok")(environ, start_response)

    def types(self) -> list[str]:
        return [body["type"] for _id, body in self.verified]


@pytest.fixture
def receiver(admin_api: Any) -> Iterator[Callable[..., tuple[Receiver, int]]]:
    """Start a receiver and register it (with ``events`` if given); returns it and its id."""
    started: list[Receiver] = []

    def start(events: list[str] | None = None) -> tuple[Receiver, int]:
        receiver = Receiver()
        receiver.thread.start()
        started.append(receiver)
        body: dict[str, Any] = {"url": receiver.url, "description": "CRM"}
        if events is not None:
            body["events"] = events
        created = admin_api.post("/api/v1/webhooks", json=body)
        assert created.status_code == 201, created.json
        receiver.secret = created.json["secret"]
        return receiver, created.json["id"]

    yield start
    for receiver in started:
        receiver.server.shutdown()


@pytest.fixture
def fast_retries(app: Any) -> Iterator[None]:
    app.config.update(WEBHOOK_MIN_BACKOFF_MS=50, WEBHOOK_MAX_BACKOFF_MS=200)
    yield
    app.config.update(WEBHOOK_MIN_BACKOFF_MS=5_000, WEBHOOK_MAX_BACKOFF_MS=3_600_000)


def create(api: Any, email: str, **extra: Any) -> int:
    body = {"email": email, "name": "Lena Lind", "country": "SE", "basis": CUSTOMER, **extra}
    response = api.post("/api/v1/contacts", json=body)
    assert response.status_code == 201, response.json
    return int(response.json["id"])


def deliveries(app: Any) -> list[WebhookDelivery]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)))
        db.session.expunge_all()
        return rows


def test_the_secret_is_a_standard_one_shown_once(admin_api, receiver) -> None:
    hooks, _endpoint_id = receiver()
    assert hooks.secret.startswith("whsec_")
    # Any Standard Webhooks library takes it as it is: base64 of 32 random bytes.
    assert len(Webhook(hooks.secret)._whsecret) == 32
    listed = admin_api.get("/api/v1/webhooks").json
    assert "secret" not in listed[0] and listed[0]["all_events"] is True
    assert len(listed[0]["events"]) == 7
    # None chosen, an empty list, or every type: all of them, also types added later.
    for events in ([], None, listed[0]["events"]):
        created = admin_api.post(
            "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hooks", "events": events}
        )
        assert created.status_code == 201 and created.json["all_events"] is True


def test_every_delivery_verifies_with_the_library_including_tombstones_after_the_rows_are_gone(
    app, admin_api, stub_worker, receiver, monkeypatch
) -> None:
    """Done when (issue 20): the receiver verifies every delivery, including a
    contact.erased and a contact.purged posted after the contact rows are gone.
    The broker is down while the changes happen, so that every post is made
    afterwards, when neither contact exists any more."""
    hooks, endpoint_id = receiver()
    from consent import tasks

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.deliver_webhook, "send_with_options", broker_down)
    erased = create(admin_api, "lena@kund.se")
    with app.app_context():
        from crm import external_ids

        external_ids.set_for_contact(erased, {"hubspot": "1234"})
        db.session.commit()
    assert admin_api.delete(f"/api/v1/contacts/{erased}").status_code in (200, 204)
    with app.app_context():
        from crm import retention
        from tests.crm.retention_helpers import add_contact, day

        purged = add_contact("gammal@kund.se", created="2010-01-01T00:00:00")
        purged_id = purged.id
        external_ids.set_for_contact(purged_id, {"salesforce": "003XYZ"})
        db.session.commit()
        retention.run(day("2026-12-06"), started_by="test")
    monkeypatch.undo()
    assert count_rows(app)["contact"] == 0
    assert hooks.verified == []

    with app.app_context():
        assert webhooks.sweep(older_than_seconds=0) >= 2
    stub_worker.join("webhooks", timeout=20_000)

    assert hooks.rejected == []
    assert [d.status for d in deliveries(app)] == ["delivered"] * len(deliveries(app))
    by_type = {body["type"]: body for _id, body in hooks.verified}
    assert {"contact.created", "contact.decisions_changed", "contact.erased"} <= set(by_type)
    assert "contact.purged" in by_type
    erasure, purge = by_type["contact.erased"], by_type["contact.purged"]
    assert erasure["data"]["contact_id"] == erased and erasure["data"]["tombstone"] is True
    assert erasure["data"]["external_ids"] == {"hubspot": "1234"}
    assert purge["data"]["contact_id"] == purged_id
    assert purge["data"]["external_ids"] == {"salesforce": "003XYZ"}
    assert purge["data"]["rule"]
    # The envelope of the specification around the feed's item, and the
    # webhook-id is the item's id, so the receiver can de-duplicate.
    for webhook_id, body in hooks.verified:
        assert set(body) == {"type", "timestamp", "data"}
        assert webhook_id == body["data"]["id"] and body["type"] == body["data"]["type"]
        assert body["timestamp"] == body["data"]["occurred_at"]
    # Gone before the posts: every item about them is a tombstone, no address or name.
    everything = b" ".join(body for _headers, body in hooks.raw)
    assert b"lena" not in everything.lower() and b"gammal" not in everything
    # The items are the feed's items, one for one.
    feed = admin_api.get("/api/v1/changes?limit=1000").json["items"]
    assert sorted(i for i, _ in hooks.verified) == sorted(i["id"] for i in feed)
    # No personal data left the service: no disclosure in the audit log (R25).
    with app.app_context():
        assert not db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == webhooks.DISCLOSURE_ACTION)
        ).all()
    assert endpoint_id


def test_deliveries_commit_or_roll_back_with_the_change(app, receiver) -> None:
    """One delivery per subscribed active endpoint and change, in the change's
    own transaction: a change that rolls back owes nothing."""
    _all, _ = receiver()
    _erasures, _ = receiver(events=["contact.erased"])
    from crm import changes
    from crm.models import Contact

    with app.app_context():
        contact = Contact(email="o@kund.se")
        db.session.add(contact)
        db.session.flush()
        changes.record(changes.CONTACT_CREATED, [contact.id])
        db.session.rollback()
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery)) == 0
        contact = Contact(email="o@kund.se")
        db.session.add(contact)
        db.session.flush()
        changes.record(changes.CONTACT_CREATED, [contact.id])
        db.session.commit()
        rows = db.session.execute(
            sa.select(WebhookDelivery.endpoint_id, WebhookDelivery.event_type)
        ).all()
        db.session.remove()
    assert [tuple(r) for r in rows] == [(_all_id(app), "contact.created")]


def _all_id(app: Any) -> int:
    with app.app_context():
        return int(
            db.session.scalars(
                sa.select(WebhookEndpoint.id).where(WebhookEndpoint.event_types.is_(None))
            ).one()
        )


def test_a_tampered_body_or_a_wrong_secret_does_not_verify(
    app, admin_api, stub_worker, receiver
) -> None:
    hooks, _ = receiver()
    create(admin_api, "mira@kund.se")
    stub_worker.join("webhooks", timeout=20_000)
    headers, body = hooks.raw[-1]
    verified = len(hooks.verified)

    def post(data: bytes, send: dict[str, str]) -> int:
        request = urllib.request.Request(hooks.url, data=data, method="POST")
        for name in ("Webhook-Id", "Webhook-Timestamp", "Webhook-Signature", "Content-Type"):
            request.add_header(name, send[name])
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            return refused.code

    assert post(body, headers) == 200  # the post itself, again: verifies
    assert post(body.replace(b"mira", b"mirb"), headers) == 400
    assert post(body, {**headers, "Webhook-Id": "chg_999999"}) == 400
    assert post(body, {**headers, "Webhook-Timestamp": str(int(time.time()) - 3600)}) == 400
    hooks.secret = "whsec_" + "A" * 43 + "="
    assert post(body, headers) == 400
    assert len(hooks.rejected) == 4 and len(hooks.verified) == verified + 1
    # The header is the specification's, computed by the service itself.
    msg_id, stamp = headers["Webhook-Id"], int(headers["Webhook-Timestamp"])
    assert headers["Webhook-Signature"].startswith("v1,")
    with app.app_context():
        secret = db.session.scalars(sa.select(WebhookEndpoint.secret)).one()
    assert webhooks.sign(secret, msg_id, stamp, body) == headers["Webhook-Signature"]


def test_a_receiver_down_for_a_while_gets_everything_afterwards_in_order_per_contact(
    app, admin_api, stub_worker, receiver
) -> None:
    """Bad input and faults (issue 20): a receiver that is down gets every event
    afterwards, in order per contact: a later delivery about a contact is not
    posted before an earlier one is delivered (or failed for good). The
    changes made just after it is back are the test: they could be posted at
    once, while the earlier ones still wait for their next try."""
    app.config.update(WEBHOOK_MIN_BACKOFF_MS=400, WEBHOOK_MAX_BACKOFF_MS=800)
    hooks, endpoint_id = receiver()
    hooks.mode = "down"
    first = create(admin_api, "a@kund.se")
    second = create(admin_api, "b@kund.se")
    for contact_id in (first, second):
        admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"name": "Nytt Namn"})
    deadline = time.monotonic() + 10
    while hooks.refused < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hooks.refused >= 2
    # While it is down the log says so: attempts, the error, the next try.
    log = admin_api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries?status=pending").json
    tried = [d for d in log if d["attempts"]]
    assert tried and all(d["last_error"] == "HTTP 503" for d in tried)
    assert all(d["next_attempt_at"] for d in tried)
    hooks.mode = "up"
    for contact_id in (first, second):
        admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    stub_worker.join("webhooks", timeout=30_000)
    app.config.update(WEBHOOK_MIN_BACKOFF_MS=5_000, WEBHOOK_MAX_BACKOFF_MS=3_600_000)

    feed = admin_api.get("/api/v1/changes?limit=1000").json["items"]
    assert sorted(i for i, _ in hooks.verified) == sorted(i["id"] for i in feed)
    for contact_id in (first, second):
        posted = [i for i, body in hooks.verified if body["data"]["contact_id"] == contact_id]
        in_feed = [i["id"] for i in feed if i["contact_id"] == contact_id]
        assert len(posted) >= 4
        assert posted == in_feed, f"contact {contact_id}: out of order"
    assert {d.status for d in deliveries(app)} == {"delivered"}


def test_a_later_delivery_about_a_contact_waits_for_the_earlier_one_whoever_sends_it(
    app, admin_api, stub_worker, receiver, monkeypatch
) -> None:
    """The worker's own check, for a message that reaches it out of turn (a
    replay, a sweep after the broker lost its messages): it posts nothing
    while an earlier delivery about the contact is pending, and the earlier
    one, once delivered, hands the next over."""
    hooks, _ = receiver()
    from consent import tasks

    monkeypatch.setattr(tasks.deliver_webhook, "send_with_options", lambda *a, **k: None)
    create(admin_api, "k@kund.se")
    monkeypatch.undo()
    earlier, later = (d.id for d in deliveries(app)[:2])
    with app.app_context():
        assert webhooks.deliver(later) == "waiting"
        assert hooks.verified == []
        assert webhooks.deliver(earlier) == "delivered"
    stub_worker.join("webhooks", timeout=20_000)
    assert [i for i, _ in hooks.verified][:2] == [f"chg_{d.change_id}" for d in deliveries(app)[:2]]


def test_a_receiver_answering_410_gone_is_deactivated_and_its_pending_deliveries_stop(
    app, admin_api, stub_worker, receiver
) -> None:
    hooks, endpoint_id = receiver()
    hooks.mode = "gone"
    create(admin_api, "c@kund.se")
    stub_worker.join("webhooks", timeout=20_000)
    [endpoint] = admin_api.get("/api/v1/webhooks").json
    assert endpoint["is_active"] is False
    assert endpoint["deactivation_reason"] == "the receiver answered 410 Gone"
    statuses = [d.status for d in deliveries(app)]
    assert statuses[0] == "failed" and set(statuses[1:]) == {"cancelled"}
    assert deliveries(app)[0].attempts == 1
    # Later changes owe it nothing, and it cannot be replayed to.
    before = len(deliveries(app))
    create(admin_api, "d@kund.se")
    assert len(deliveries(app)) == before
    replay = admin_api.post(
        f"/api/v1/webhooks/{endpoint_id}/deliveries/{deliveries(app)[0].id}/replay"
    )
    assert replay.status_code == 409 and replay.json["error"]["code"] == "webhook_inactive"


def test_an_endpoint_gets_only_the_event_types_it_subscribed_to(
    app, admin_api, stub_worker, receiver
) -> None:
    erasures, _ = receiver(events=["contact.erased"])
    everything, _ = receiver()
    contact_id = create(admin_api, "e@kund.se")
    admin_api.delete(f"/api/v1/contacts/{contact_id}")
    stub_worker.join("webhooks", timeout=20_000)
    assert erasures.types() == ["contact.erased"]
    assert {"contact.created", "contact.decisions_changed", "contact.erased"} <= set(
        everything.types()
    )
    listed = {e["url"]: e for e in admin_api.get("/api/v1/webhooks").json}
    assert listed[erasures.url]["events"] == ["contact.erased"]
    assert listed[erasures.url]["all_events"] is False


@pytest.mark.parametrize(
    "events",
    [["contact.deleted"], "contact.erased", [1], ["contact.erased"] * 8],
)
def test_an_unknown_event_type_is_refused(admin_api, events: Any) -> None:
    response = admin_api.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hooks", "events": events}
    )
    assert response.status_code == 422
    assert "events" in response.json["error"]["fields"]
    assert admin_api.get("/api/v1/webhooks").json == []


def test_replay_one_delivery_or_everything_after_a_change(
    app, admin_api, stub_worker, receiver
) -> None:
    hooks, endpoint_id = receiver()
    create(admin_api, "f@kund.se")
    create(admin_api, "g@kund.se")
    stub_worker.join("webhooks", timeout=20_000)
    posted = [i for i, _ in hooks.verified]
    log = admin_api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries").json
    assert [d["status"] for d in log] == ["delivered"] * len(posted)
    oldest = log[-1]

    one = admin_api.post(f"/api/v1/webhooks/{endpoint_id}/deliveries/{oldest['id']}/replay")
    assert one.status_code == 202 and one.json["replay_of"] == oldest["id"]
    stub_worker.join("webhooks", timeout=20_000)
    assert hooks.verified[-1][0] == oldest["change_id"] == posted[0]

    # Everything after the first contact's first change, in the feed's order.
    count = len(hooks.verified)
    again = admin_api.post(
        f"/api/v1/webhooks/{endpoint_id}/replay", json={"after_change": posted[0]}
    )
    assert again.status_code == 202 and again.json == {"queued": len(posted) - 1}
    stub_worker.join("webhooks", timeout=20_000)
    replayed = [i for i, _ in hooks.verified[count:]]
    assert sorted(replayed) == sorted(posted[1:])

    # Since a time: everything.
    count = len(hooks.verified)
    since = (utcnow() - timedelta(hours=1)).isoformat()
    assert admin_api.post(f"/api/v1/webhooks/{endpoint_id}/replay", json={"since": since}).json[
        "queued"
    ] == len(posted)
    stub_worker.join("webhooks", timeout=20_000)
    assert sorted(i for i, _ in hooks.verified[count:]) == sorted(posted)
    assert hooks.rejected == []


def test_a_replay_follows_the_feed_s_order_where_commit_order_is_not_id_order(
    app, admin_api, receiver, monkeypatch
) -> None:
    """On PostgreSQL the feed is ordered by (txid, id): an item whose
    transaction began first but committed last has a lower txid and a higher
    id. A replay writes its deliveries (and so posts each contact's) in the
    feed's order, and "after chg_n" means after that item's place in the
    feed, as the feed's cursor does. (Trivially true on SQLite, where
    writers take turns and txid is 0.)"""
    from consent import tasks
    from crm.models import Change
    from tests.feed.test_change_feed import read_all

    monkeypatch.setattr(tasks.deliver_webhook, "send_with_options", lambda *a, **k: None)
    _hooks, endpoint_id = receiver()
    contact_id = create(admin_api, "o@kund.se")
    with app.app_context():
        txid = int(db.session.scalar(sa.select(sa.func.max(Change.txid))) or 0)
        # Written first, in the later transaction; then one of an earlier one.
        for at in (txid, max(txid - 1, 0)):
            db.session.add(
                Change(
                    type="contact.updated",
                    contact_id=contact_id,
                    txid=at,
                    occurred_at=utcnow(),
                    data={"fields": ["name"]},
                )
            )
            db.session.flush()
        db.session.commit()
    feed_order = [item["id"] for item in read_all(admin_api)[0]]

    def replayed(body: dict[str, str]) -> list[str]:
        first = max((d.id for d in deliveries(app)), default=0)
        response = admin_api.post(f"/api/v1/webhooks/{endpoint_id}/replay", json=body)
        assert response.status_code == 202, response.json
        return [f"chg_{d.change_id}" for d in deliveries(app) if d.id > first]

    assert replayed({"since": "2000-01-01T00:00:00Z"}) == feed_order
    for n, change in enumerate(feed_order):
        assert replayed({"after_change": change}) == feed_order[n + 1 :]


def test_a_replay_larger_than_the_limit_is_refused_and_writes_nothing(
    app, admin_api, receiver, monkeypatch
) -> None:
    _hooks, endpoint_id = receiver()
    from consent import tasks

    monkeypatch.setattr(tasks.deliver_webhook, "send_with_options", lambda *a, **k: None)
    create(admin_api, "n@kund.se")
    before = len(deliveries(app))
    monkeypatch.setitem(app.config, "WEBHOOK_REPLAY_MAX", 1)
    response = admin_api.post(
        f"/api/v1/webhooks/{endpoint_id}/replay", json={"since": "2000-01-01T00:00:00Z"}
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "replay_too_large"
    assert "GET /api/v1/changes" in response.json["error"]["message"]
    assert len(deliveries(app)) == before


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/webhooks/{e}/replay", {}, 422),
        ("/api/v1/webhooks/{e}/replay", {"after_change": "chg_1", "since": "2026-01-01"}, 422),
        ("/api/v1/webhooks/{e}/replay", {"after_change": "12"}, 422),
        ("/api/v1/webhooks/{e}/replay", {"after_change": "chg_x"}, 422),
        ("/api/v1/webhooks/{e}/replay", {"since": "yesterday"}, 422),
        ("/api/v1/webhooks/999/replay", {"after_change": "chg_1"}, 404),
        ("/api/v1/webhooks/{e}/deliveries/999/replay", None, 404),
        ("/api/v1/webhooks/999/deliveries/1/replay", None, 404),
    ],
)
def test_bad_replays_are_refused_with_a_clear_status(
    admin_api, receiver, path: str, body: Any, status: int
) -> None:
    _hooks, endpoint_id = receiver()
    response = admin_api.post(path.format(e=endpoint_id), json=body)
    assert response.status_code == status, response.json
    assert response.json["error"]["message"]


@pytest.mark.parametrize(
    ("query", "status"),
    [("status=lost", 422), ("limit=0", 422), ("limit=1001", 422), ("before=0", 422)],
)
def test_bad_delivery_log_queries_are_refused(admin_api, receiver, query: str, status: int) -> None:
    _hooks, endpoint_id = receiver()
    response = admin_api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries?{query}")
    assert response.status_code == status
    assert admin_api.get("/api/v1/webhooks/999/deliveries").status_code == 404


def test_each_delivery_carrying_personal_data_leaves_one_audit_entry_without_it(
    app, admin_api, stub_worker, receiver, fast_retries
) -> None:
    """R25, X14: a payload with the contact's fields or decisions is a
    disclosure; the audit log says which endpoint got whose, by ids, once per
    delivery however often retried. Tombstones carry none and write none."""
    hooks, endpoint_id = receiver(events=["contact.created"])
    hooks.mode = "down"
    contact_id = create(admin_api, "mira@kund.se")
    deadline = time.monotonic() + 10
    while hooks.refused < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    hooks.mode = "up"
    stub_worker.join("webhooks", timeout=20_000)
    assert len(hooks.verified) == 1
    assert hooks.verified[0][1]["data"]["contact"]["email"] == "mira@kund.se"
    [delivery] = deliveries(app)
    assert delivery.attempts >= 3
    with app.app_context():
        entries = db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "webhook.deliver")
        ).all()
        [entry] = entries
        assert (entry.actor, entry.contact_id) == ("system:consent-service", contact_id)
        assert entry.detail == f"endpoint={endpoint_id} delivery={delivery.id}"
        everything = " ".join(
            f"{e.actor} {e.action} {e.detail}" for e in db.session.scalars(sa.select(AuditEntry))
        )
    assert "mira" not in everything
    read = admin_api.get(f"/api/v1/audit?contact_id={contact_id}&action=webhook.deliver")
    assert [e["detail"] for e in read.json] == [f"endpoint={endpoint_id} delivery={delivery.id}"]


def test_a_receiver_that_refuses_for_good_is_not_retried(
    app, admin_api, stub_worker, receiver
) -> None:
    hooks, _ = receiver(events=["contact.created"])
    hooks.secret = "whsec_" + "B" * 43 + "="  # so it answers 400 to every post
    create(admin_api, "h@kund.se")
    stub_worker.join("webhooks", timeout=10_000)
    [delivery] = deliveries(app)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, "HTTP 400")


def test_a_delivery_retried_past_the_window_fails_and_lets_the_next_one_go(
    app, admin_api, stub_worker, receiver, fast_retries
) -> None:
    """WEBHOOK_RETRY_HOURS: the head of a contact's queue that never got
    through fails for good, and the contact's next delivery is posted."""
    hooks, _ = receiver()
    app.config["WEBHOOK_RETRY_HOURS"] = 0
    try:
        hooks.mode = "down"
        create(admin_api, "i@kund.se")
        stub_worker.join("webhooks", timeout=20_000)
    finally:
        app.config.pop("WEBHOOK_RETRY_HOURS")
    rows = deliveries(app)
    assert rows and {d.status for d in rows} == {"failed"}
    assert all(d.last_error == "HTTP 503 (gave up)" for d in rows)
    assert hooks.refused == len(rows)  # each tried once: the next went after the one before


def test_deliveries_left_by_a_broker_outage_are_swept(
    app, admin_api, stub_worker, receiver, monkeypatch
) -> None:
    hooks, _ = receiver(events=["contact.created"])
    from consent import tasks

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.deliver_webhook, "send_with_options", broker_down)
    create(admin_api, "b@kund.se")
    monkeypatch.undo()
    assert hooks.verified == []
    with app.app_context():
        assert webhooks.sweep(older_than_seconds=0) == 1
    stub_worker.join("webhooks", timeout=10_000)
    assert len(hooks.verified) == 1


def test_after_the_broker_lost_its_messages_every_pending_head_goes_again(
    app, admin_api, stub_worker, receiver, monkeypatch
) -> None:
    """A Redis restarted empty: the deliveries handed over (one waiting for
    its next try among them) lost their messages; the sweep sends each
    queue's head again and the rest follow it."""
    hooks, _ = receiver()
    from consent import tasks

    monkeypatch.setattr(tasks.deliver_webhook, "send_with_options", lambda *a, **k: None)
    create(admin_api, "l@kund.se")
    create(admin_api, "m@kund.se")
    monkeypatch.undo()
    with app.app_context():
        head = db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)).first()
        head.attempts, head.next_attempt_at = 1, utcnow() + timedelta(hours=1)
        db.session.commit()
        assert webhooks.sweep() == 0  # handed over: nothing for the ordinary sweep
        assert webhooks.sweep(broker_emptied=True) == 2  # one head per contact
    stub_worker.join("webhooks", timeout=20_000)
    assert {d.status for d in deliveries(app)} == {"delivered"}
    assert len(hooks.verified) == len(deliveries(app))


def test_a_deactivated_endpoint_stops_at_once(app, admin_api, receiver, monkeypatch) -> None:
    _hooks, endpoint_id = receiver()
    from consent import tasks

    monkeypatch.setattr(tasks.deliver_webhook, "send_with_options", lambda *a, **k: None)
    create(admin_api, "j@kund.se")
    assert {d.status for d in deliveries(app)} == {"pending"}
    assert admin_api.delete(f"/api/v1/webhooks/{endpoint_id}").json["is_active"] is False
    assert {d.status for d in deliveries(app)} == {"cancelled"}


def test_webhook_url_must_be_http(admin_api) -> None:
    response = admin_api.post("/api/v1/webhooks", json={"url": "file:///etc/passwd"})
    assert response.status_code == 422
    assert "url" in response.json["error"]["fields"]


@pytest.mark.parametrize(
    ("config", "refused"),
    [
        ({}, False),  # 72 hours against 90 days
        ({"WEBHOOK_RETRY_HOURS": 90 * 24 - 1}, False),
        ({"WEBHOOK_RETRY_HOURS": 90 * 24}, True),
        ({"WEBHOOK_RETRY_HOURS": 72, "CHANGE_FEED_KEEP_DAYS": 3}, True),
        ({"WEBHOOK_RETRY_HOURS": 72, "CHANGE_FEED_KEEP_DAYS": 4}, False),
    ],
)
def test_the_app_refuses_a_retry_window_the_feed_does_not_keep(
    tmp_path, config: dict[str, Any], refused: bool
) -> None:
    """A delivery goes with its change when the feed is pruned (ON DELETE
    CASCADE): retrying longer than the feed keeps items would lose deliveries
    silently, so such a configuration never starts, and says why."""
    from app import create_app
    from tests.conftest import TEST_CONFIG

    settings = {
        **TEST_CONFIG,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}",
        **config,
    }
    if not refused:
        create_app(settings)
        return
    with pytest.raises(RuntimeError) as raised:
        create_app(settings)
    message = str(raised.value)
    assert "WEBHOOK_RETRY_HOURS" in message
    assert "CHANGE_FEED_KEEP_DAYS" in message


def test_the_retry_window_is_checked_as_the_environment_sets_it(tmp_path, monkeypatch) -> None:
    from app import create_app
    from tests.conftest import TEST_CONFIG

    monkeypatch.setenv("WEBHOOK_RETRY_HOURS", "48")
    monkeypatch.setenv("CHANGE_FEED_KEEP_DAYS", "1")
    settings = {**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"}
    with pytest.raises(RuntimeError, match=r"\(48 hours\) must be shorter than"):
        create_app(settings)
    monkeypatch.setenv("WEBHOOK_RETRY_HOURS", "many")
    with pytest.raises(RuntimeError, match="WEBHOOK_RETRY_HOURS: must be a number"):
        create_app(settings)
