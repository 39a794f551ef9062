"""Consent that another system says a person gave (the API, a CRM sync): R7, R8, X6.

A caller's word is not the person's confirmation. Where a form would need
the double opt-in (a country of R8, an unknown country, a topic that always
needs it), the consent is recorded as ``requested`` with the caller's
evidence and the person gets the same confirmation email a signup sends;
until they press its button the decision is ``pending_confirmation``. Where
the person said no (unsubscribed, objected, suppressed), it is the same
whatever the caller says, and whatever the country: only the person's own
confirmation reopens what they closed (X6). A caller that ran the double
opt-in itself may say so only with the confirming event's evidence (when,
from which IP address, the confirmation message's id); the ledger records it
as ``external_confirmation``, so that it never reads as one this service
verified.

The email itself is the mailing layer's: ``kernel.signals.confirmation_owed``
asks for it inside the caller's transaction.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from consent.evidence import Evidence
from consent.ledger import OBJECTION_NOTE, record
from consent.models import Basis, ConsentEvent, EventKind, PermissionState
from consent.policy import Reason, decide, standing_of
from consent.subscriptions import open_request, open_request_of, record_request
from consent.suppression import find_suppression
from consent.topics import current_policy
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.errors import InvalidInput
from kernel.signals import confirmation_owed
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

EMAIL = "email"
# The ledger source of a double opt-in another system ran and reported with
# its evidence. Not a person-verified source (consent.projection): only a
# confirmation this service verified reopens a "no".
EXTERNAL_CONFIRMATION = "external_confirmation"

# The person's own "no", which only their own confirmation undoes (X6).
_SAID_NO = frozenset({Reason.SUPPRESSED, Reason.OBJECTION, Reason.UNSUBSCRIBED})


@dataclass(frozen=True)
class ExternalConfirmation:
    """The confirming event of a double opt-in another system ran (R7): when the
    person confirmed, from which IP address, and the id of the confirmation
    email they answered."""

    confirmed_at: datetime
    ip_address: str
    message_id: str
    user_agent: str | None = None

    def validate(self, obtained_at: datetime | None) -> None:
        problems: dict[str, list[str]] = {}
        if not self.message_id.strip():
            problems["message_id"] = ["Required: the id of the confirmation email."]
        try:
            ipaddress.ip_address(self.ip_address)
        except ValueError:
            problems["ip_address"] = ["Not an IP address."]
        if self.confirmed_at > utcnow():
            problems["confirmed_at"] = ["In the future."]
        elif obtained_at is not None and self.confirmed_at < obtained_at:
            problems["confirmed_at"] = ["Before the signup (evidence.obtained_at)."]
        if problems:
            raise InvalidInput(
                "The confirmation's evidence is not valid; see fields.",
                code="invalid_confirmation",
                fields={"basis": {"confirmation": problems}},
            )


class TopicStatus(enum.StrEnum):
    CONSENT = "consent"
    PENDING_CONFIRMATION = "pending_confirmation"
    # A "no" on a channel other than email: no emailed link can confirm a phone
    # call, so nothing is recorded and the person's "no" stands (X6).
    REFUSED = "refused"


class ConfirmationEmail(enum.StrEnum):
    # Queued by this call, in its transaction.
    QUEUED = "queued"
    # The topics already awaited the person's answer to an earlier email.
    ALREADY_SENT = "already_sent"
    # The mailbox had its share of confirmation emails (or processing is
    # restricted): the request stays open, and the next email confirms it.
    HELD_BACK = "held_back"


@dataclass(frozen=True)
class TopicOutcome:
    topic: str
    status: TopicStatus
    # Why: recorded, already_held, confirmed_elsewhere, double_opt_in_required,
    # person_said_no.
    reason: str


@dataclass
class ConsentOutcome:
    """What a registered consent became, topic by topic, and the email it caused."""

    topics: list[TopicOutcome] = field(default_factory=list)
    confirmation_email: ConfirmationEmail | None = None
    request_id: int | None = None
    events: list[ConsentEvent] = field(default_factory=list)

    @property
    def status(self) -> TopicStatus:
        """Pending while any topic awaits the person; else refused where any topic
        was; else consent."""
        for status in (TopicStatus.PENDING_CONFIRMATION, TopicStatus.REFUSED):
            if any(t.status is status for t in self.topics):
                return status
        return TopicStatus.CONSENT

    @property
    def pending(self) -> list[str]:
        return [t.topic for t in self.topics if t.status is TopicStatus.PENDING_CONFIRMATION]


def claim_consent(
    contact: Contact,
    topics: Sequence[str],
    *,
    actor: Actor,
    source: str,
    obtained_at: datetime,
    evidence: Evidence,
    confirmation: ExternalConfirmation | None = None,
    channel: str = EMAIL,
) -> ConsentOutcome:
    """Record a consent another system reports, as R7, R8 and X6 allow. Does not commit.

    Per topic, in order: the person said no -> ``requested``, and the
    confirmation email (their own confirmation is the only way back; the
    caller's source and evidence do not change that); consent already held ->
    nothing new; the double opt-in is required (R8: the contact's country,
    else its company's, is listed or unknown, or the topic always needs it)
    -> with ``confirmation``, ``requested`` then ``confirmed`` from
    ``external_confirmation``; without it ``requested`` and the confirmation
    email (a caller cannot claim a double opt-in by its ``source``: the
    names of the service's own acts are refused, consent.projection.RESERVED_SOURCES);
    otherwise -> ``confirmed`` at once, as a ticked box on a form (with
    ``confirmation``, recorded as confirmed elsewhere too). A topic
    already waiting in the contact's open request is not asked again, so a
    repeated sync sends one email, not one per sync.

    A topic that is not marketing (``marketing = false``: web tracking, R19)
    is a purpose, not a newsletter: R8's double opt-in and the person's
    unsubscribe do not apply to it, so its consent is recorded at once and no
    email is sent; only an objection to direct marketing refuses it (R11:
    no profiling after it; status ``refused``, nothing recorded).

    A consent for another ``channel`` (a phone call) is decided on that
    channel. The double opt-in confirms an email address, so R8 does not
    apply to it and no email can reopen it: after the person's "no" on that
    channel it is refused (nothing recorded), otherwise recorded at once.
    """
    policy = current_policy()
    # The person's own "no" counts even where a hard bounce decides first.
    standing = dataclasses.replace(standing_of(contact), hard_bounced_at=None)
    now = utcnow()
    outcome = ConsentOutcome()
    to_ask: list[str] = []
    for key in topics:
        decision = decide(
            standing,
            email=contact.email,
            topic=policy.topic(key),
            channel=channel,
            at=now,
            policy=policy,
        )
        state = db.session.get(PermissionState, (contact.id, key, channel))
        marketing = key in policy.marketing_topics
        if not marketing and _objected(contact, decision.reason):
            # GDPR art. 21(2)-(3), R11: after an objection to direct marketing
            # nothing is processed for it, profiling included; linking web
            # visits for marketing automation is profiling.
            outcome.topics.append(TopicOutcome(key, TopicStatus.REFUSED, "person_objected"))
        elif marketing and decision.reason in _SAID_NO and channel != EMAIL:
            outcome.topics.append(TopicOutcome(key, TopicStatus.REFUSED, "person_said_no"))
        elif marketing and decision.reason in _SAID_NO:
            to_ask.append(key)
            outcome.topics.append(
                TopicOutcome(key, TopicStatus.PENDING_CONFIRMATION, "person_said_no")
            )
        elif state is not None and state.consent_since is not None:
            outcome.topics.append(TopicOutcome(key, TopicStatus.CONSENT, "already_held"))
        elif confirmation is not None:
            outcome.events += _confirmed_elsewhere(
                contact, key, channel, actor, source, obtained_at, evidence, confirmation
            )
            outcome.topics.append(TopicOutcome(key, TopicStatus.CONSENT, "confirmed_elsewhere"))
        elif (
            marketing
            and channel == EMAIL
            and policy.requires_double_opt_in_for(key, standing.country)
        ):
            to_ask.append(key)
            outcome.topics.append(
                TopicOutcome(key, TopicStatus.PENDING_CONFIRMATION, "double_opt_in_required")
            )
        else:
            outcome.events.append(
                record(
                    contact,
                    EventKind.CONFIRMED,
                    actor=actor,
                    source=source,
                    at=obtained_at,
                    topic=key,
                    channel=channel,
                    basis=Basis.CONSENT.value,
                    evidence=evidence,
                )
            )
            outcome.topics.append(TopicOutcome(key, TopicStatus.CONSENT, "recorded"))
    if to_ask:
        _ask_the_person(contact, to_ask, actor, source, obtained_at, evidence, outcome)
    return outcome


def _objected(contact: Contact, reason: Reason) -> bool:
    """The person objected to direct marketing: their own ledger says so, or
    their address's suppression entry came from an objection (R22)."""
    if reason is Reason.OBJECTION:
        return True
    if reason is not Reason.SUPPRESSED:
        return False
    entry = find_suppression(contact.email)
    return entry is not None and entry.reason == OBJECTION_NOTE


def _confirmed_elsewhere(
    contact: Contact,
    topic: str,
    channel: str,
    actor: Actor,
    source: str,
    obtained_at: datetime,
    evidence: Evidence,
    confirmation: ExternalConfirmation,
) -> list[ConsentEvent]:
    """The signup as the caller recorded it, then its confirmation with the
    confirming event's own evidence, under the wording the person signed up to."""
    asked = record_request(
        contact,
        topic,
        actor=actor,
        source=source,
        at=obtained_at,
        evidence=evidence,
        channel=channel,
    )
    confirmed = record(
        contact,
        EventKind.CONFIRMED,
        actor=actor,
        source=EXTERNAL_CONFIRMATION,
        at=confirmation.confirmed_at,
        topic=topic,
        channel=channel,
        basis=Basis.CONSENT.value,
        evidence=Evidence(
            ip_address=confirmation.ip_address,
            user_agent=confirmation.user_agent,
            policy_version=evidence.policy_version,
            wording_hash=evidence.wording_hash,
            form_id=evidence.form_id,
            language=evidence.language,
        ),
        source_ref=f"message-id:{confirmation.message_id}",
        note=f"Double opt-in confirmed outside this service, as reported by {source}.",
    )
    return [asked, confirmed]


def _ask_the_person(
    contact: Contact,
    topics: list[str],
    actor: Actor,
    source: str,
    obtained_at: datetime,
    evidence: Evidence,
    outcome: ConsentOutcome,
) -> None:
    """``requested`` with the caller's evidence, the contact's open request
    extended, and the confirmation email asked of the mailing layer."""
    existing = open_request_of(contact)
    new = [k for k in topics if existing is None or k not in existing.topic_keys]
    if new:
        # Opened (or extended) first: each ``requested`` below is written
        # after the request's opening, which is how the confirmation finds
        # the caller's evidence (consent.subscriptions._as_shown_at_request).
        request = open_request(contact, new, utcnow())
    else:
        assert existing is not None  # every topic was already in it
        request = existing
    for key in new:
        outcome.events.append(
            record_request(
                contact, key, actor=actor, source=source, at=obtained_at, evidence=evidence
            )
        )
    outcome.request_id = request.id
    if not new and request.emails_queued:
        outcome.confirmation_email = ConfirmationEmail.ALREADY_SENT
        return
    answers = confirmation_owed.send(signal_sender(), request_id=request.id)
    queued = any(value is not None for _receiver, value in answers)
    outcome.confirmation_email = ConfirmationEmail.QUEUED if queued else ConfirmationEmail.HELD_BACK
