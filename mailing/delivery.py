"""Delivery: the last check and the send of a batch of outbox rows.

A job claims its rows, holds their contacts (so that an objection committed
meanwhile waits, docs/rules.md R11), asks the policy once more, sends through
``mailing.transport`` and marks each row with its outcome, with one statement
per step for the whole batch (docs/mail-flows.md). Each message the SMTP
server accepted is also noted at once (``mailing.acceptances``), so that a
worker killed before the batch's commit sends none of them twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any, TypeVar

import sqlalchemy as sa

from consent.deliverability import HARD
from consent.services import check_permissions
from consent.tokens import LinkInvalid
from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel import metrics
from kernel.timestamps import utcnow
from mailing import acceptances, messages, transport, verp
from mailing.bounces import Bounce, record_bounce
from mailing.models import Campaign, MailStatus, OutboxMessage
from mailing.outbox import claim_timeout, hand_over, lock_in_id_order
from mailing.why import Why, reasons_for

log = logging.getLogger(__name__)


T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """What ``deliver`` did: ``sent``, or why not (``skipped``, ``blocked``, ``failed``,
    or ``queued``: put back because the batch's hold time was up; a temporary
    failure puts rows back too, but raises)."""

    status: str
    reason: str | None = None


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
    _find_accepted(letters)
    waiting = [x for x in letters if x.outcome is None]
    # Marketing is built once the policy has said why it may go (its footer says so).
    render_errors = [letter.render() for letter in waiting if not letter.is_marketing]
    stopped_by: BaseException | None = None
    try:
        render_errors += _hold_and_check([x for x in waiting if x.is_marketing], now)
        stopped_by = _send_all(letters, now)
    except BaseException as exc:
        stopped_by = exc
        raise
    finally:
        # Whatever happens, what left is marked sent and the rest goes back to the queue.
        _mark(letters, stopped_by)
        _record_refusals(letters, now)
        _count(letters)
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
    lock_in_id_order(outbox_ids)
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
    template: str = ""
    message: EmailMessage | transport.PreparedMessage | None = None
    # Why the message could not be built; the row is failed unless the policy blocks it.
    failure: str | None = None
    # Why the person receives this marketing email, from the policy's decision.
    why: Why | None = None
    owes_notice: bool = False
    outcome: Delivery | None = None
    # The server refused the recipient at RCPT TO (5xx): a hard bounce to record.
    refused: transport.RecipientRefused | None = None

    def __post_init__(self) -> None:
        self.outbox_id, self.contact_id = self.row.id, self.row.contact_id
        self.is_marketing, self.template = self.row.is_marketing, self.row.template

    def render(self) -> Exception | None:
        """Build the message, or note why it cannot be built. Returns an
        unexpected error (a bug), to be raised once the batch is marked."""
        self.message, self.failure = None, None
        try:
            self.message = messages.prepare_message(self.row, self.contact, self.why)
        except LinkInvalid as exc:  # the confirmation it points to is gone
            self.failure = str(exc)
        except Exception as exc:
            # A bug in a template is not worth retrying; the row says what happened.
            log.exception("Rendering outbox %s failed", self.outbox_id)
            self.failure = f"rendering failed: {type(exc).__name__}: {exc}"
            return exc
        return None


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


def _find_accepted(letters: list[_Letter]) -> None:
    """Mark sent the letters the SMTP server accepted under an earlier claim whose
    worker died before its batch's commit. Only a row claimed before can have
    been accepted, so a first claim (the common case) costs no round trip."""
    again = [x.outbox_id for x in letters if x.row.attempts > 1]
    if not again:
        return
    done = acceptances.accepted(again)
    for letter in letters:
        if letter.outbox_id in done:
            log.info("Outbox %s was accepted before its worker stopped: not sent again",
                     letter.outbox_id)  # fmt: skip
            letter.outcome = Delivery("sent")
            letter.owes_notice = _owes_notice(letter)


def _owes_notice(letter: _Letter) -> bool:
    """Whether the letter, once sent, gave the contact its GDPR art. 14 notice."""
    return letter.template == messages.SOURCE_NOTICE or (
        letter.is_marketing and bool(letter.contact.art14_notice_owed_since)
    )


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
    committed since they were read must count. Each message allowed is built
    here, from those values and with the decision's reason for its footer
    (``mailing.why``); returned: the errors of those builds.
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
        reasons = reasons_for([(x.contact, d) for x, d in zip(group, decisions, strict=True)])
        for letter, decision, why in zip(group, decisions, reasons, strict=True):
            if not decision.allowed:
                letter.outcome = Delivery(MailStatus.BLOCKED.value, decision.reason.value)
            else:
                letter.why = why
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
        if (
            letter.template == messages.SOURCE_NOTICE
            and letter.contact.art14_notice_owed_since is None
        ):
            # A campaign's first email carried it meanwhile: it is not sent twice.
            letter.outcome = Delivery(MailStatus.BLOCKED.value, "notice_already_given")
            continue
        if time.monotonic() > deadline:
            _put_back(letters[index:], Delivery(MailStatus.QUEUED.value, OUT_OF_TIME))
            return None
        try:
            where = transport.send(
                letter.message,
                f"{now:%Y%m%dT%H%M%S}-{letter.outbox_id}.eml",
                # Returned mail comes back to an address naming this row (VERP).
                verp.envelope_sender(letter.outbox_id),
            )
        except transport.TemporaryFailure as exc:
            letter.outcome = Delivery(MailStatus.QUEUED.value, str(exc))
            _put_back(letters[index + 1 :], Delivery(MailStatus.QUEUED.value))
            return exc
        except transport.PermanentFailure as exc:
            letter.outcome = Delivery(MailStatus.FAILED.value, str(exc))
            if isinstance(exc, transport.RecipientRefused):
                letter.refused = exc
            continue
        # At once, outside the batch's transaction: a kill before the commit
        # below must not send this message again.
        acceptances.note_accepted(letter.outbox_id)
        log.info("Outbox %s (%s) sent to %s", letter.outbox_id, letter.row.template, where)
        letter.outcome = Delivery("sent")
        letter.owes_notice = _owes_notice(letter)
    return None


def _record_refusals(letters: list[_Letter], at: datetime) -> None:
    """Each recipient the server refused at RCPT TO with a 5xx is a hard bounce,
    recorded through the one bounce path (``mailing.bounces.record_bounce``,
    each in its own transaction, after the rows were marked) exactly as if a
    DSN had come back: the address becomes undeliverable and no later mail is
    tried. A 4xx there is a temporary failure and stays a retry."""
    for letter in letters:
        refusal = letter.refused
        if refusal is None:
            continue
        bounce = Bounce(
            email=refusal.recipient,
            type=HARD,
            source="smtp",
            status=refusal.status,
            diagnostic=f"smtp; {refusal.code} {refusal.reply}",
            outbox_id=letter.outbox_id,
            occurred_at=at,
        )
        try:
            record_bounce(bounce, at=at)
        except Exception:
            # The row is marked failed with the server's words either way; a
            # recording that failed must not turn the batch into a retry.
            db.session.rollback()
            log.exception("Recording the refusal of outbox %s as a bounce failed", letter.outbox_id)


def _count(letters: list[_Letter]) -> None:
    """The batch's outcomes as metrics; a letter without one went back to the queue."""
    for letter in letters:
        status = letter.outcome.status if letter.outcome else MailStatus.QUEUED.value
        if status != "skipped":
            metrics.OUTBOX_DELIVERIES.labels(
                "requeued" if status == MailStatus.QUEUED else status
            ).inc()


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
    owed_notice: dict[str, list[int]] = {}
    for letter in letters:
        values = _final_values(letter.outcome, now)
        if values is None:
            continue
        changes.setdefault(tuple(sorted(values.items())), []).append(letter.outbox_id)
        if values["status"] == MailStatus.SENT and letter.owes_notice:
            owed_notice.setdefault(letter.template, []).append(letter.contact_id)
    for change, outbox_ids in changes.items():
        _update(outbox_ids, **dict(change))
    for via, contact_ids in owed_notice.items():
        crm.note_art14_notice_given(contact_ids, via)  # committed with the sent marks
    db.session.commit()
    acceptances.forget(
        x.outbox_id for x in letters if x.outcome and x.outcome.status == MailStatus.SENT
    )


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
