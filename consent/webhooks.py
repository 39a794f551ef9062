"""Webhooks: every change of a contact's decisions is posted, signed, to the
registered URLs, so that the CRM and other mail tools stop marketing too.

Deliveries are rows written in the same transaction as the ledger events that
caused them (the receiver of ``kernel.signals.ledger_written``: one row per
active endpoint and contact), handed to a dramatiq actor after the commit (the
receiver of ``decisions_changed``), swept up if that never happened, and
retried with backoff until the receiver answers 2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask, current_app

from consent.models import WebhookDelivery, WebhookEndpoint
from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.errors import InvalidInput, NotFound
from kernel.jobs import send_job
from kernel.signals import decisions_changed, ledger_written
from kernel.timestamps import utcnow

# The actor that posts one delivery (declared in consent.tasks).
WEBHOOK_JOB = "deliver_webhook"
SIGNATURE_HEADER = "X-Consent-Signature"
TIMESTAMP_HEADER = "X-Consent-Timestamp"
# session.info keys: the contacts owed a delivery in the open transaction, and
# the ids of deliveries written and not yet handed over.
_OWED = "webhook_owed"
_WRITTEN = "webhook_written"


class DeliveryFailed(Exception):
    """The receiver did not take the notification; dramatiq retries it."""


def create_endpoint(
    actor: Actor, url: str, description: str | None = None
) -> tuple[WebhookEndpoint, str]:
    """Register a receiver; returns it with its signing secret, shown once."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput(
            "The webhook URL must be an http(s) URL.", fields={"url": ["Not an http(s) URL."]}
        )
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(url=url, description=description, secret=secret)
    db.session.add(endpoint)
    crm.audit(actor, "webhook.create", detail=parts.netloc)
    db.session.commit()
    return endpoint, secret


def list_endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def deactivate_endpoint(actor: Actor, endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if 0 < endpoint_id < 2**31 else None
    if endpoint is None:
        raise NotFound(f"No webhook with id {endpoint_id}.", code="webhook_not_found")
    endpoint.is_active = False
    crm.audit(actor, "webhook.deactivate", detail=str(endpoint_id))
    db.session.commit()
    return endpoint


def connect_signals() -> None:
    """Receivers register at app start (``consent.init_app``); the ledger never calls up here."""
    ledger_written.connect(_write_deliveries, weak=False)
    decisions_changed.connect(_hand_over_written, weak=False)


_ACTIVE_ENDPOINTS = sa.select(WebhookEndpoint.__table__.c.id).where(
    WebhookEndpoint.__table__.c.is_active.is_(True)
)
_INSERT_DELIVERIES = sa.insert(WebhookDelivery.__table__).returning(WebhookDelivery.__table__.c.id)


def _write_deliveries(app: Flask, *, contact_ids: tuple[int, ...], **_: object) -> None:
    """Inside the ledger writer's transaction: one delivery per active endpoint for
    each contact not yet owed one in this transaction, so that the notification
    commits or rolls back with the change itself."""
    session = db.session()
    transaction = session.get_transaction()
    owed = session.info.get(_OWED)
    if owed is None or owed[0] is not transaction:
        owed = (transaction, set[int]())
        session.info[_OWED] = owed
    new = sorted(set(contact_ids) - owed[1])
    if not new:
        return
    owed[1].update(new)
    # On the connection, not through the ORM: this runs for every change of a
    # consent, objections included.
    endpoints = session.connection().scalars(_ACTIVE_ENDPOINTS).all()
    if not endpoints:
        return
    now = utcnow()
    rows = [
        {"endpoint_id": endpoint_id, "contact_id": contact_id, "created_at": now}
        for contact_id in new
        for endpoint_id in endpoints
    ]
    ids = session.connection().scalars(_INSERT_DELIVERIES, rows).all()
    session.info.setdefault(_WRITTEN, []).extend(ids)


def _hand_over_written(app: Flask, **_: object) -> None:
    """After the commit: hand over the deliveries written since the last hand-over.

    Read through a connection of its own, which sees only committed rows: ids
    of a transaction that rolled back are not handed over (and any row that
    took such an id since is owed anyway)."""
    written = db.session().info.pop(_WRITTEN, None)
    if not written:
        return
    table = WebhookDelivery.__table__
    with db.engine.connect() as conn:
        committed = conn.scalars(
            sa.select(table.c.id).where(table.c.id.in_(written), table.c.handed_over_at.is_(None))
        ).all()
    if committed:
        hand_over(list(committed))


def hand_over(delivery_ids: list[int]) -> None:
    """Send the actor messages; a broker that is down leaves rows for the sweeper."""
    options = {
        "min_backoff": current_app.config.get("WEBHOOK_MIN_BACKOFF_MS", 5_000),
        "max_backoff": current_app.config.get("WEBHOOK_MAX_BACKOFF_MS", 3_600_000),
    }
    handed = []
    for delivery_id in delivery_ids:
        try:
            send_job(WEBHOOK_JOB, delivery_id, **options)
        except Exception:
            current_app.logger.warning(
                "Broker unavailable; webhook delivery %s left for the sweeper", delivery_id
            )
            continue
        handed.append(delivery_id)
    if handed:
        with db.engine.begin() as conn:
            conn.execute(
                sa.update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(handed))
                .values(handed_over_at=utcnow())
            )


def sweep(older_than_seconds: int = 60, *, broker_emptied: bool = False) -> int:
    """Hand over deliveries that never reached the broker. Returns how many.

    ``broker_emptied``: the broker lost its stored messages (a Redis restarted
    empty, ``extensions.broker_was_emptied``), so every pending delivery is
    handed over again; one posted twice carries the contact's current decisions
    both times, so the repeat changes nothing at the receiver."""
    cutoff = utcnow().timestamp() - older_than_seconds
    pending = sa.select(WebhookDelivery).where(WebhookDelivery.status == "pending")
    if not broker_emptied:
        pending = pending.where(WebhookDelivery.handed_over_at.is_(None))
    ids = [
        d.id
        for d in db.session.scalars(pending)
        if broker_emptied or d.created_at.timestamp() <= cutoff
    ]
    db.session.commit()
    if ids:
        hand_over(ids)
    return len(ids)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_seconds: int = 300
) -> bool:
    """What a receiver runs: the signature matches and the timestamp is fresh."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_seconds and hmac.compare_digest(
        sign(secret, timestamp, body), signature
    )


def payload_for(contact: Contact) -> dict[str, Any]:
    from consent.schemas import DecisionSchema
    from consent.services import decisions_for_contact

    return {
        "event": "decisions.changed",
        "contact_id": contact.id,
        "email": contact.email,
        "decisions": DecisionSchema(many=True).dump(decisions_for_contact(contact)),
        "sent_at": utcnow().isoformat(),
    }


def deliver(delivery_id: int) -> str:
    """Post one delivery with the contact's current decisions. Idempotent.

    Returns what happened; raises ``DeliveryFailed`` for a retry.
    """
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return "gone"  # the contact was erased meanwhile
    if delivery.status != "pending":
        return delivery.status
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    contact = db.session.get(Contact, delivery.contact_id)
    if endpoint is None or not endpoint.is_active or contact is None:
        delivery.status = "failed"
        delivery.last_error = "endpoint inactive or contact gone"
        db.session.commit()
        return "failed"
    body = json.dumps(payload_for(contact), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(  # noqa: S310 - admins register http(s) URLs only
        endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "consent-service-webhooks/1",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
        },
    )
    delivery.attempts += 1
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        delivery.last_error = f"unreachable: {type(exc).__name__}"
        db.session.commit()
        raise DeliveryFailed(delivery.last_error) from exc
    if 200 <= status < 300:
        delivery.status = "delivered"
        delivery.delivered_at = utcnow()
        delivery.last_error = None
        db.session.commit()
        return "delivered"
    delivery.last_error = f"HTTP {status}"
    if 400 <= status < 500 and status not in (408, 409, 425, 429):
        # The receiver refuses this request as such; sending it again will not help.
        delivery.status = "failed"
        db.session.commit()
        return "failed"
    db.session.commit()
    raise DeliveryFailed(delivery.last_error)
