"""Mail use cases: the outbox, delivery, and the public subscribe/unsubscribe flows.

Every use case here writes its consent events (through ``consent``) and the
email they cause (an outbox row) in one transaction, commits, and only then
hands the row ids to the job queue. If the broker is down at that moment the
rows stay un-handed and ``sweep`` hands them over later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import current_app

from consent import rights, subscriptions
from consent.evidence import Evidence
from consent.models import ALL
from consent.services import check_permissions
from consent.subscriptions import (
    ConfirmOutcome,
    Scope,
    Signup,
    TopicPreference,
)
from consent.tokens import RENEWABLE_FOR, LinkExpired, LinkInvalid, Purpose, read_token
from consent.topics import current_policy
from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel.addresses import keyed_hash, normalise_email
from kernel.errors import InvalidInput, NotFound, Unavailable
from kernel.signals import decisions_changed
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow
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
    """Send the rows to the broker, ``DELIVERY_BATCH`` per job, after the commit.
    Returns the ids handed over.

    A broker that is down is logged, not raised: the change is committed and
    the rows wait for the sweeper. The first failure ends the hand-over, so a
    campaign's thousands of rows do not each wait for a dead broker.
    """
    from mailing.tasks import deliver_emails

    config = current_app.config
    ids = list(outbox_ids)
    done: list[int] = []
    for start in range(0, len(ids), DELIVERY_BATCH):
        batch = ids[start : start + DELIVERY_BATCH]
        try:
            deliver_emails.send_with_options(
                args=(batch,),
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
        done.extend(batch)
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
    """What ``deliver`` did: ``sent``, or why not (``skipped``, ``blocked``, ``failed``,
    or ``queued``: put back because the batch's hold time was up; a temporary
    failure puts rows back too, but raises)."""

    status: str
    reason: str | None = None


# Rows per delivery job. A job claims, holds, checks and marks its rows with one
# statement each, so a campaign costs a few statements per 25 messages rather
# than a dozen per message; a worker killed mid-job can send at most this many
# messages twice (their rows were not yet marked sent).
DELIVERY_BATCH = 25
# How long a batch may hold its contacts (and, on SQLite, the database's write
# lock) while it sends. Twenty-five messages take tens of milliseconds; a slow
# SMTP server must not make objections and signups wait for minutes. What is
# left when the time is up goes back to the queue and is handed over again.
HOLD_BUDGET_SECONDS = 2.0
OUT_OF_TIME = "the batch's hold time was up; handed over again"


def deliver(outbox_id: int, at: datetime | None = None) -> Delivery:
    """``deliver_many`` for one row."""
    return deliver_many([outbox_id], at)[outbox_id]


def deliver_many(outbox_ids: Sequence[int], at: datetime | None = None) -> dict[int, Delivery]:
    """THE one function every email passes through; says per row why a send was skipped.

    Safe to run twice: rows are claimed with a conditional update before
    anything leaves, and a sent, blocked or failed row is never sent again.
    Marketing mail asks the policy right before it leaves, with its contacts
    held, so an objection recorded after queuing still stops it (R10, R11).
    A temporary failure puts the row and the rows after it back and raises
    ``TemporaryFailure`` for the job to retry; a permanent one marks its row
    failed. Everything that left is marked sent in the same commit that ends
    the hold.
    """
    now = at or utcnow()
    wanted = sorted(set(outbox_ids))
    claimed = _claim(wanted, now)
    outcomes = _not_claimed([i for i in wanted if i not in claimed])
    # Overwritten by each letter's outcome; a claimed row without a letter went
    # with its contact between the claim and the read.
    outcomes.update({i: Delivery("skipped", "contact_erased") for i in claimed})
    letters = _read_claimed(claimed)
    render_errors = [letter.render() for letter in letters]
    stopped_by: BaseException | None = None
    try:
        render_errors += _hold_and_check(
            [x for x in letters if x.is_marketing and x.outcome is None], now
        )
        stopped_by = _send_all(letters, now)
    except BaseException as exc:
        stopped_by = exc
        raise
    finally:
        # Whatever happens, what left is marked sent and the rest goes back to the queue.
        _mark(letters, stopped_by)
    outcomes.update({x.outbox_id: x.outcome or Delivery("queued") for x in letters})
    unsent = [x.outbox_id for x in letters if x.outcome and x.outcome.reason == OUT_OF_TIME]
    if unsent:
        hand_over(unsent)
    if stopped_by is not None:
        raise stopped_by
    for error in render_errors:
        if error is not None:
            raise error
    return outcomes


def _claim(outbox_ids: list[int], now: datetime) -> set[int]:
    """Claim first: the conditional update is the check that a row is still waiting,
    and a row is only read once it is ours."""
    if not outbox_ids:
        return set()
    claimed = db.session.scalars(
        sa.update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(outbox_ids),
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
        .returning(OutboxMessage.id)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    return set(claimed)


def _not_claimed(outbox_ids: list[int]) -> dict[int, Delivery]:
    """Why ``deliver`` left rows alone."""
    if not outbox_ids:
        return {}
    found = dict(
        db.session.execute(
            sa.select(OutboxMessage.id, OutboxMessage.status).where(
                OutboxMessage.id.in_(outbox_ids)
            )
        ).all()
    )
    db.session.rollback()
    outcomes = {}
    for outbox_id in outbox_ids:
        status = found.get(outbox_id)
        if status is None:
            outcomes[outbox_id] = Delivery("skipped", "not_in_outbox")
        elif status in (MailStatus.SENT, MailStatus.BLOCKED, MailStatus.FAILED):
            outcomes[outbox_id] = Delivery("skipped", f"already_{status}")
        else:
            outcomes[outbox_id] = Delivery("skipped", "claimed_by_another_worker")
    return outcomes


@dataclass
class _Letter:
    """One claimed row on its way out: its message, and what became of it.

    The ids and flags ``_mark`` needs are copied out of the ORM objects, which
    a rollback would expire (and a contact erased meanwhile could not reload).
    """

    row: OutboxMessage
    contact: Contact
    # Kept so that the session's identity map (weak references) keeps it for rendering.
    campaign: Campaign | None
    outbox_id: int = 0
    contact_id: int = 0
    is_marketing: bool = False
    message: EmailMessage | transport.PreparedMessage | None = None
    # Why the message could not be built; the row is failed unless the policy blocks it.
    failure: str | None = None
    # The contact's values the message was built from; the hold re-reads them.
    built_from: tuple[Any, ...] = ()
    owes_notice: bool = False
    outcome: Delivery | None = None

    def __post_init__(self) -> None:
        self.outbox_id, self.contact_id = self.row.id, self.row.contact_id
        self.is_marketing = self.row.is_marketing

    def render(self) -> Exception | None:
        """Build the message, or note why it cannot be built. Returns an
        unexpected error (a bug), to be raised once the batch is marked."""
        self.built_from = _rendered_fields(self.contact)
        self.message, self.failure = None, None
        try:
            self.message = messages.prepare_message(self.row, self.contact)
        except LinkInvalid as exc:  # the confirmation it points to is gone
            self.failure = str(exc)
        except Exception as exc:
            # A bug in a template is not worth retrying; the row says what happened.
            log.exception("Rendering outbox %s failed", self.outbox_id)
            self.failure = f"rendering failed: {type(exc).__name__}: {exc}"
            return exc
        return None


def _rendered_fields(contact: Contact) -> tuple[Any, ...]:
    return (contact.email, contact.name, contact.language, contact.art14_notice_owed_since)


def _read_claimed(claimed: set[int]) -> list[_Letter]:
    """The claimed rows with their contacts and campaigns in one read (rendering
    finds the campaign in the session). A row goes with its contact, so a
    missing row means the contact was erased meanwhile."""
    if not claimed:
        return []
    found = db.session.execute(
        sa.select(OutboxMessage, Contact, Campaign)
        .join(Contact, Contact.id == OutboxMessage.contact_id)
        .outerjoin(Campaign, Campaign.id == OutboxMessage.campaign_id)
        .where(OutboxMessage.id.in_(claimed))
        .order_by(OutboxMessage.id)
    ).all()
    return [
        _Letter(row=row, contact=contact, campaign=campaign) for row, contact, campaign in found
    ]


def _hold_and_check(letters: list[_Letter], at: datetime) -> list[Exception | None]:
    """Hold the contacts from the policy's last check until SMTP accepted their messages.

    GDPR art. 21(3), R11: an objection ends marketing from the moment it
    commits, including mail already queued. ``consent.ledger.record`` takes
    the same row lock before any consent change, so an objection either
    committed before this check (and the check sees it) or commits after the
    message was accepted (the commit in ``_mark`` releases the lock). On
    SQLite the write below takes the database's one write lock, which every
    consent change waits for in the same way. The locking read also refreshes
    the contacts already loaded: a restriction, a bounce or a new address
    committed since they were read must count, and a message built from the
    old values is built again (returned: the errors of those builds).
    """
    if not letters:
        return []
    contact_ids = sorted({x.contact_id for x in letters})
    held = {
        contact.id
        for contact in db.session.scalars(
            sa.select(Contact)
            .where(Contact.id.in_(contact_ids))
            .order_by(Contact.id)
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
    }
    _update([x.outbox_id for x in letters], claimed_at=at)
    waiting = []
    for letter in letters:
        if letter.contact_id not in held:
            letter.outcome = Delivery("skipped", "contact_erased")
        else:
            waiting.append(letter)
    by_topic: dict[str, list[_Letter]] = {}
    for letter in waiting:
        by_topic.setdefault(letter.row.topic or "", []).append(letter)
    errors = []
    for topic, group in by_topic.items():
        decisions = check_permissions([x.contact.email for x in group], topic, "email", at=at)
        for letter, decision in zip(group, decisions, strict=True):
            if not decision.allowed:
                letter.outcome = Delivery(MailStatus.BLOCKED.value, decision.reason.value)
            elif _rendered_fields(letter.contact) != letter.built_from:
                errors.append(letter.render())
    return errors


def _send_all(letters: list[_Letter], now: datetime) -> transport.TemporaryFailure | None:
    """Send every letter still waiting, in order. A temporary failure stops the
    batch: that row and the ones after it go back to the queue. So does the
    end of ``HOLD_BUDGET_SECONDS``, without the failure."""
    deadline = time.monotonic() + HOLD_BUDGET_SECONDS
    for index, letter in enumerate(letters):
        if letter.outcome is not None:
            continue
        if letter.message is None:
            letter.outcome = Delivery(MailStatus.FAILED.value, letter.failure)
            continue
        if time.monotonic() > deadline:
            _put_back(letters[index:], Delivery(MailStatus.QUEUED.value, OUT_OF_TIME))
            return None
        try:
            where = transport.send(letter.message, f"{now:%Y%m%dT%H%M%S}-{letter.outbox_id}.eml")
        except transport.TemporaryFailure as exc:
            letter.outcome = Delivery(MailStatus.QUEUED.value, str(exc))
            _put_back(letters[index + 1 :], Delivery(MailStatus.QUEUED.value))
            return exc
        except transport.PermanentFailure as exc:
            letter.outcome = Delivery(MailStatus.FAILED.value, str(exc))
            continue
        log.info("Outbox %s (%s) sent to %s", letter.outbox_id, letter.row.template, where)
        letter.outcome = Delivery("sent")
        letter.owes_notice = letter.is_marketing and bool(letter.contact.art14_notice_owed_since)
    return None


def _put_back(letters: list[_Letter], outcome: Delivery) -> None:
    for letter in letters:
        if letter.outcome is None:
            letter.outcome = outcome


def _mark(letters: list[_Letter], error: BaseException | None) -> None:
    """Write what became of each letter and end the hold, in one commit. A letter
    left without an outcome (``error`` stopped the batch) goes back to the queue."""
    if error is not None and not isinstance(error, transport.TemporaryFailure):
        db.session.rollback()  # a failed statement ends the transaction: mark in a new one
    now = utcnow()
    changes: dict[tuple[tuple[str, Any], ...], list[int]] = {}
    owed_notice = []
    for letter in letters:
        values = _final_values(letter.outcome, now)
        if values is None:
            continue
        changes.setdefault(tuple(sorted(values.items())), []).append(letter.outbox_id)
        if values["status"] == MailStatus.SENT and letter.owes_notice:
            owed_notice.append(letter.contact_id)
    for change, outbox_ids in changes.items():
        _update(outbox_ids, **dict(change))
    if owed_notice:
        crm.note_art14_notice_given(owed_notice)  # committed with the sent marks
    db.session.commit()


def _final_values(outcome: Delivery | None, now: datetime) -> dict[str, Any] | None:
    """The row's columns for an outcome; None when there is no row to mark."""
    if outcome is None:
        return {"status": MailStatus.QUEUED.value, "claimed_at": None}
    if outcome.status == "skipped":
        return None
    values: dict[str, Any] = {"status": outcome.status, "block_reason": None, "sent_at": None}
    if outcome.status == MailStatus.SENT:
        values["sent_at"] = now
    elif outcome.status == MailStatus.BLOCKED:
        values["block_reason"] = outcome.reason
    elif outcome.status == MailStatus.QUEUED:
        values["claimed_at"] = None
    if outcome.status != MailStatus.BLOCKED and outcome.reason:
        values["last_error"] = outcome.reason[:500]
    return values


def _update(outbox_ids: list[int], **values: Any) -> None:
    db.session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(outbox_ids))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


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
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind=kind)


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
