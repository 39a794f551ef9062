"""The public subscription flows by email: double opt-in, double opt-out by a
typed address, the unsubscribe link and the preference centre.

Every use case here writes its consent events (through ``consent``) and the
email they cause (an outbox row) in one transaction, commits, announces the
change, and only then hands the row ids to the job queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import sqlalchemy as sa

from consent import subscriptions
from consent.evidence import Evidence
from consent.models import ALL, ConsentEvent
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
from kernel.database import commit_retrying
from kernel.errors import NotFound
from kernel.jobs import send_or_unavailable
from kernel.signals import decisions_changed
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow
from mailing import messages
from mailing.models import MailKind, OutboxMessage
from mailing.outbox import EMAIL_INTERVAL, hand_over, mailbox_may_receive, queue_email

# The actor behind ``request_unsubscribe_link`` (declared in mailing.tasks).
UNSUBSCRIBE_LINK_JOB = "send_unsubscribe_link"


def _announce(contact_id: int, kind: str) -> None:
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind=kind)


def _queue_confirmation(
    contact: Contact,
    request: subscriptions.SubscriptionRequest,
    at: datetime,
) -> OutboxMessage | None:
    """Queue the double opt-in email, unless the mailbox had its share
    (``mailbox_may_receive``): from a signup, a renewal or the preference
    centre alike, since a preferences link can be forwarded and replayed as
    easily as an address can be typed. The open request keeps its topics, so
    the email that did go confirms them all.

    A restricted contact (GDPR art. 18) gets none: it would ask for a yes that
    cannot be taken until the restriction is lifted."""
    if contact.is_restricted or not mailbox_may_receive(contact, at):
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


# The confirmation emails ``confirmation_owed`` queued in the session's transaction.
_OWED = "mailing.confirmations_owed"


def queue_owed_confirmation(app: object, *, request_id: int, **_: object) -> int | None:
    """Inside the sender's transaction (``kernel.signals.confirmation_owed``): the
    double opt-in email of a consent another system registered (R7, R8), queued
    as a signup's is, within the mailbox's share. Returns the outbox id, or None."""
    request = subscriptions.get_request(request_id)
    contact = crm.get_contact(request.contact_id)
    queued = _queue_confirmation(contact, request, utcnow())
    if queued is None:
        return None
    db.session().info.setdefault(_OWED, []).append(queued.id)
    return queued.id


def hand_over_owed_confirmations(app: object, **_: object) -> None:
    """After the commit (``kernel.signals.decisions_changed``): hand over what
    ``queue_owed_confirmation`` queued. Read through a connection of its own,
    which sees committed rows only: a transaction that rolled back owes nothing."""
    owed = db.session().info.pop(_OWED, None)
    if not owed:
        return
    table = OutboxMessage.__table__
    with db.engine.connect() as conn:
        committed = conn.scalars(
            sa.select(table.c.id).where(table.c.id.in_(owed), table.c.handed_over_at.is_(None))
        ).all()
    if committed:
        hand_over(list(committed))


def subscribe(signup: Signup, evidence: Evidence, at: datetime | None = None) -> None:
    """A signup form was posted (R7, R8). Returns nothing on purpose: the caller
    must answer the same whether the address was known, subscribed or suppressed.

    Anyone can post a form with anyone's address. So a consent the form was
    allowed to record at once (R8) is told to the address's owner straight
    away, in the same transaction, with a link that undoes it: the notice is
    transactional (it goes whatever the decision) and is not held back by the
    ten-minute rule, because each one reports a consent that was not there
    before (a post that changes nothing sends nothing).
    """
    now = at or utcnow()

    def work() -> tuple[int, list[int]]:
        outcome = subscriptions.request_subscription(signup, evidence, now)
        queued = (
            _queue_confirmation(outcome.contact, outcome.request, now) if outcome.request else None
        )
        ids = [queued.id] if queued else []
        if outcome.recorded_at_once:
            ids.append(_queue_signup_notice(outcome.contact, outcome.recorded_at_once, now).id)
        return outcome.contact.id, ids

    contact_id, outbox_ids = commit_retrying(work)
    hand_over(outbox_ids)
    _announce(contact_id, "requested")


def _queue_signup_notice(
    contact: Contact, events: Sequence[ConsentEvent], at: datetime
) -> OutboxMessage:
    """The email that tells the person a form subscribed them at once, with the undo link."""
    return queue_email(
        contact,
        kind=MailKind.TRANSACTIONAL,
        template="subscribed",
        idempotency_key=f"subscribed:{events[0].id}",
        params={"topics": [e.topic for e in events], "events": [e.id for e in events]},
        at=at,
    )


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
        if not outcome.recorded:
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

    outcome, outbox_ids = commit_retrying(work)
    hand_over(outbox_ids)
    if outcome.recorded:
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

    lang, outbox_ids = commit_retrying(work)
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
    # Every topic the link withdraws: ``topic``, or all the topics a signup
    # confirmed when the link is the welcome email's.
    topics: tuple[str, ...] = ()
    # The email the link came in (its outbox row) and that email's campaign,
    # when the link names a message sent to this contact: what the events the
    # link causes are attributed to (``attributed``).
    outbox_id: int | None = None
    campaign_id: int | None = None

    def attributed(self, evidence: Evidence) -> Evidence:
        """``evidence`` naming the email and campaign this link came in."""
        return replace(evidence, outbox_id=self.outbox_id, campaign_id=self.campaign_id)


def _message_behind(payload: dict[str, object], contact_id: int) -> tuple[int | None, int | None]:
    """The (outbox id, campaign id) of the email a link's ``m`` names, or (None, None).

    The token is signed, so ``m`` is ours; still, only a message that was
    sent to the link's own contact counts: a link made for one message must
    never count against another's campaign. A link that names nothing usable
    still works; it just attributes nothing."""
    raw = payload.get("m")
    if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
        return None, None
    row = db.session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.campaign_id).where(
            OutboxMessage.id == raw, OutboxMessage.contact_id == contact_id
        )
    ).first()
    if row is None:
        return None, None
    return row.id, row.campaign_id


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
    listed = payload.get("ts")
    named = [str(t) for t in listed] if isinstance(listed, list) and listed else [topic]
    topics = tuple(dict.fromkeys(t for t in named if t in policy.topics))
    label = ", ".join(policy.topics[t].label(lang) for t in topics) or None
    outbox_id, campaign_id = _message_behind(payload, contact.id)
    return LinkHolder(
        contact=contact,
        topic=topics[0] if topics else topic,
        topic_label=label,
        language=lang,
        topics=topics,
        outbox_id=outbox_id,
        campaign_id=campaign_id,
    )


def address_behind_link(purpose: Purpose, token: str) -> str | None:
    """The address a preferences or confirmation link speaks for (a confirmation
    link still renewable when expired), or None when it does not work: the rate
    limits count the mailbox a link would mail, as they do a typed address."""
    try:
        if purpose is Purpose.CONFIRM:
            request = subscriptions.get_request(_request_id(token, allow_expired_for=RENEWABLE_FOR))
            return crm.get_contact(request.contact_id).email
        return _holder(purpose, token).contact.email
    except (LinkInvalid, NotFound):
        return None


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
    """Apply the choice made on the unsubscribe page, or a one-click POST (RFC 8058).

    A topic link withdraws every topic it names: the welcome email's link,
    all the topics the person confirmed in that signup (R9)."""
    now = at or utcnow()
    holder = _holder(Purpose.UNSUBSCRIBE, token)
    if scope is Scope.TOPIC and not holder.topics:
        scope = Scope.ALL
    evidence = holder.attributed(evidence)

    def work() -> None:
        for topic in holder.topics if scope is Scope.TOPIC else (holder.topic,):
            subscriptions.unsubscribe(
                holder.contact, scope, topic=topic, source=source, evidence=evidence, at=now
            )

    commit_retrying(work)
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
    send_or_unavailable(UNSUBSCRIBE_LINK_JOB, keyed_hash(normalise_email(email)))


def send_unsubscribe_link(address_hash: str, at: datetime | None = None) -> None:
    """The job behind ``request_unsubscribe_link``: queue the link for a known
    address, within the mailbox's share (``mailbox_may_receive``)."""
    now = at or utcnow()

    def work() -> list[int]:
        contact = db.session.scalar(sa.select(Contact).where(Contact.address_hash == address_hash))
        if contact is None or not mailbox_may_receive(contact, now):
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

    hand_over(commit_retrying(work))


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
    evidence = holder.attributed(evidence)

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
            # None while restricted: the page answers as usual, nothing is sent.
            queued = _queue_confirmation(contact, request, now) if request else None
            ids = [queued.id] if queued else []
        return off, on, ids

    off, on, outbox_ids = commit_retrying(work)
    hand_over(outbox_ids)
    _announce(holder.contact.id, "preferences")
    return PreferencesSaved(holder=holder, turned_off=off, to_confirm=on, scope=scope)


# Undoing a signup recorded at once (R8) ----------------------------------------------------


@dataclass(frozen=True)
class UndoLink:
    """What the undo page shows: the topics the link can still undo."""

    holder: LinkHolder
    event_ids: tuple[int, ...]
    topics: list[str]
    topic_labels: list[str]


def read_undo_link(token: str) -> UndoLink:
    """The undo page (GET: reads only, so a mail scanner undoes nothing)."""
    holder = _holder(Purpose.UNDO_SIGNUP, token)
    payload = read_token(Purpose.UNDO_SIGNUP, token)
    try:
        event_ids = tuple(int(e) for e in payload["e"])
    except (KeyError, TypeError, ValueError):
        raise LinkInvalid("This link is not valid.") from None
    topics = subscriptions.undoable_topics(holder.contact, event_ids)
    policy = current_policy()
    labels = [policy.topic(t).label(holder.language) for t in topics if t in policy.topics]
    return UndoLink(holder=holder, event_ids=event_ids, topics=topics, topic_labels=labels)


def undo_signup(token: str, evidence: Evidence, at: datetime | None = None) -> UndoLink:
    """The button behind the link in the signup notice: withdraw, as the person,
    the consents that signup recorded at once. Returns what was undone."""
    now = at or utcnow()
    link = read_undo_link(token)

    def work() -> list[str]:
        return subscriptions.undo_signup(link.holder.contact, link.event_ids, evidence, now)

    undone = commit_retrying(work)
    if undone:
        _announce(link.holder.contact.id, "withdrawn")
    policy = current_policy()
    labels = [policy.topic(t).label(link.holder.language) for t in undone if t in policy.topics]
    return UndoLink(link.holder, link.event_ids, undone, labels)


def language_behind(purpose: Purpose, payload: dict[str, object]) -> str | None:
    """The language of the contact a genuine (if expired) link speaks for, so that
    its page talks to them in their own; None when the link names nobody we hold."""
    try:
        if purpose is Purpose.CONFIRM:
            request = subscriptions.get_request(int(payload["r"]))  # type: ignore[call-overload]
            contact = crm.get_contact(request.contact_id)
        elif purpose in (Purpose.UNSUBSCRIBE, Purpose.PREFERENCES, Purpose.UNDO_SIGNUP):
            contact = crm.get_contact(int(payload["c"]))  # type: ignore[call-overload]
        else:
            return None
    except (KeyError, TypeError, ValueError, LinkInvalid, NotFound):
        return None
    return messages.page_language(contact.language)
