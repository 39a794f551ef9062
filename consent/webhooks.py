"""Webhooks in the Standard Webhooks format (https://www.standardwebhooks.com):
every item of the change feed (``consent.feed``) is posted, signed, to each
active endpoint subscribed to its type, so that a CRM and other tools mirror
decisions, new and changed contacts, erasures and purges (docs/webhooks.md).

- A delivery is a row naming the change (not the contact: a tombstone's
  delivery outlives the contact), written in the same transaction as the
  feed item (the receiver of ``kernel.signals.change_recorded``: one row per
  subscribed active endpoint and change), handed to a dramatiq actor after
  the commit, swept up if that never happened, and retried with backoff
  until the receiver answers 2xx or ``WEBHOOK_RETRY_HOURS`` ran out.
- The body is rendered at delivery time from the feed (``feed.render``):
  ``{"type", "timestamp", "data"}`` where ``data`` is the feed item itself,
  and ``webhook-id`` is the item's id, so a receiver de-duplicates retries,
  replays and what it also read from the feed.
- Order per receiver and contact: a delivery is not posted while an earlier
  one for the same endpoint and contact is pending; when that one ends
  (delivered, or failed for good), the next is handed over.
- A receiver answering 410 Gone is deactivated; its pending deliveries are
  cancelled.

Receivers are on the public internet: a URL whose host is, or resolves to, a
loopback, private, link-local, unique-local, unspecified, multicast or
otherwise non-global address (IPv4 or IPv6, including IPv4 written inside
IPv6) is refused when it is registered and again at every delivery, since
what a name resolves to can change. A delivery resolves the name once, checks
every address, and connects to the checked address itself (TLS still verifies
the certificate for the name), so that no second lookup between the check and
the connection can send the post elsewhere; it follows no redirect.
``WEBHOOK_ALLOW_PRIVATE_TARGETS=1`` lifts the check for receivers inside the
network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import random
import secrets
import socket
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import SplitResult, urlsplit

import sqlalchemy as sa
from flask import Flask, current_app

from consent import feed
from consent.models import WEBHOOK_EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from crm import changes as change_feed
from crm import services as crm
from crm.models import AuditEntry, Change
from extensions import db
from kernel import metrics
from kernel.access import SYSTEM_ACTOR, Actor
from kernel.database import id_in
from kernel.errors import N_, Conflict, InvalidInput, NotFound
from kernel.jobs import send_job
from kernel.signals import change_recorded, contact_rectified, day_started, decisions_changed
from kernel.timestamps import utcnow

# The actor that posts one delivery (declared in consent.tasks).
WEBHOOK_JOB = "deliver_webhook"
# The Standard Webhooks headers (lower case, as the specification spells them).
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
# The audit entry of a delivery whose body carried personal data (R25).
DISCLOSURE_ACTION = "webhook.deliver"
# session.info key: the ids of deliveries written and not yet handed over.
_WRITTEN = "webhook_written"
# How long a delivery is retried (WEBHOOK_RETRY_HOURS): shorter than the change
# feed keeps its items (check_retry_window).
DEFAULT_RETRY_HOURS = 72
# Statuses after which a delivery is never posted again (unless replayed).
FINAL_STATUSES = ("delivered", "failed", "cancelled")


class DeliveryFailed(Exception):
    """The receiver did not take the delivery now; it is retried in ``retry_in_ms``."""

    def __init__(self, reason: str, retry_in_ms: int) -> None:
        super().__init__(reason)
        self.retry_in_ms = retry_in_ms


class TargetRefused(Exception):
    """The receiver's host is, or resolves to, an address webhooks may not reach.

    ``temporary``: the name could not be resolved now (DNS down or not yet
    propagated), which a later try may change."""

    def __init__(self, reason: str, *, temporary: bool = False) -> None:
        super().__init__(reason)
        self.temporary = temporary


# Where a receiver may not be: beyond ``is_global`` (loopback, private,
# link-local, unique-local, unspecified, shared, reserved, documentation),
# multicast, and IPv4 addresses written inside IPv6, checked as the IPv4
# address they reach.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of address ``ip`` is, if a webhook may not reach it."""
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip in _UNIQUE_LOCAL:
        return "a unique-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def address_problem(address: str) -> str | None:
    """Why a webhook may not connect to ``address`` (an IP literal), or None:
    e.g. "127.0.0.1 (a loopback address)"."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone index only on link-local
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            kind = _not_public(embedded)
            if kind:
                return f"{ip} (the IPv4 address {embedded} inside IPv6: {kind})"
        elif ip in _IPV4_COMPATIBLE and not ip.is_loopback:
            return f"{ip} (an IPv4-compatible or the unspecified address)"
    kind = _not_public(ip)
    return f"{ip} ({kind})" if kind else None


@dataclass(frozen=True)
class Target:
    """A receiver's URL, taken apart, with the addresses its host resolved to."""

    parts: SplitResult
    host: str
    port: int
    addresses: tuple[str, ...]


def _private_targets_allowed() -> bool:
    return bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE_TARGETS"))


def resolve_target(url: str) -> Target:
    """Resolve the receiver's host once and check every address it has.

    Raises ``TargetRefused`` when the host cannot be resolved or any address
    is not public (a name with one private address among public ones is
    refused: which one a connection takes is not ours to choose), unless
    ``WEBHOOK_ALLOW_PRIVATE_TARGETS`` is set.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused(
            f"the port of {parts.netloc!r} is not a number from 1 to 65535"
        ) from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise TargetRefused("it is not an http(s) URL with a host")
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the host {host} cannot be resolved ({exc})", temporary=True) from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in found))
    if not addresses:
        raise TargetRefused(f"the host {host} has no address")
    if not _private_targets_allowed():
        for address in addresses:
            problem = address_problem(address)
            if problem:
                literal = address == host.split("%", 1)[0] or ":" in host
                where = "the host is" if literal else f"{host} resolves to"
                raise TargetRefused(f"{where} {problem}")
    return Target(parts=parts, host=host, port=port, addresses=addresses)


def new_secret() -> str:
    """A signing secret as the specification has it: ``whsec_`` and the base64
    of 32 random bytes (the key; the specification asks for 24 to 64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the base64 after ``whsec_``, decoded as the
    reference libraries do (padding added; secrets from before the Standard
    Webhooks format were URL-safe base64, which only a lenient decoder like
    Python's reads, see docs/webhooks.md "Upgrading")."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 of
    HMAC-SHA256(key, ``msg_id.timestamp.body``)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput(
            N_("The webhook URL must be an http(s) URL."), fields={"url": ["Not an http(s) URL."]}
        )
    if _private_targets_allowed():
        return
    try:
        resolve_target(url)
    except TargetRefused as refused:
        if refused.temporary:
            # Which addresses it has decides whether it may be posted to.
            raise InvalidInput(
                f"The webhook URL is refused: {refused}. Register it once its name resolves.",
                code="webhook_target_unresolvable",
                fields={"url": [f"Cannot be resolved: {refused}."]},
            ) from None
        raise InvalidInput(
            f"The webhook URL is refused: {refused}. Webhooks post only to public "
            "addresses, never to this service's own network (set "
            "WEBHOOK_ALLOW_PRIVATE_TARGETS=1 to allow receivers inside it).",
            code="webhook_target_refused",
            fields={"url": [f"Not a public address: {refused}."]},
        ) from None


def create_endpoint(
    actor: Actor,
    url: str,
    description: str | None = None,
    events: Sequence[str] | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Register a receiver of ``events`` (every event type when none are
    chosen); returns it with its signing secret, shown once.

    A host that is, or resolves to, an address that is not public is refused
    (docs/webhooks.md), unless ``WEBHOOK_ALLOW_PRIVATE_TARGETS`` is set."""
    _check_url(url)
    unknown = sorted(set(events or ()) - set(WEBHOOK_EVENT_TYPES))
    if unknown:
        raise InvalidInput(
            f"Unknown event types: {', '.join(unknown)}.",
            code="webhook_event_unknown",
            fields={"events": [f"One of: {', '.join(WEBHOOK_EVENT_TYPES)}."]},
        )
    chosen = [t for t in WEBHOOK_EVENT_TYPES if t in set(events or ())]
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=url,
        description=description,
        secret=secret,
        # None chosen, or all of them: every type, also those added later.
        event_types=",".join(chosen) if 0 < len(chosen) < len(WEBHOOK_EVENT_TYPES) else None,
    )
    db.session.add(endpoint)
    crm.audit(actor, "webhook.create", detail=urlsplit(url).netloc)
    db.session.commit()
    return endpoint, secret


def list_endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) if 0 < endpoint_id < 2**31 else None
    if endpoint is None:
        raise NotFound(f"No webhook with id {endpoint_id}.", code="webhook_not_found")
    return endpoint


def deactivate_endpoint(actor: Actor, endpoint_id: int) -> WebhookEndpoint:
    """Stop posting to a receiver: its pending deliveries are cancelled (the
    log is kept)."""
    endpoint = get_endpoint(endpoint_id)
    if endpoint.is_active:
        _deactivate(endpoint, "deactivated by an admin")
    crm.audit(actor, "webhook.deactivate", detail=str(endpoint_id))
    db.session.commit()
    return endpoint


def _deactivate(endpoint: WebhookEndpoint, reason: str) -> None:
    """Does not commit."""
    endpoint.is_active = False
    endpoint.deactivated_at = utcnow()
    endpoint.deactivation_reason = reason[:200]
    db.session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
        .values(status="cancelled", next_attempt_at=None, last_error=f"cancelled: {reason}"[:300])
        .execution_options(synchronize_session=False)
    )


# --- writing deliveries ---------------------------------------------------------------


def check_retry_window(config: Mapping[str, Any]) -> None:
    """Refuse to start (RuntimeError) unless the retry window
    (``WEBHOOK_RETRY_HOURS``) is shorter than the change feed keeps its
    items (``CHANGE_FEED_KEEP_DAYS``): a delivery names its change and goes
    with it when the feed is pruned (``webhook_delivery.change_id`` ON DELETE
    CASCADE), so a delivery still being retried past the feed's retention
    would vanish unposted, and its receiver never learn of the change."""
    hours = _number(config, "WEBHOOK_RETRY_HOURS", DEFAULT_RETRY_HOURS)
    days = _number(config, "CHANGE_FEED_KEEP_DAYS", change_feed.DEFAULT_KEEP_DAYS)
    if hours >= days * 24:
        raise RuntimeError(
            f"WEBHOOK_RETRY_HOURS ({hours:g} hours) must be shorter than "
            f"CHANGE_FEED_KEEP_DAYS ({days:g} days = {days * 24:g} hours): pruning the "
            "change feed deletes the webhook deliveries still owed for its items, so a "
            "receiver retried that long would never be told of them. Shorten the retry "
            "window or keep the feed longer."
        )


def _number(config: Mapping[str, Any], name: str, default: float) -> float:
    raw = config.get(name, default)
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value < float("inf"):
        raise RuntimeError(f"{name} must be a number of 0 or more, not {raw!r}.")
    return value


def connect_signals() -> None:
    """Receivers register at app start (``consent.init_app``); crm never calls up here."""
    change_recorded.connect(_write_deliveries, weak=False)
    # After a commit that may have written deliveries: hand them over at once
    # (the sweeper takes any other within a minute).
    decisions_changed.connect(_hand_over_written, weak=False)
    contact_rectified.connect(_hand_over_written, weak=False)
    day_started.connect(_hand_over_written, weak=False)


_ENDPOINTS = sa.select(
    WebhookEndpoint.__table__.c.id, WebhookEndpoint.__table__.c.event_types
).where(WebhookEndpoint.__table__.c.is_active.is_(True))
_INSERT_DELIVERIES = sa.insert(WebhookDelivery.__table__).returning(WebhookDelivery.__table__.c.id)


def _subscribers(endpoints: Iterable[Any], event_type: str) -> list[int]:
    return [e.id for e in endpoints if not e.event_types or event_type in e.event_types.split(",")]


def _write_deliveries(app: Flask, *, change_ids: tuple[int, ...], **_: object) -> None:
    """Inside the feed writer's transaction: one delivery per subscribed active
    endpoint and change, so that the notification commits or rolls back with
    the change itself."""
    if not change_ids:
        return
    session = db.session()
    # On the connection, not through the ORM: this runs for every change.
    connection = session.connection()
    endpoints = connection.execute(_ENDPOINTS).all()
    if not endpoints:
        return
    table = Change.__table__
    changes = connection.execute(
        sa.select(table.c.id, table.c.type, table.c.contact_id)
        .where(table.c.id.in_(change_ids))
        .order_by(table.c.id)
    ).all()
    now = utcnow()
    rows = [
        {
            "endpoint_id": endpoint_id,
            "change_id": change.id,
            "event_type": change.type,
            "contact_id": change.contact_id,
            "created_at": now,
        }
        for change in changes
        for endpoint_id in _subscribers(endpoints, change.type)
    ]
    if rows:
        ids = connection.scalars(_INSERT_DELIVERIES, rows).all()
        session.info.setdefault(_WRITTEN, []).extend(ids)


def _hand_over_written(app: Flask, **_: object) -> None:
    """After the commit: hand over the deliveries written since the last
    hand-over that head their receiver's queue for their contact.

    Read through a connection of its own, which sees only committed rows: ids
    of a transaction that rolled back are not handed over (and any row that
    took such an id since is owed anyway)."""
    written = db.session().info.pop(_WRITTEN, None)
    if not written:
        return
    table = WebhookDelivery.__table__
    with db.engine.connect() as conn:
        heads = conn.scalars(
            sa.select(table.c.id).where(
                id_in(table.c.id, written), table.c.handed_over_at.is_(None), _is_head(table)
            )
        ).all()
    if heads:
        hand_over(list(heads))


def _is_head(table: sa.Table) -> sa.ColumnElement[bool]:
    """A pending delivery with no earlier pending one for its endpoint and contact."""
    earlier = table.alias("earlier")
    return sa.and_(
        table.c.status == "pending",
        ~sa.exists().where(
            earlier.c.endpoint_id == table.c.endpoint_id,
            earlier.c.contact_id == table.c.contact_id,
            earlier.c.status == "pending",
            earlier.c.id < table.c.id,
        ),
    )


def hand_over(delivery_ids: list[int], *, delay_ms: int | None = None) -> None:
    """Send the actor messages; a broker that is down leaves rows for the sweeper."""
    options: dict[str, Any] = {}
    if delay_ms is not None:
        options["delay"] = delay_ms
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
                .where(id_in(WebhookDelivery.id, handed))
                .values(handed_over_at=utcnow())
            )


def sweep(older_than_seconds: int = 60, *, broker_emptied: bool = False) -> int:
    """Hand over deliveries that never reached the broker, or whose message was
    lost. Returns how many.

    Only the head of each receiver's queue per contact: the rest follow it.
    ``broker_emptied``: the broker lost its stored messages (a Redis restarted
    empty, ``extensions.broker_was_emptied``), so every pending head is handed
    over again; one posted twice carries the same ``webhook-id`` and the
    contact's current state both times, so the repeat changes nothing at the
    receiver."""
    table = WebhookDelivery.__table__
    now = utcnow()
    cutoff = now - timedelta(seconds=older_than_seconds)
    query = sa.select(table.c.id).where(_is_head(table))
    if not broker_emptied:
        # (After the broker lost its messages, a head waiting for its next try
        # lost its message too: it goes now, a little early.)
        due = sa.or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= now)
        query = query.where(table.c.handed_over_at.is_(None), table.c.created_at <= cutoff, due)
    ids = list(db.session.scalars(query.order_by(table.c.id)))
    db.session.commit()
    if ids:
        hand_over(ids)
    return len(ids)


# --- posting ----------------------------------------------------------------------------


def body_for(change: Change) -> tuple[str, dict[str, Any]]:
    """The ``webhook-id`` and the body of a change: the Standard Webhooks
    envelope around the change feed's item (``data`` is the item as the feed
    serves it)."""
    item = feed.render([change])[0]
    return item["id"], {"type": item["type"], "timestamp": item["occurred_at"], "data": item}


def _retry_delay_ms(attempts: int) -> int:
    """Exponential backoff from WEBHOOK_MIN_BACKOFF_MS (doubling per attempt, up
    to WEBHOOK_MAX_BACKOFF_MS), with up to a quarter more at random so that
    receivers coming back are not hit by every queue at once."""
    low = current_app.config.get("WEBHOOK_MIN_BACKOFF_MS", 5_000)
    high = current_app.config.get("WEBHOOK_MAX_BACKOFF_MS", 3_600_000)
    delay = min(low * 2 ** min(max(attempts - 1, 0), 30), high)
    return int(delay * random.uniform(1, 1.25))


def _give_up_at(delivery: WebhookDelivery) -> datetime:
    hours = current_app.config.get("WEBHOOK_RETRY_HOURS", DEFAULT_RETRY_HOURS)
    return (delivery.first_attempt_at or utcnow()) + timedelta(hours=hours)


def _retry_or_fail(delivery: WebhookDelivery) -> str:
    """After a try that may work later: plan the next one, or give up when the
    retry window has passed. Commits; raises ``DeliveryFailed`` for a retry."""
    delay = _retry_delay_ms(delivery.attempts)
    due = utcnow() + timedelta(milliseconds=delay)
    if due > _give_up_at(delivery):
        return _finish(delivery, "failed", f"{delivery.last_error} (gave up)")
    delivery.next_attempt_at = due
    db.session.commit()
    metrics.WEBHOOK_DELIVERIES.labels("retry").inc()
    raise DeliveryFailed(delivery.last_error or "", delay)


def _finish(delivery: WebhookDelivery, status: str, error: str | None) -> str:
    """End a delivery and hand over the next one owed to the same receiver
    about the same contact. Commits."""
    delivery.status = status
    delivery.next_attempt_at = None
    delivery.last_error = error[:300] if error else None
    if status == "delivered":
        delivery.delivered_at = utcnow()
    endpoint_id, contact_id, delivery_id = delivery.endpoint_id, delivery.contact_id, delivery.id
    db.session.commit()
    metrics.WEBHOOK_DELIVERIES.labels(status).inc()
    if contact_id is not None:
        following = db.session.scalar(
            sa.select(sa.func.min(WebhookDelivery.id)).where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.contact_id == contact_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.id > delivery_id,
            )
        )
        db.session.commit()
        if following is not None:
            hand_over([following])
    return status


def deliver(delivery_id: int) -> str:
    """Post one delivery with the change feed's item as it reads now. Idempotent.

    Returns what happened ("delivered", "failed", "cancelled", "waiting" for
    an earlier delivery about the same contact, "gone"); raises
    ``DeliveryFailed`` for a retry.
    """
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return "gone"  # pruned with its change meanwhile
    if delivery.status != "pending":
        return delivery.status
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or not endpoint.is_active:
        return _finish(delivery, "cancelled", "cancelled: the endpoint is inactive")
    if _waits_for_earlier(delivery):
        # Posted once the earlier one ends (``_finish`` hands it over; the
        # sweeper too, should that message be lost).
        delivery.handed_over_at = None
        db.session.commit()
        return "waiting"
    change = db.session.get(Change, delivery.change_id) if delivery.change_id else None
    if change is None:
        return _finish(delivery, "failed", "the change is no longer in the feed")
    if delivery.first_attempt_at is None:
        delivery.first_attempt_at = utcnow()
    try:
        target = resolve_target(endpoint.url)
    except TargetRefused as refused:
        delivery.attempts += 1
        delivery.last_error = f"refused: {refused}"[:300]
        if refused.temporary:
            # DNS may be down or slow to propagate: try again with backoff.
            return _retry_or_fail(delivery)
        # The name now points inside the network (or never left it): no retry
        # will make posting there right; an admin re-registers a receiver.
        return _finish(delivery, "failed", delivery.last_error)
    msg_id, payload = body_for(change)
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "consent-service-webhooks/2",
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(endpoint.secret, msg_id, timestamp, body),
    }
    delivery.attempts += 1
    try:
        status = _post(target, body, headers)
    except (OSError, http.client.HTTPException) as exc:
        delivery.last_error = f"unreachable: {type(exc).__name__}"
        return _retry_or_fail(delivery)
    if carries_personal_data(payload["data"]) and delivery.contact_id is not None:
        _audit_disclosure(endpoint.id, delivery.id, delivery.contact_id)
    if 200 <= status < 300:
        return _finish(delivery, "delivered", None)
    delivery.last_error = f"HTTP {status}"
    if status == 410:
        # The receiver says it is gone for good: stop posting to it at all.
        _deactivate(endpoint, "the receiver answered 410 Gone")
        return _finish(delivery, "failed", "HTTP 410 (endpoint deactivated)")
    if 300 <= status < 400:
        # Not followed: the place it points to was never checked.
        return _finish(delivery, "failed", f"HTTP {status} (redirects are not followed)")
    if 400 <= status < 500 and status not in (408, 409, 425, 429):
        # The receiver refuses this request as such; sending it again will not help.
        return _finish(delivery, "failed", delivery.last_error)
    return _retry_or_fail(delivery)


def _waits_for_earlier(delivery: WebhookDelivery) -> bool:
    if delivery.contact_id is None:
        return False
    return (
        db.session.scalar(
            sa.select(WebhookDelivery.id)
            .where(
                WebhookDelivery.endpoint_id == delivery.endpoint_id,
                WebhookDelivery.contact_id == delivery.contact_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.id < delivery.id,
            )
            .limit(1)
        )
        is not None
    )


def carries_personal_data(item: dict[str, Any]) -> bool:
    """Whether a feed item carries the contact's personal data rather than only
    ids: a live contact's fields (``contact``) or its decisions (each names its
    address). Tombstones, purge counts and an undeliverable notice carry none."""
    return not item.get("tombstone") and ("contact" in item or "decisions" in item)


def _audit_disclosure(endpoint_id: int, delivery_id: int, contact_id: int) -> None:
    """R25: a payload carrying the contact's personal data is a disclosure to
    the receiver, written to the audit log like any other: which endpoint,
    which delivery, whose data, by ids only (X14). One entry per delivery, the
    first time the receiver answers a post of it (an answer, even a 5xx, means
    it has read the body); a retry adds none. A tombstone carries ids only and
    writes none. Part of the caller's transaction."""
    detail = f"endpoint={endpoint_id} delivery={delivery_id}"
    logged = db.session.scalar(
        sa.select(AuditEntry.id)
        .where(
            AuditEntry.contact_id == contact_id,
            AuditEntry.action == DISCLOSURE_ACTION,
            AuditEntry.detail == detail,
        )
        .limit(1)
    )
    if logged is None:
        crm.audit(SYSTEM_ACTOR, DISCLOSURE_ACTION, contact_id, detail=detail)


# --- the delivery log and replays ---------------------------------------------------------


def list_deliveries(
    endpoint_id: int,
    *,
    status: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[WebhookDelivery]:
    """An endpoint's deliveries, newest first, ``limit`` at a time; ``before``
    (a delivery id) continues a page."""
    get_endpoint(endpoint_id)
    query = sa.select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(db.session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def _replayable(endpoint_id: int) -> WebhookEndpoint:
    endpoint = get_endpoint(endpoint_id)
    if not endpoint.is_active:
        raise Conflict(
            f"Webhook {endpoint_id} is inactive ({endpoint.deactivation_reason}); "
            "register the receiver again to post to it.",
            code="webhook_inactive",
        )
    return endpoint


def replay_delivery(actor: Actor, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    """Post one delivery's change again, as a new delivery (the log keeps both).

    The item is rendered as it reads now, with the same ``webhook-id``."""
    endpoint = _replayable(endpoint_id)
    original = db.session.get(WebhookDelivery, delivery_id) if 0 < delivery_id < 2**31 else None
    if original is None or original.endpoint_id != endpoint.id:
        raise NotFound(
            f"Webhook {endpoint_id} has no delivery {delivery_id}.", code="delivery_not_found"
        )
    if original.change_id is None or db.session.get(Change, original.change_id) is None:
        raise Conflict(
            f"Delivery {delivery_id} cannot be replayed: its change is no longer in the feed.",
            code="delivery_not_replayable",
        )
    replay = WebhookDelivery(
        endpoint_id=endpoint.id,
        change_id=original.change_id,
        event_type=original.event_type,
        contact_id=original.contact_id,
        replay_of=original.id,
    )
    db.session.add(replay)
    crm.audit(actor, "webhook.replay", detail=f"endpoint={endpoint.id} delivery={delivery_id}")
    db.session.commit()
    _hand_over_heads(endpoint.id, first_id=replay.id)
    return replay


def replay_since(
    actor: Actor,
    endpoint_id: int,
    *,
    after_change: int | None = None,
    since: datetime | None = None,
) -> int:
    """Owe the endpoint every change of the types it subscribes to after the
    change ``after_change`` (exclusive; the number in its id ``chg_<n>``), or
    since the moment ``since``, in the feed's order (``crm.changes.order``):
    "after" is after that change's place in the feed, and the deliveries are
    written in that order, which is the order each contact's are posted in.
    A change no longer in the feed (or never written, ``chg_0``) starts after
    its number. Returns how many deliveries were written. More than
    ``WEBHOOK_REPLAY_MAX`` (100,000) is refused (InvalidInput ``replay_too_large``): the feed is the way to
    catch up on that much."""
    endpoint = _replayable(endpoint_id)
    if (after_change is None) == (since is None):
        raise InvalidInput(
            N_("Give either after_change (a change's id) or since (a time), not both."),
            code="replay_range",
        )
    changes = Change.__table__
    select = sa.select(
        sa.literal(endpoint.id),
        changes.c.id,
        changes.c.type,
        changes.c.contact_id,
        sa.literal(utcnow(), WebhookDelivery.__table__.c.created_at.type),
        sa.literal("pending"),
        sa.literal(0),
    )
    if after_change is not None:
        txid = db.session.scalar(sa.select(changes.c.txid).where(changes.c.id == after_change))
        select = select.where(
            changes.c.id > after_change
            if txid is None
            else change_feed.after_position((int(txid), after_change))
        )
    else:
        select = select.where(changes.c.occurred_at >= since)
    if endpoint.event_types:
        select = select.where(changes.c.type.in_(endpoint.events))
    most = current_app.config.get("WEBHOOK_REPLAY_MAX", 100_000)
    count = db.session.scalar(sa.select(sa.func.count()).select_from(select.subquery()))
    if count and count > most:
        # One request writes them all in one transaction: past this, the
        # receiver should read the change feed instead (docs/integration.md).
        raise InvalidInput(
            N_(
                "That replay would post %(count)s changes, more than %(most)s at once: choose "
                "a later starting point, or have the receiver read the change feed "
                "(GET /api/v1/changes) to catch up."
            ),
            values={"count": count, "most": most},
            code="replay_too_large",
        )
    deliveries = WebhookDelivery.__table__
    written_ids = db.session.scalars(
        deliveries.insert()
        .from_select(
            [
                "endpoint_id",
                "change_id",
                "event_type",
                "contact_id",
                "created_at",
                "status",
                "attempts",
            ],
            select.order_by(*change_feed.order()),
        )
        .returning(deliveries.c.id)
    ).all()
    written = len(written_ids)
    detail = f"endpoint={endpoint.id} " + (
        f"after_change={after_change}" if after_change is not None else f"since={since}"
    )
    crm.audit(actor, "webhook.replay", detail=f"{detail} count={written}")
    db.session.commit()
    if written:
        _hand_over_heads(endpoint.id, first_id=min(written_ids))
    return written


def _hand_over_heads(endpoint_id: int, *, first_id: int) -> None:
    """Hand over the new deliveries (ids from ``first_id``) that head their
    queue; the rest follow them one by one."""
    table = WebhookDelivery.__table__
    heads = list(
        db.session.scalars(
            sa.select(table.c.id)
            .where(table.c.endpoint_id == endpoint_id, table.c.id >= first_id, _is_head(table))
            .order_by(table.c.id)
        )
    )
    db.session.commit()
    if heads:
        hand_over(heads)


def _connect_checked(addresses: tuple[str, ...], port: int, timeout: float | None) -> socket.socket:
    """A connection to the first of ``addresses`` (IP literals, all checked) that
    answers, in the resolver's order: create_connection looks nothing up."""
    error: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error


class _CheckedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the addresses that were checked, whatever the name resolves to now."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.checked = target.addresses

    def connect(self) -> None:
        self.sock = _connect_checked(self.checked, self.port, self.timeout)


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the checked addresses; the certificate is verified for the host's name."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
        self.checked = target.addresses

    def connect(self) -> None:
        sock = _connect_checked(self.checked, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _post(target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to ``target`` at one of its checked addresses; the answer's status.

    No proxy from the environment and no redirect: either would reach a place
    that was never checked."""
    parts = target.parts
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = (
        _CheckedHTTPSConnection if parts.scheme == "https" else _CheckedHTTPConnection
    )
    connection = connection_class(target, timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()
