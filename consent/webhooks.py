"""Webhooks: every change of a contact's decisions is posted, signed, to the
registered URLs, so that the CRM and other mail tools stop marketing too.

Deliveries are rows written in the same transaction as the ledger events that
caused them (the receiver of ``kernel.signals.ledger_written``: one row per
active endpoint and contact), handed to a dramatiq actor after the commit (the
receiver of ``decisions_changed``), swept up if that never happened, and
retried with backoff until the receiver answers 2xx.

Receivers are on the public internet (``docs/webhooks.md``): a URL whose host is,
or resolves to, a loopback, private, link-local, unique-local, unspecified,
multicast or otherwise non-global address (IPv4 or IPv6, including IPv4
written inside IPv6) is refused when it is registered and again at every
delivery, since what a name resolves to can change. A delivery resolves the
name once, checks every address, and connects to the checked address itself
(TLS still verifies the certificate for the name), so that no second lookup
between the check and the connection can send the post elsewhere; it follows
no redirect. ``WEBHOOK_ALLOW_PRIVATE_TARGETS=1`` lifts the check for
receivers inside the network.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import sqlalchemy as sa
from flask import Flask, current_app

from consent.models import WebhookDelivery, WebhookEndpoint
from crm import services as crm
from crm.models import AuditEntry, Contact
from extensions import db
from kernel.access import SYSTEM_ACTOR, Actor
from kernel.errors import InvalidInput, NotFound
from kernel.jobs import send_job
from kernel.signals import decisions_changed, ledger_written
from kernel.timestamps import utcnow

# The actor that posts one delivery (declared in consent.tasks).
WEBHOOK_JOB = "deliver_webhook"
SIGNATURE_HEADER = "X-Consent-Signature"
# The audit entry of a delivery: the receiver got the contact's address (R25).
DISCLOSURE_ACTION = "webhook.deliver"
TIMESTAMP_HEADER = "X-Consent-Timestamp"
# session.info keys: the contacts owed a delivery in the open transaction, and
# the ids of deliveries written and not yet handed over.
_OWED = "webhook_owed"
_WRITTEN = "webhook_written"


class DeliveryFailed(Exception):
    """The receiver did not take the notification; dramatiq retries it."""


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


def create_endpoint(
    actor: Actor, url: str, description: str | None = None
) -> tuple[WebhookEndpoint, str]:
    """Register a receiver; returns it with its signing secret, shown once.

    A host that is, or resolves to, an address that is not public is refused
    (docs/webhooks.md), unless ``WEBHOOK_ALLOW_PRIVATE_TARGETS`` is set."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidInput(
            "The webhook URL must be an http(s) URL.", fields={"url": ["Not an http(s) URL."]}
        )
    if not _private_targets_allowed():
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
    try:
        target = resolve_target(endpoint.url)
    except TargetRefused as refused:
        delivery.attempts += 1
        delivery.last_error = f"refused: {refused}"[:300]
        if refused.temporary:
            # DNS may be down or slow to propagate: try again with backoff.
            db.session.commit()
            raise DeliveryFailed(delivery.last_error) from None
        # The name now points inside the network (or never left it): no retry
        # will make posting there right; an admin re-registers a receiver.
        delivery.status = "failed"
        db.session.commit()
        return "failed"
    body = json.dumps(payload_for(contact), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "consent-service-webhooks/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
    }
    delivery.attempts += 1
    try:
        status = _post(target, body, headers)
    except (OSError, http.client.HTTPException) as exc:
        delivery.last_error = f"unreachable: {type(exc).__name__}"
        db.session.commit()
        raise DeliveryFailed(delivery.last_error) from exc
    _audit_disclosure(endpoint.id, delivery.id, contact.id)
    if 200 <= status < 300:
        delivery.status = "delivered"
        delivery.delivered_at = utcnow()
        delivery.last_error = None
        db.session.commit()
        return "delivered"
    delivery.last_error = f"HTTP {status}"
    if 300 <= status < 400:
        # Not followed: the place it points to was never checked.
        delivery.last_error += " (redirects are not followed)"
    if 300 <= status < 500 and status not in (408, 409, 425, 429):
        # The receiver refuses this request as such; sending it again will not help.
        delivery.status = "failed"
        db.session.commit()
        return "failed"
    db.session.commit()
    raise DeliveryFailed(delivery.last_error)


def _audit_disclosure(endpoint_id: int, delivery_id: int, contact_id: int) -> None:
    """R25: the payload carries the contact's address, so the receiver's copy is
    written to the audit log like any other disclosure: which endpoint, which
    delivery, whose address, by ids only (X14). One entry per delivery, the
    first time the receiver answers a post of it (an answer, even a 5xx, means
    it has read the body); a retry adds none. Part of the caller's transaction."""
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
