"""The outbox: every email is first a row, written in the transaction of the change
that caused it, then handed to a delivery job after the commit.

If the broker is down at that moment the rows stay un-handed and ``sweep``
hands them over later: the outbox, not the broker, is the record of what is
owed. ``mailing.delivery`` sends what is handed over.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from flask import current_app

from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel import metrics
from kernel.addresses import mailbox_of
from kernel.database import id_in, take_turns
from kernel.errors import InvalidInput
from kernel.jobs import send_job
from kernel.timestamps import utcnow
from mailing import messages
from mailing.models import MailKind, MailStatus, OutboxMessage

log = logging.getLogger(__name__)

# The actor that delivers a batch of rows (declared in mailing.tasks).
DELIVERY_JOB = "deliver_emails"
# The sweeper's job, sent every OUTBOX_SWEEP_INTERVAL_S by the scheduler (kernel.scheduling).
SWEEP_JOB = "sweep_outbox"
# Rows per delivery job. A job claims, holds, checks and marks its rows with one
# statement each, so a campaign costs a few statements per 25 messages rather
# than a dozen per message. Each acceptance is noted at once besides
# (``mailing.acceptances``), so a worker killed mid-job sends at most the one
# message it had on the wire twice, not the batch.
DELIVERY_BATCH = 25
# Emails that anyone can make us send by typing an address into a public form
# or by posting a link again: the double opt-in, the unsubscribe link and the
# privacy verification. They are counted per mailbox (``mailbox_may_receive``).
FORM_TEMPLATES = ("confirm", "unsubscribe_link", "privacy_verify")
# At most one of them per mailbox in this time, and at most MAILBOX_DAILY_LIMIT
# in a day, counted from the outbox so that every web process sees the same answer.
EMAIL_INTERVAL = timedelta(minutes=10)
DAILY_WINDOW = timedelta(days=1)
_WAITING = (MailStatus.QUEUED.value, MailStatus.SENDING.value)


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


def transactional_row(
    idempotency_key: str,
    contact_id: int,
    template: str,
    language: str | None,
    params: dict[str, Any],
    at: datetime,
) -> dict[str, Any]:
    """One transactional outbox row as ``insert_and_hand_over`` takes it: the
    set-based notices (a policy notice, the art. 14 notice) build thousands."""
    return {
        "idempotency_key": idempotency_key,
        "kind": MailKind.TRANSACTIONAL.value,
        "contact_id": contact_id,
        "template": template,
        "language": messages.page_language(language),
        "params": params,
        "status": MailStatus.QUEUED.value,
        "attempts": 0,
        "message_id": messages.message_id_for(idempotency_key),
        "created_at": at,
    }


def insert_and_hand_over(rows: list[dict[str, Any]]) -> int:
    """Insert ``rows`` in one statement, commit, and hand them to the delivery
    jobs; returns how many were queued. An ``IntegrityError`` (a row's
    idempotency key already queued by a run at the same moment) is the
    caller's to catch; nothing is committed then."""
    if not rows:
        return 0
    db.session.execute(sa.insert(OutboxMessage), rows)
    ids = list(
        db.session.scalars(
            sa.select(OutboxMessage.id).where(
                OutboxMessage.idempotency_key.in_([r["idempotency_key"] for r in rows])
            )
        )
    )
    db.session.commit()
    hand_over(ids)
    return len(ids)


def hand_over(outbox_ids: Iterable[int]) -> list[int]:
    """Send the rows to the broker, ``DELIVERY_BATCH`` per job, after the commit.
    Returns the ids handed over.

    A broker that is down is logged, not raised: the change is committed and
    the rows wait for the sweeper. The first failure ends the hand-over, so a
    campaign's thousands of rows do not each wait for a dead broker.
    """
    config = current_app.config
    ids = list(outbox_ids)
    done: list[int] = []
    for start in range(0, len(ids), DELIVERY_BATCH):
        batch = ids[start : start + DELIVERY_BATCH]
        try:
            send_job(
                DELIVERY_JOB,
                batch,
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
        metrics.OUTBOX_HANDED_OVER.inc(len(done))
        lock_in_id_order(done)
        db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(done))
            .values(handed_over_at=utcnow())
        )
        db.session.commit()
    return done


def lock_in_id_order(outbox_ids: list[int]) -> None:
    """Lock the rows lowest id first, before a statement that updates them all.

    An UPDATE over a set of ids locks rows in whatever order its plan scans
    them; the hand-over's marking and a worker's claim of an overlapping set
    could each hold a row the other waits for, and PostgreSQL ends one of them
    as a deadlock. Taking every lock in one order first makes the later one
    wait instead. (SQLite locks the whole database; the clause is left out.)
    """
    db.session.execute(
        sa.select(OutboxMessage.id)
        .where(OutboxMessage.id.in_(outbox_ids))
        .order_by(OutboxMessage.id)
        .with_for_update()
    )


def waiting_count() -> int:
    """Rows not yet sent, blocked or failed: queued, or claimed by a worker now."""
    count = db.session.scalar(sa.select(sa.func.count()).where(OutboxMessage.status.in_(_WAITING)))
    db.session.rollback()
    return int(count or 0)


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


class Swept(NamedTuple):
    """What one sweep handed over again."""

    outbox: list[int]
    webhooks: int
    imports: list[int]
    bulk_actions: list[int]


def sweep_all() -> Swept:
    """What the periodic sweeper runs: every job whose message may have been
    lost, found from the rows that own it (the outbox, webhook deliveries,
    import batches, bulk actions), handed over again."""
    from consent import bulk_actions, imports, webhooks

    emptied = _broker_emptied()
    return Swept(
        outbox=sweep(broker_emptied=emptied),
        webhooks=webhooks.sweep(broker_emptied=emptied),
        imports=imports.resend_lost_imports(broker_emptied=emptied),
        bulk_actions=bulk_actions.resend_lost_runs(broker_emptied=emptied),
    )


def mailbox_may_receive(contact: Contact, at: datetime) -> bool:
    """Whether one more email of ``FORM_TEMPLATES`` may be queued for ``contact`` at
    ``at``: none went to its mailbox in the last ``EMAIL_INTERVAL`` and fewer
    than ``MAILBOX_DAILY_LIMIT`` in the last day, whatever form caused them.

    Counted per mailbox, over every contact whose address delivers there
    (``anna@`` and each ``anna+tag@``): one new sub-address per post bought a
    new allowance when the count was per contact (issue 18: 180 emails in 36 s).
    Call it in the transaction that queues the email, just before queuing:
    the transactions asking for one mailbox take turns until they commit, so
    two web processes cannot both see room for one more.
    """
    mailbox = mailbox_of(contact.email)
    take_turns(f"mailbox:{mailbox}", OutboxMessage.__table__)
    sent, last = db.session.execute(
        sa.select(sa.func.count(), sa.func.max(OutboxMessage.created_at)).where(
            id_in(OutboxMessage.contact_id, crm.contact_ids_at_mailbox(mailbox) or [contact.id]),
            OutboxMessage.template.in_(FORM_TEMPLATES),
            OutboxMessage.created_at > at - DAILY_WINDOW,
        )
    ).one()
    if last is not None and at - last < EMAIL_INTERVAL:
        return False
    return int(sent) < int(current_app.config["MAILBOX_DAILY_LIMIT"])


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
