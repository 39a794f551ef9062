"""Mail use cases: the outbox, delivery, and the public subscribe/unsubscribe flows.

Every use case here writes its consent events (through ``consent``) and the
email they cause (an outbox row) in one transaction, commits, and only then
hands the row ids to the job queue. If the broker is down at that moment the
rows stay un-handed and ``sweep`` hands them over later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import current_app

from consent import rights, subscriptions
from consent.ledger import Evidence
from consent.models import ALL
from consent.services import check_permissions
from consent.signals import consent_changed
from consent.subscriptions import (
    ConfirmOutcome,
    Scope,
    Signup,
    TopicPreference,
)
from consent.tokens import RENEWABLE_FOR, LinkExpired, LinkInvalid, Purpose, read_token
from consent.topics import current_policy
from crm import services as crm
from crm.addresses import keyed_hash, normalise_email
from crm.errors import InvalidInput, NotFound, Unavailable
from crm.models import Contact, utcnow
from extensions import db
from mailing import messages, transport
from mailing.models import Campaign, MailKind, MailStatus, OutboxMessage

log = logging.getLogger(__name__)

# At most one confirmation or verification email per address in this time,
# counted from the outbox so that every web process sees the same answer.
EMAIL_INTERVAL = timedelta(minutes=10)
BROKER_DOWN = "The service is briefly unavailable; please try again in a few minutes."

T = TypeVar("T")


# The outbox ----------------------------------------------------------------------


def queue_email(
    contact: Contact,
    *,
    kind: MailKind,
    template: str,
    idempotency_key: str,
    topic: str | None = None,
    params: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> OutboxMessage:
    """Add an email to the outbox in the caller's transaction (no commit).

    Queuing the same ``idempotency_key`` twice returns the first row. After
    the commit, pass the row's id to ``hand_over``.
    """
    existing = db.session.scalar(
        sa.select(OutboxMessage).where(OutboxMessage.idempotency_key == idempotency_key)
    )
    if existing is not None:
        return existing
    if kind is MailKind.MARKETING and not topic:
        raise InvalidInput("Marketing email needs its topic.", code="missing_topic")
    row = OutboxMessage(
        idempotency_key=idempotency_key,
        kind=kind.value,
        contact_id=contact.id,
        template=template,
        language=messages.page_language(contact.language),
        topic=topic,
        params=params or {},
        status=MailStatus.QUEUED.value,
        message_id=messages.message_id_for(idempotency_key),
        created_at=at or utcnow(),
    )
    db.session.add(row)
    db.session.flush()
    return row


def hand_over(outbox_ids: Iterable[int]) -> list[int]:
    """Send one job per row to the broker, after the commit. Returns the ids handed over.

    A broker that is down is logged, not raised: the change is committed and
    the rows wait for the sweeper. The first failure ends the hand-over, so a
    campaign's thousands of rows do not each wait for a dead broker.
    """
    from mailing.tasks import deliver_email

    config = current_app.config
    ids = list(outbox_ids)
    done = []
    for outbox_id in ids:
        try:
            deliver_email.send_with_options(
                args=(outbox_id,),
                min_backoff=config["OUTBOX_MIN_BACKOFF_MS"],
                max_backoff=config["OUTBOX_MAX_BACKOFF_MS"],
            )
        except Exception as exc:
            log.warning(
                "%d outbox row(s) not handed to the broker (%s); the sweeper will.",
                len(ids) - len(done),
                exc,
            )
            break
        done.append(outbox_id)
    if done:
        db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(done))
            .values(handed_over_at=utcnow())
        )
        db.session.commit()
    return done


def claim_timeout() -> timedelta:
    """After this a row claimed by a worker that vanished (killed mid-send) is free again."""
    return timedelta(seconds=current_app.config["OUTBOX_CLAIM_TIMEOUT_S"])


def sweep(
    at: datetime | None = None,
    older_than: timedelta | None = None,
    *,
    broker_emptied: bool | None = None,
) -> list[int]:
    """Hand over again what never reached a worker: rows queued but never handed
    over (broker down at commit), handed over long ago and still queued (a job
    lost or out of retries), or claimed by a worker that vanished.

    When the broker lost its stored messages (``broker_emptied``; asked of the
    broker when None: a Redis restarted empty), every queued row is handed over
    again at once, whatever its age: the outbox, not the broker, is the record
    of what is owed. A row handed over twice is sent once (``deliver`` claims it).
    """
    now = at or utcnow()
    if older_than is None:
        older_than = timedelta(seconds=current_app.config["OUTBOX_SWEEP_GRACE_S"])
    if broker_emptied is None:
        broker_emptied = _broker_emptied()
    stale = now - claim_timeout()
    waiting = (
        OutboxMessage.status == MailStatus.QUEUED
        if broker_emptied
        else sa.and_(
            OutboxMessage.status == MailStatus.QUEUED,
            sa.or_(
                sa.and_(
                    OutboxMessage.handed_over_at.is_(None),
                    OutboxMessage.created_at <= now - older_than,
                ),
                OutboxMessage.handed_over_at <= stale,
            ),
        )
    )
    rows = db.session.scalars(
        sa.select(OutboxMessage.id)
        .where(
            sa.or_(
                waiting,
                sa.and_(
                    OutboxMessage.status == MailStatus.SENDING,
                    OutboxMessage.claimed_at <= stale,
                ),
            )
        )
        .order_by(OutboxMessage.id)
    ).all()
    db.session.commit()
    return hand_over(list(rows))


def _broker_emptied() -> bool:
    from extensions import broker_was_emptied

    try:
        return broker_was_emptied()
    except Exception as exc:  # unreachable: nothing can be handed over anyway
        log.warning("Broker unreachable for the sweeper (%s).", exc)
        return False


def sweep_all() -> tuple[list[int], int]:
    """What the periodic sweeper runs: the outbox, then webhook deliveries.
    Returns the outbox ids and the number of deliveries handed over again."""
    from consent import webhooks

    emptied = _broker_emptied()
    return sweep(broker_emptied=emptied), webhooks.sweep(broker_emptied=emptied)


@dataclass(frozen=True)
class Delivery:
    """What ``deliver`` did: ``sent``, or why not (``skipped``, ``blocked``, ``failed``)."""

    status: str
    reason: str | None = None


def deliver(outbox_id: int, at: datetime | None = None) -> Delivery:
    """THE one function every email passes through; returns why a send was skipped.

    Safe to run twice: a row is claimed with a conditional update before
    anything leaves, and a sent, blocked or failed row is never sent again.
    Marketing mail asks the policy right before it leaves, so an objection
    recorded after queuing still stops it (R10, R11). A temporary failure
    puts the row back and raises ``TemporaryFailure`` for the job to retry;
    a permanent one marks it failed.
    """
    now = at or utcnow()
    # Claim first: the conditional update is the check that the row is still
    # waiting, and the row is only read once it is ours.
    claimed = db.session.execute(
        sa.update(OutboxMessage)
        .where(
            OutboxMessage.id == outbox_id,
            sa.or_(
                OutboxMessage.status == MailStatus.QUEUED,
                sa.and_(
                    OutboxMessage.status == MailStatus.SENDING,
                    OutboxMessage.claimed_at <= now - claim_timeout(),
                ),
            ),
        )
        .values(
            status=MailStatus.SENDING.value,
            claimed_at=now,
            attempts=OutboxMessage.attempts + 1,
        )
    )
    db.session.commit()
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return _not_claimed(outbox_id)
    # The row with its contact and campaign in one read (rendering finds the
    # campaign in the session); the row goes with its contact, so no row or no
    # contact means the contact was erased meanwhile.
    found = db.session.execute(
        sa.select(OutboxMessage, Contact, Campaign)
        .join(Contact, Contact.id == OutboxMessage.contact_id)
        .outerjoin(Campaign, Campaign.id == OutboxMessage.campaign_id)
        .where(OutboxMessage.id == outbox_id)
    ).first()
    if found is None:
        db.session.rollback()
        return Delivery("skipped", "contact_erased")
    row, contact, _campaign = found
    return _send_claimed(row, contact, now)


def _not_claimed(outbox_id: int) -> Delivery:
    """Why ``deliver`` left a row alone."""
    status = db.session.scalar(sa.select(OutboxMessage.status).where(OutboxMessage.id == outbox_id))
    db.session.rollback()
    if status is None:
        return Delivery("skipped", "not_in_outbox")
    if status in (MailStatus.SENT, MailStatus.BLOCKED, MailStatus.FAILED):
        return Delivery("skipped", f"already_{status}")
    return Delivery("skipped", "claimed_by_another_worker")


def _send_claimed(row: OutboxMessage, contact: Contact, now: datetime) -> Delivery:
    if row.is_marketing:
        if not _hold_contact(row, now):
            return Delivery("skipped", "contact_erased")
        decision = check_permissions([contact.email], row.topic or "", "email", at=now)[0]
        if not decision.allowed:
            return _finish(row, MailStatus.BLOCKED, block_reason=decision.reason.value)
    try:
        message = messages.build_message(row, contact)
    except LinkInvalid as exc:  # the confirmation it points to is gone
        return _finish(row, MailStatus.FAILED, error=str(exc))
    except Exception as exc:
        # A bug in a template is not worth retrying; the row says what happened.
        _finish(row, MailStatus.FAILED, error=f"rendering failed: {type(exc).__name__}: {exc}")
        raise
    try:
        where = transport.send(message, f"{now:%Y%m%dT%H%M%S}-{row.id}.eml")
    except transport.TemporaryFailure as exc:
        _finish(row, MailStatus.QUEUED, error=str(exc))
        raise
    except transport.PermanentFailure as exc:
        return _finish(row, MailStatus.FAILED, error=str(exc))
    log.info("Outbox %s (%s) sent to %s", row.id, row.template, where)
    if row.is_marketing and contact.art14_notice_owed_since is not None:
        crm.note_art14_notice_given(contact.id)  # committed with the sent mark
    return _finish(row, MailStatus.SENT, sent_at=utcnow())


def _hold_contact(row: OutboxMessage, at: datetime) -> bool:
    """Hold the contact from the last policy check until SMTP accepted the message.

    GDPR art. 21(3), R11: an objection ends marketing from the moment it
    commits, including mail already queued. ``consent.ledger.record`` takes
    the same row lock before any consent change, so an objection either
    committed before this check (and the check sees it) or commits after the
    message was accepted (the ``_finish`` commit releases the lock). On
    SQLite the write below takes the database's one write lock, which every
    consent change waits for in the same way. Returns False when the contact
    was erased meanwhile. The locking read also refreshes the contact already
    loaded: a restriction, a bounce or a new address committed since it was
    read must count.
    """
    held = db.session.execute(
        sa.select(Contact)
        .where(Contact.id == row.contact_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).first()
    if held is None:
        db.session.rollback()
        return False
    db.session.execute(
        sa.update(OutboxMessage).where(OutboxMessage.id == row.id).values(claimed_at=at)
    )
    return True


def _finish(
    row: OutboxMessage,
    status: MailStatus,
    *,
    error: str | None = None,
    block_reason: str | None = None,
    sent_at: datetime | None = None,
) -> Delivery:
    row.status = status.value
    row.last_error = error[:500] if error else row.last_error
    row.block_reason = block_reason
    row.sent_at = sent_at
    if status is MailStatus.QUEUED:
        row.claimed_at = None
    db.session.commit()
    if status is MailStatus.SENT:
        return Delivery("sent")
    return Delivery(status.value, block_reason or error)


# Transactions with a retry ---------------------------------------------------------


def _committed(work: Callable[[], T], attempts: int = 4) -> T:
    """Run ``work`` and commit; start again when a concurrent request won a race
    on a unique key (the same address posted by two forms at once)."""
    for attempt in range(attempts):
        try:
            result = work()
            db.session.commit()
            return result
        except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
            db.session.rollback()
            retriable = isinstance(exc, sa.exc.IntegrityError) or "locked" in str(exc)
            if not retriable or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _announce(contact_id: int, kind: str) -> None:
    consent_changed.send(current_app._get_current_object(), contact_id=contact_id, kind=kind)


def _recently_emailed(contact_id: int, template: str, at: datetime) -> bool:
    last = db.session.scalar(
        sa.select(sa.func.max(OutboxMessage.created_at)).where(
            OutboxMessage.contact_id == contact_id, OutboxMessage.template == template
        )
    )
    return last is not None and at - last < EMAIL_INTERVAL


def _queue_confirmation(
    contact: Contact,
    request: subscriptions.SubscriptionRequest,
    at: datetime,
    *,
    throttled: bool = True,
) -> OutboxMessage | None:
    """Queue the double opt-in email. ``throttled``: at most one per address per
    ``EMAIL_INTERVAL``, wherever anyone can type an address; a preference-centre
    request comes from the address's own link and is not held back."""
    if throttled and _recently_emailed(contact.id, "confirm", at):
        return None
    request.emails_queued += 1
    request.last_email_at = at
    return queue_email(
        contact,
        kind=MailKind.TRANSACTIONAL,
        template="confirm",
        idempotency_key=f"confirm:{request.id}:{request.emails_queued}",
        params={"request_id": request.id},
        at=at,
    )


# Subscribe and confirm (double opt-in) ---------------------------------------------------


def subscribe(signup: Signup, evidence: Evidence, at: datetime | None = None) -> None:
    """A signup form was posted (R7, R8). Returns nothing on purpose: the caller
    must answer the same whether the address was known, subscribed or suppressed."""
    now = at or utcnow()

    def work() -> tuple[int, list[int]]:
        outcome = subscriptions.request_subscription(signup, evidence, now)
        queued = (
            _queue_confirmation(outcome.contact, outcome.request, now) if outcome.request else None
        )
        return outcome.contact.id, [queued.id] if queued else []

    contact_id, outbox_ids = _committed(work)
    hand_over(outbox_ids)
    _announce(contact_id, "requested")


def _request_id(token: str, *, allow_expired_for: timedelta | None = None) -> int:
    try:
        payload = read_token(Purpose.CONFIRM, token)
    except LinkExpired as exc:
        if allow_expired_for is None or exc.issued_at is None:
            raise
        if utcnow() - exc.issued_at > allow_expired_for:
            raise
        payload = exc.payload
    try:
        return int(payload["r"])
    except (KeyError, TypeError, ValueError):
        raise LinkInvalid("This link is not valid.") from None


@dataclass(frozen=True)
class PendingConfirmation:
    language: str
    topics: list[str]
    already_confirmed: bool


def read_confirmation(token: str) -> PendingConfirmation:
    """What the confirmation page shows (GET: reads only)."""
    request = subscriptions.get_request(_request_id(token))
    contact = crm.get_contact(request.contact_id)
    lang = messages.page_language(contact.language)
    policy = current_policy()
    return PendingConfirmation(
        language=lang,
        topics=[policy.topic(t).label(lang) for t in request.topic_keys],
        already_confirmed=request.is_confirmed,
    )


def confirm(token: str, evidence: Evidence, at: datetime | None = None) -> ConfirmOutcome:
    """The person pressed "Confirm" (R7). A second press reports "already confirmed".

    The welcome email that follows is marketing: it carries the unsubscribe
    link and headers, and the policy is asked again before it leaves.
    """
    now = at or utcnow()
    request_id = _request_id(token)

    def work() -> tuple[ConfirmOutcome, list[int]]:
        outcome = subscriptions.confirm_subscription(request_id, evidence, now)
        if outcome.already_confirmed:
            return outcome, []
        welcome = queue_email(
            outcome.contact,
            kind=MailKind.MARKETING,
            template="welcome",
            topic=outcome.topics[0],
            idempotency_key=f"welcome:{outcome.request.id}",
            params={"topics": outcome.topics},
            at=now,
        )
        return outcome, [welcome.id]

    outcome, outbox_ids = _committed(work)
    hand_over(outbox_ids)
    if not outcome.already_confirmed:
        _announce(outcome.contact.id, "confirmed")
    return outcome


def renew_confirmation(token: str, at: datetime | None = None) -> str:
    """An expired confirmation link asks for a fresh email. Returns the page language."""
    now = at or utcnow()
    request_id = _request_id(token, allow_expired_for=RENEWABLE_FOR)

    def work() -> tuple[str, list[int]]:
        request = subscriptions.get_request(request_id)
        contact = crm.get_contact(request.contact_id)
        if request.is_confirmed:
            return messages.page_language(contact.language), []
        queued = _queue_confirmation(contact, request, now)
        return messages.page_language(contact.language), [queued.id] if queued else []

    lang, outbox_ids = _committed(work)
    hand_over(outbox_ids)
    return lang


# Unsubscribe (double opt-out) and the preference centre ----------------------------------


@dataclass(frozen=True)
class LinkHolder:
    """Who a signed link speaks for, as the page needs it."""

    contact: Contact
    topic: str
    topic_label: str | None
    language: str


def _holder(purpose: Purpose, token: str) -> LinkHolder:
    payload = read_token(purpose, token)
    try:
        contact_id = int(payload["c"])
        topic = str(payload.get("t", ALL))
    except (KeyError, TypeError, ValueError):
        raise LinkInvalid("This link is not valid.") from None
    try:
        contact = crm.get_contact(contact_id)
    except NotFound:
        raise LinkInvalid("This link no longer works.") from None
    lang = messages.page_language(contact.language)
    policy = current_policy()
    label = policy.topics[topic].label(lang) if topic in policy.topics else None
    return LinkHolder(contact=contact, topic=topic, topic_label=label, language=lang)


def read_unsubscribe_link(token: str) -> LinkHolder:
    """What the unsubscribe page shows (GET: reads only)."""
    return _holder(Purpose.UNSUBSCRIBE, token)


def unsubscribe(
    token: str,
    scope: Scope,
    evidence: Evidence,
    *,
    source: str = "email_link",
    at: datetime | None = None,
) -> LinkHolder:
    """Apply the choice made on the unsubscribe page, or a one-click POST (RFC 8058)."""
    now = at or utcnow()
    holder = _holder(Purpose.UNSUBSCRIBE, token)
    if scope is Scope.TOPIC and holder.topic not in current_policy().topics:
        scope = Scope.ALL

    def work() -> None:
        subscriptions.unsubscribe(
            holder.contact, scope, topic=holder.topic, source=source, evidence=evidence, at=now
        )

    _committed(work)
    _announce(holder.contact.id, "objected" if scope is Scope.OBJECT else "unsubscribed")
    return holder


def request_unsubscribe_link(email: str) -> None:
    """A person typed an address: email it a signed unsubscribe link (double opt-out).

    Nothing happens for an unknown address, and nothing tells the caller which
    it was, not even the time the answer takes: the request only hands the
    address's keyed hash to a job (never the address), and the job looks the
    contact up (``send_unsubscribe_link``). The job is the only record of the
    request, so a broker that is down raises ``Unavailable`` (a 503 page, the
    same for every address) rather than answer "sent" for nothing.
    """
    from mailing.tasks import send_unsubscribe_link as job

    digest = keyed_hash(normalise_email(email))
    try:
        job.send(digest)
    except Exception as exc:
        log.warning("Unsubscribe-link request not handed to the broker (%s).", exc)
        raise Unavailable(BROKER_DOWN) from None


def send_unsubscribe_link(address_hash: str, at: datetime | None = None) -> None:
    """The job behind ``request_unsubscribe_link``: queue the link for a known
    address, at most one such email per address per ``EMAIL_INTERVAL``."""
    now = at or utcnow()

    def work() -> list[int]:
        contact = db.session.scalar(sa.select(Contact).where(Contact.address_hash == address_hash))
        if contact is None or _recently_emailed(contact.id, "unsubscribe_link", now):
            return []
        bucket = int(now.timestamp()) // int(EMAIL_INTERVAL.total_seconds())
        row = queue_email(
            contact,
            kind=MailKind.TRANSACTIONAL,
            template="unsubscribe_link",
            idempotency_key=f"unsubscribe_link:{contact.id}:{bucket}",
            at=now,
        )
        return [row.id]

    hand_over(_committed(work))


def read_preferences(token: str) -> tuple[LinkHolder, list[TopicPreference]]:
    holder = _holder(Purpose.PREFERENCES, token)
    return holder, subscriptions.preferences_of(holder.contact)


@dataclass(frozen=True)
class PreferencesSaved:
    holder: LinkHolder
    turned_off: list[str]
    to_confirm: list[str]
    scope: Scope | None


def save_preferences(
    token: str,
    wanted: Sequence[str],
    evidence: Evidence,
    *,
    scope: Scope | None = None,
    at: datetime | None = None,
) -> PreferencesSaved:
    """The preference centre's POST: topics off at once, topics on by double opt-in,
    or everything off / an objection when ``scope`` says so."""
    now = at or utcnow()
    holder = _holder(Purpose.PREFERENCES, token)

    def work() -> tuple[list[str], list[str], list[int]]:
        contact = holder.contact
        if scope in (Scope.ALL, Scope.OBJECT):
            subscriptions.unsubscribe(
                contact, scope, topic=None, source="preference_centre", evidence=evidence, at=now
            )
            return [], [], []
        off, on = subscriptions.apply_preferences(contact, wanted, evidence, now)
        ids: list[int] = []
        if on:
            request = subscriptions.request_topics(contact, on, "preference_centre", evidence, now)
            queued = _queue_confirmation(contact, request, now, throttled=False)
            ids = [queued.id] if queued else []
        return off, on, ids

    off, on, outbox_ids = _committed(work)
    hand_over(outbox_ids)
    _announce(holder.contact.id, "preferences")
    return PreferencesSaved(holder=holder, turned_off=off, to_confirm=on, scope=scope)


def emails_for_export(contact: Contact) -> list[dict[str, Any]]:
    """The emails sent or queued to a contact, for its export (GDPR art. 15)."""
    rows = db.session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.contact_id == contact.id)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    )
    return [
        {
            "kind": row.kind,
            "template": row.template,
            "topic": row.topic,
            "language": row.language,
            "status": row.status,
            "block_reason": row.block_reason,
            "created_at": row.created_at.isoformat(),
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        }
        for row in rows
    ]


# Privacy requests from the public (R20, R21) ------------------------------------------------


def request_privacy(email: str, kind: str) -> None:
    """A person asks for a copy of their data or its erasure: email a verification link.

    As with ``request_unsubscribe_link``, the request only hands the address's
    keyed hash to a job, so neither the answer nor its timing tells whether the
    address is known. Nothing is done until the link is used (R21).
    """
    from mailing.tasks import open_privacy_request as job

    if kind not in rights.PRIVACY_KINDS:
        raise InvalidInput("kind must be access or erasure.", fields={"kind": ["Unknown."]})
    digest = keyed_hash(normalise_email(email))
    try:
        job.send(digest, kind)
    except Exception as exc:  # the job is the request's only record: see above
        log.warning("Privacy request not handed to the broker (%s).", exc)
        raise Unavailable(BROKER_DOWN) from None


def open_privacy_request(address_hash: str, kind: str, at: datetime | None = None) -> None:
    """The job behind ``request_privacy``: for a known address, record the request
    and email the link, at most one such email per address per ``EMAIL_INTERVAL``."""
    now = at or utcnow()

    def work() -> list[int]:
        contact = db.session.scalar(sa.select(Contact).where(Contact.address_hash == address_hash))
        if contact is None or _recently_emailed(contact.id, "privacy_verify", now):
            return []
        # One key per address and ten-minute bucket: two jobs racing for the
        # same address collide on it, and the loser's retry finds the email.
        bucket = int(now.timestamp()) // int(EMAIL_INTERVAL.total_seconds())
        key = f"privacy_verify:{contact.id}:{bucket}"
        if db.session.scalar(
            sa.select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)
        ):
            return []
        request = rights.open_privacy_request(contact, kind, now)
        row = queue_email(
            contact,
            kind=MailKind.TRANSACTIONAL,
            template="privacy_verify",
            idempotency_key=key,
            params={"request_id": request.id, "kind": kind},
            at=now,
        )
        if row.params.get("request_id") != request.id:
            # Another job won the race for this address: keep its request only.
            db.session.rollback()
            return []
        return [row.id]

    hand_over(_committed(work))


@dataclass(frozen=True)
class PrivacyLink:
    request: Any
    language: str


def read_privacy_link(token: str) -> PrivacyLink:
    """What the verification page shows (GET: reads only)."""
    payload = read_token(Purpose.VERIFY_ADDRESS, token)
    try:
        request_id = int(payload["p"])
    except (KeyError, TypeError, ValueError):
        raise LinkInvalid("This link is not valid.") from None
    try:
        request = rights.get_privacy_request(request_id)
    except NotFound:
        raise LinkInvalid("This link no longer works.") from None
    contact = crm.get_contact(request.contact_id)
    return PrivacyLink(request=request, language=messages.page_language(contact.language))


def verify_privacy(token: str, at: datetime | None = None) -> PrivacyLink:
    """The button on the verification page: a copy is emailed; an erasure waits for an admin."""
    link = read_privacy_link(token)
    now = at or utcnow()

    def work() -> list[int]:
        request, fresh = rights.verify_privacy_request(link.request.id, now)
        if not fresh or request.kind != "access":
            return []
        contact = crm.get_contact(request.contact_id)
        row = queue_email(
            contact,
            kind=MailKind.TRANSACTIONAL,
            template="privacy_export",
            idempotency_key=f"privacy_export:{request.id}",
            params={"request_id": request.id},
            at=now,
        )
        return [row.id]

    hand_over(_committed(work))
    return read_privacy_link(token)
