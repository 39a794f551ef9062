"""Double opt-in and double opt-out as consent use cases (R6-R9).

These functions record consent events through ``consent.ledger.record`` and
never commit: the mailing layer calls them, queues the email the change
causes in the same transaction, commits, and only then hands the email to
the job queue.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent.deliverability import note_address_works
from consent.evidence import Evidence
from consent.ledger import record
from consent.models import ALL, Basis, ConsentEvent, EventKind, PermissionState, SubscriptionRequest
from consent.policy import Decision, Reason, decide, standing_of
from consent.projection import DOUBLE_OPT_IN, PERSON
from consent.suppression import find_suppression, own_suppression
from consent.tokens import LinkInvalid
from consent.topics import check_topics, current_policy
from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.addresses import normalise_email
from kernel.countries import normalise_country, normalise_language
from kernel.errors import InvalidInput
from kernel.timestamps import utcnow

EMAIL = "email"

# A person who said no can only say yes again through a fresh double opt-in.
_NEEDS_THE_PERSON = frozenset({Reason.SUPPRESSED, Reason.OBJECTION, Reason.UNSUBSCRIBED})


@dataclass(frozen=True)
class Signup:
    """What a signup form sent, already parsed."""

    email: str
    topics: tuple[str, ...]
    language: str = "en"
    country: str | None = None
    name: str | None = None
    company: str | None = None
    # R8: the person ticked a marketing checkbox on the form itself.
    checkbox_ticked: bool = False


@dataclass
class SignupOutcome:
    contact: Contact
    request: SubscriptionRequest | None
    confirmed_at_once: list[str] = field(default_factory=list)
    # The consents this post recorded at once (R8); the caller must tell the
    # person about them, with a way to undo them (``undo_signup``).
    recorded_at_once: list[ConsentEvent] = field(default_factory=list)


def _decisions(contact: Contact, topic_keys: Sequence[str], at: datetime) -> dict[str, Decision]:
    policy = current_policy()
    standing = standing_of(contact)
    return {
        key: decide(
            standing,
            email=contact.email,
            topic=policy.topic(key),
            channel=EMAIL,
            at=at,
            policy=policy,
        )
        for key in topic_keys
    }


def request_subscription(signup: Signup, evidence: Evidence, at: datetime) -> SignupOutcome:
    """A form asked for topics: record ``requested`` (or, under R8, ``confirmed``).

    An unknown address becomes a contact; a known one is not edited, because
    nothing yet proves that the form was filled in by the address's owner.
    Topics go through double opt-in unless the person ticked the checkbox,
    the country does not demand it and the topic is not one that always does
    (R8). The country is the contact's stored one: anyone can post a form, so
    a posted country only stands in where none is stored (for this decision;
    the contact keeps its empty country, which also decides legitimate
    interest, X19). A person who unsubscribed or objected always goes through
    it: only their own confirmation may undo their "no". A consent recorded
    at once is in ``recorded_at_once``: the caller emails the person about it
    with a link that undoes it. Does not commit.

    A restricted contact (GDPR art. 18) is left as it is: nothing recorded, no
    request (so no email), and the caller answers as it always does, since
    the answer must not tell a stranger the address is known.
    """
    policy = current_policy()
    topics = check_topics(signup.topics)
    address = normalise_email(signup.email)
    country = normalise_country(signup.country) if signup.country else None
    contact = db.session.scalar(sa.select(Contact).where(Contact.email == address))
    if contact is not None and contact.is_restricted:
        return SignupOutcome(contact=contact, request=None)
    if contact is None:
        profile = {"name": signup.name, "country": country, "language": signup.language}
        company = crm.CompanyInput(name=signup.company) if signup.company else None
        contact, _ = crm.upsert_contact(address, {k: v for k, v in profile.items() if v}, company)
        if find_suppression(address) is not None:
            # R22: the ledger shows the address came back; it stays blocked
            # until the person confirms by double opt-in.
            record(
                contact,
                EventKind.CREATED_WHILE_SUPPRESSED,
                actor=PERSON,
                source="form",
                at=at,
                note="Address is on the suppression list; only its own confirmation lifts it.",
            )
    decisions = _decisions(contact, topics, at)
    deciding_country = contact.country or country
    at_once = [
        key
        for key in topics
        if signup.checkbox_ticked
        and not policy.requires_double_opt_in_for(key, deciding_country)
        and decisions[key].reason not in _NEEDS_THE_PERSON
    ]
    recorded: list[ConsentEvent] = []
    for key in at_once:
        if decisions[key].reason is not Reason.CONSENT:
            event = record(
                contact,
                EventKind.CONFIRMED,
                actor=PERSON,
                source="form",
                at=at,
                topic=key,
                channel=EMAIL,
                basis=Basis.CONSENT.value,
                evidence=evidence,
                source_ref=evidence.form_id,
            )
            recorded.append(event)
    rest = [key for key in topics if key not in at_once]
    request = request_topics(contact, rest, "form", evidence, at) if rest else None
    return SignupOutcome(
        contact=contact, request=request, confirmed_at_once=at_once, recorded_at_once=recorded
    )


def undoable_topics(contact: Contact, event_ids: Sequence[int], *, lock: bool = False) -> list[str]:
    """The topics whose standing consent is still one of ``event_ids`` (consents a
    form recorded at once). A consent given since, by any way, is another one."""
    if not event_ids:
        return []
    query = (
        sa.select(PermissionState)
        .where(
            PermissionState.contact_id == contact.id,
            PermissionState.channel == EMAIL,
            PermissionState.consent_event_id.in_(list(event_ids)),
            PermissionState.consent_since.is_not(None),
        )
        .order_by(PermissionState.topic)
    )
    return [row.topic for row in db.session.scalars(query.with_for_update() if lock else query)]


def undo_signup(
    contact: Contact, event_ids: Sequence[int], evidence: Evidence, at: datetime
) -> list[str]:
    """The person pressed "Undo" behind the link in the notice of a signup that a
    form recorded as consent at once (R8): each of those consents still standing
    is withdrawn, by the person, from the emailed link (R9). Returns the topics.

    The link proves the address, so this is the owner's own "no": a later form
    cannot open the topic at once again, only their confirmation can.
    Repeating it records nothing. Does not commit.
    """
    topics = undoable_topics(contact, event_ids, lock=True)
    for key in topics:
        record(
            contact,
            EventKind.WITHDRAWN,
            actor=PERSON,
            source="email_link",
            at=at,
            topic=key,
            channel=EMAIL,
            basis=Basis.CONSENT.value,
            evidence=evidence,
            source_ref="signup_notice",
            note="Undone through the link in the email that told of the signup.",
        )
    return topics


def request_topics(
    contact: Contact,
    topics: Sequence[str],
    source: str,
    evidence: Evidence,
    at: datetime,
    *,
    actor: Actor = PERSON,
) -> SubscriptionRequest | None:
    """Record ``requested`` per topic and open (or extend) the contact's one open request.

    ``actor`` is who asked: the person (a form, the preference centre), or
    staff asking the person to confirm again (R24), which is no interaction
    of the person's and keeps no data alive.

    The insert may fail on ``open_for_contact`` when another form posts the same
    address at the same moment; the caller retries its whole transaction.
    None for a restricted contact (GDPR art. 18): nothing is recorded and no
    confirmation is owed, since the yes it asks for could not be taken.
    """
    if contact.is_restricted:
        return None
    for key in topics:
        record_request(contact, key, actor=actor, source=source, at=at, evidence=evidence)
    return open_request(contact, topics, at)


def record_request(
    contact: Contact,
    topic: str,
    *,
    actor: Actor,
    source: str,
    at: datetime,
    evidence: Evidence,
    channel: str = EMAIL,
) -> ConsentEvent:
    """One ``requested`` event: someone asked for consent to ``topic``, with the
    evidence of what was shown (R5, R23), naming the form it came from. Does not
    commit."""
    return record(
        contact,
        EventKind.REQUESTED,
        actor=actor,
        source=source,
        at=at,
        topic=topic,
        channel=channel,
        basis=Basis.CONSENT.value,
        evidence=evidence,
        source_ref=evidence.form_id,
    )


def open_request(contact: Contact, topics: Sequence[str], at: datetime) -> SubscriptionRequest:
    """The contact's one open request, opened or extended with ``topics`` (the
    ``requested`` events are the caller's to record). Does not commit."""
    request = db.session.scalar(
        sa.select(SubscriptionRequest)
        .where(SubscriptionRequest.open_for_contact == contact.id)
        .with_for_update()
    )
    if request is None:
        request = SubscriptionRequest(
            contact_id=contact.id, open_for_contact=contact.id, topics="", created_at=at
        )
        db.session.add(request)
    merged = list(dict.fromkeys([*request.topic_keys, *topics]))
    request.topics = ",".join(merged)
    db.session.flush()
    return request


def open_request_of(contact: Contact) -> SubscriptionRequest | None:
    """The contact's open request, if any (read only)."""
    return db.session.scalar(
        sa.select(SubscriptionRequest).where(SubscriptionRequest.open_for_contact == contact.id)
    )


@dataclass
class ConfirmOutcome:
    contact: Contact
    request: SubscriptionRequest
    already_confirmed: bool
    topics: list[str]
    # Nothing was recorded because processing is restricted (GDPR art. 18); the
    # request stays open, so the link confirms once the restriction is lifted.
    restricted: bool = False

    @property
    def recorded(self) -> bool:
        return not (self.already_confirmed or self.restricted)


def get_request(request_id: int) -> SubscriptionRequest:
    request = db.session.get(SubscriptionRequest, request_id)
    if request is None:
        # The contact was erased since the email was sent.
        raise LinkInvalid("This link no longer works.")
    return request


def confirm_subscription(request_id: int, evidence: Evidence, at: datetime) -> ConfirmOutcome:
    """R7: the person confirmed by pressing the button behind the emailed link.

    Single use: a second confirmation records nothing and reports it. This is
    the only way back for an address that unsubscribed or objected: the
    ledger first records that the objection and the suppression were lifted
    by the person, then the consent. While the contact is restricted (GDPR
    art. 18) nothing is recorded and the request stays open. Does not commit.
    """
    request = db.session.get(SubscriptionRequest, request_id, with_for_update=True)
    if request is None:
        raise LinkInvalid("This link no longer works.")
    contact = crm.get_contact(request.contact_id)
    if request.is_confirmed:
        return ConfirmOutcome(contact, request, True, request.topic_keys)
    if contact.is_restricted:
        return ConfirmOutcome(contact, request, False, request.topic_keys, restricted=True)
    # The emailed link confirms an address: it lifts an objection to every
    # channel or to email, never one to phone only (X6).
    objected_channels = db.session.scalars(
        sa.select(PermissionState.channel)
        .where(
            PermissionState.contact_id == contact.id,
            PermissionState.topic == ALL,
            PermissionState.channel.in_((ALL, EMAIL)),
            PermissionState.objected_since.is_not(None),
        )
        .order_by(PermissionState.channel)
    ).all()
    ref = f"subscription_request:{request.id}"
    for channel in objected_channels:
        record(
            contact,
            EventKind.OBJECTION_LIFTED,
            actor=PERSON,
            source=DOUBLE_OPT_IN,
            at=at,
            channel=channel,
            evidence=evidence,
            source_ref=ref,
            note="The person confirmed a new subscription through the emailed link.",
        )
    # Its own entry only: a confirmation at anna+x@ never lifts anna@'s "no".
    if own_suppression(contact.email) is not None:
        record(
            contact,
            EventKind.UNSUPPRESSED,
            actor=PERSON,
            source=DOUBLE_OPT_IN,
            at=at,
            evidence=evidence,
            source_ref=ref,
        )
    for key in request.topic_keys:
        record(
            contact,
            EventKind.CONFIRMED,
            actor=PERSON,
            source=DOUBLE_OPT_IN,
            at=at,
            topic=key,
            channel=EMAIL,
            basis=Basis.CONSENT.value,
            evidence=_as_shown_at_request(evidence, contact.id, key, request.created_at),
            source_ref=ref,
        )
    # The link was mailed to the address and its owner opened it: the address
    # works, whatever bounced before (docs/bounces.md).
    note_address_works(
        contact,
        actor=PERSON,
        source=DOUBLE_OPT_IN,
        at=at,
        note="The person confirmed a link mailed to the address.",
        source_ref=ref,
    )
    request.confirmed_at = at
    request.open_for_contact = None
    return ConfirmOutcome(contact, request, False, request.topic_keys)


def _as_shown_at_request(
    evidence: Evidence, contact_id: int, topic: str, since: datetime
) -> Evidence:
    """The confirmation's evidence with the policy version and wording the person
    was shown when they asked (R23): what they agreed to is the form's sentence
    under the version it named, not whatever version is current when they
    click. Read from the latest ``requested`` event of this request's topic,
    the one written while the request was open: ``recorded_at`` (when it was
    written) is no earlier than the request's opening, even for a caller's
    signup that happened before it (``occurred_at``, the caller's
    ``obtained_at``) or a topic added to the open request later; an event
    that also occurred after the opening counts as well (a form that passes
    its own time). The click's own address, browser and time stay the
    confirmation's."""
    asked = db.session.execute(
        sa.select(ConsentEvent.policy_version, ConsentEvent.wording_hash)
        .where(
            ConsentEvent.contact_id == contact_id,
            ConsentEvent.kind == EventKind.REQUESTED.value,
            ConsentEvent.topic == topic,
            ConsentEvent.channel == EMAIL,
            sa.or_(ConsentEvent.recorded_at >= since, ConsentEvent.occurred_at >= since),
        )
        .order_by(ConsentEvent.id.desc())
        .limit(1)
    ).first()
    if asked is None or asked.policy_version is None:
        return evidence
    return replace(evidence, policy_version=asked.policy_version, wording_hash=asked.wording_hash)


class Scope(enum.StrEnum):
    TOPIC = "topic"
    ALL = "all"
    OBJECT = "object"


def unsubscribe(
    contact: Contact,
    scope: Scope,
    *,
    topic: str | None,
    source: str,
    evidence: Evidence,
    at: datetime,
) -> list[ConsentEvent]:
    """Double opt-out (R6, R7, R9): the link proved the address, the POST is the act.

    ``topic`` ends one topic by email; ``all`` ends all marketing and
    ``object`` objects to all direct marketing (GDPR art. 21(3)); both put
    the address on the suppression list so that it outlives erasure (R22).
    Repeating it records nothing new. Does not commit.
    """
    events: list[ConsentEvent] = []

    def add(kind: EventKind, **details: Any) -> None:
        events.append(
            record(contact, kind, actor=PERSON, source=source, at=at, evidence=evidence, **details)
        )

    if scope is Scope.TOPIC:
        if topic is None or topic == ALL:
            raise InvalidInput("Choose a topic.", fields={"topic": ["Required."]})
        current_policy().topic(topic)
        if not _is_topic_off(contact, topic):
            add(EventKind.UNSUBSCRIBED, topic=topic, channel=EMAIL)
        return events
    blanket = db.session.get(PermissionState, (contact.id, ALL, ALL))
    if scope is Scope.ALL:
        if not _is_all_off(contact, blanket):
            add(EventKind.UNSUBSCRIBED)
        reason = "unsubscribed"
    else:
        if not _has_objected(blanket):
            add(EventKind.OBJECTED, received_via="web")
        reason = "objection"
    # Its own entry, even when its mailbox's blocks it already: it must
    # outlive a later lift of the mailbox's.
    if own_suppression(contact.email) is None:
        add(EventKind.SUPPRESSED, note=reason)
    return events


def _is_topic_off(contact: Contact, topic: str) -> bool:
    state = db.session.get(PermissionState, (contact.id, topic, EMAIL))
    return state is not None and state.unsubscribed_since is not None


def _is_all_off(contact: Contact, blanket: PermissionState | None) -> bool:
    """All marketing is off, and no consent given since brought a topic back."""
    if blanket is None or blanket.unsubscribed_since is None:
        return False
    newest_consent = db.session.scalar(
        sa.select(sa.func.max(PermissionState.consent_since)).where(
            PermissionState.contact_id == contact.id
        )
    )
    return newest_consent is None or newest_consent <= blanket.unsubscribed_since


def _has_objected(blanket: PermissionState | None) -> bool:
    return blanket is not None and blanket.objected_since is not None


@dataclass(frozen=True)
class OptOuts:
    """What a contact has already turned off by email: the choices for which
    ``unsubscribe`` would record nothing new, so that the unsubscribe page can
    say so instead of offering them again."""

    topics: frozenset[str]
    all_marketing: bool
    # GDPR art. 21(3): an objection ends all direct marketing, whatever else is on.
    objected: bool

    def covers(self, topics: Sequence[str]) -> bool:
        """Whether these topics are off already, one by one or with everything."""
        return (
            self.objected or self.all_marketing or (bool(topics) and self.topics.issuperset(topics))
        )


def opt_outs_of(contact: Contact, topics: Sequence[str]) -> OptOuts:
    """Which of ``topics``, and whether all marketing, ``contact`` has turned off."""
    blanket = db.session.get(PermissionState, (contact.id, ALL, ALL))
    return OptOuts(
        topics=frozenset(t for t in topics if _is_topic_off(contact, t)),
        all_marketing=_is_all_off(contact, blanket),
        objected=_has_objected(blanket),
    )


@dataclass(frozen=True)
class TopicPreference:
    key: str
    label: str
    on: bool
    pending: bool
    reason: str


def preferences_of(contact: Contact, at: datetime | None = None) -> list[TopicPreference]:
    """Each topic as the preference centre shows it, from the decision itself."""
    policy = current_policy()
    lang = normalise_language(contact.language)
    decisions = _decisions(contact, list(policy.marketing_topics), at or utcnow())
    return [
        TopicPreference(
            key=key,
            label=policy.topic(key).label(lang),
            on=decision.allowed,
            pending=decision.reason is Reason.PENDING_CONFIRMATION,
            reason=decision.reason.value,
        )
        for key, decision in decisions.items()
    ]


def apply_preferences(
    contact: Contact, wanted: Sequence[str], evidence: Evidence, at: datetime
) -> tuple[list[str], list[str]]:
    """Turn topics off at once; return (turned off, to turn on).

    Turning a topic on is a new consent: the caller sends a double opt-in for
    those, so that a forwarded preferences link cannot subscribe anyone.
    Does not commit.
    """
    policy = current_policy()
    for key in wanted:
        policy.topic(key)
    current = {p.key: p for p in preferences_of(contact, at)}
    off = [key for key, p in current.items() if p.on and key not in wanted]
    on = [key for key in wanted if key in current and not current[key].on]
    for key in off:
        unsubscribe(
            contact, Scope.TOPIC, topic=key, source="preference_centre", evidence=evidence, at=at
        )
    return off, [key for key in on if Basis.CONSENT in policy.topic(key).bases]
