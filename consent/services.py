"""Use cases of the consent layer: bases, objections and decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent import ledger
from consent.evidence import Evidence
from consent.ledger import record
from consent.models import (
    ALL,
    OBJECTION_CHANNELS,
    Basis,
    ConsentEvent,
    EventKind,
    InterestKind,
    PermissionState,
)
from consent.policies import check_consent_version
from consent.policy import Decision, Reason, decide, standing_of, standings_by_email
from consent.suppression import find_suppression, own_suppression
from consent.topics import current_policy
from crm import services as crm
from crm.models import Activity, Contact
from extensions import db
from kernel.access import Actor
from kernel.addresses import normalise_email
from kernel.errors import Conflict, InvalidInput
from kernel.signals import contact_rectified, decisions_changed
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow


@dataclass(frozen=True)
class BasisInput:
    """The legal basis a contact is registered with (R1-R3, R5)."""

    type: Basis
    source: str
    interest_kind: InterestKind | None = None
    topics: Sequence[str] = ()
    obtained_at: datetime | None = None
    evidence: Evidence = field(default_factory=Evidence)

    def validate(self) -> None:
        if not self.source.strip():
            raise InvalidInput(
                "A basis needs a source.", fields={"basis": {"source": ["Required."]}}
            )
        if self.type is Basis.LEGITIMATE_INTEREST and self.interest_kind is None:
            raise InvalidInput(
                "Legitimate interest needs its kind: customer or industry_list.",
                code="missing_interest_kind",
                fields={"basis": {"kind": ["Required for legitimate_interest."]}},
            )
        if self.type is Basis.CONSENT:
            if not self.topics:
                raise InvalidInput(
                    "Consent is given to topics; name at least one.",
                    fields={"basis": {"topics": ["Required for consent."]}},
                )
            if self.obtained_at is None or not (
                self.evidence.wording_hash and self.evidence.policy_version
            ):
                raise InvalidInput(
                    "Consent needs its evidence: obtained_at, the policy version and the "
                    "wording (or its hash) the person agreed to.",
                    code="missing_evidence",
                    fields={
                        "basis": {"evidence": ["obtained_at, policy_version, wording required."]}
                    },
                )
            if self.obtained_at > utcnow():
                raise InvalidInput(
                    "Consent cannot be obtained in the future.",
                    fields={"basis": {"evidence": {"obtained_at": ["In the future."]}}},
                )
            check_consent_version(self.evidence.policy_version)
            policy = current_policy()
            for topic in self.topics:
                if Basis.CONSENT not in policy.topic(topic).bases:
                    raise InvalidInput(
                        f"Topic {topic!r} does not take consent.", code="basis_not_admitted"
                    )


def register_contact(
    actor: Actor,
    email: str,
    profile: dict[str, Any],
    company: crm.CompanyInput | None = None,
    basis: BasisInput | None = None,
) -> tuple[Contact, bool]:
    """Create or update a contact by address, with the basis it may be marketed on.

    A suppressed address is still stored (a customer contact must be reachable
    for service mail), but the ledger notes it and it is never allowed (R22).
    An objection or unsubscribe is never undone here: only the person can.
    A restricted contact (GDPR art. 18) takes no edit and no basis: Conflict
    ``restricted``.
    """
    if basis is not None:
        basis.validate()
    contact, created = crm.upsert_contact(email, profile, company)
    if created and find_suppression(contact.email) is not None:
        record(
            contact,
            EventKind.CREATED_WHILE_SUPPRESSED,
            actor=actor,
            source="api" if actor.kind == "token" else actor.kind,
            note="Address is on the suppression list; it will not be marketed to.",
        )
    if basis is not None:
        grant_basis(contact, basis, actor)
        if created and basis.interest_kind is not None:
            # GDPR art. 14: the data did not come from the person (a list, or
            # their employer, our customer); within a month, or with the first
            # email, they must hear who we are and where we got their address.
            contact.art14_notice_owed_since = utcnow()
    crm.audit(actor, "contact.create" if created else "contact.update", contact.id)
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact.id, kind="basis")
    return contact, created


def grant_basis(contact: Contact, basis: BasisInput, actor: Actor) -> list[ConsentEvent]:
    """Record a basis unless the projection already holds it, so that a repeated
    sync or import adds nothing to the ledger. Does not commit.

    Refused (Conflict ``restricted``) while processing is restricted, even a
    basis already held: the caller learns the contact takes no change now
    rather than a 200 that reads like one (GDPR art. 18)."""
    if contact.is_restricted:
        raise crm.refusal_while_restricted()
    events = []
    if basis.type is Basis.LEGITIMATE_INTEREST:
        state = db.session.get(PermissionState, (contact.id, ALL, ALL))
        attribute = (
            "customer_since"
            if basis.interest_kind is InterestKind.CUSTOMER
            else "industry_list_since"
        )
        if state is None or getattr(state, attribute) is None:
            events.append(
                record(
                    contact,
                    EventKind.BASIS_GRANTED,
                    actor=actor,
                    source=basis.source,
                    basis=Basis.LEGITIMATE_INTEREST.value,
                    interest_kind=basis.interest_kind.value if basis.interest_kind else None,
                )
            )
        if (
            basis.interest_kind is InterestKind.CUSTOMER
            and contact.company is not None
            and contact.company.customer_since is None
        ):
            contact.company.customer_since = utcnow().date()
        return events
    for topic in basis.topics:
        state = db.session.get(PermissionState, (contact.id, topic, "email"))
        if state is not None and state.consent_since is not None:
            continue
        events.append(
            record(
                contact,
                EventKind.CONFIRMED,
                actor=actor,
                source=basis.source,
                at=basis.obtained_at,
                topic=topic,
                channel="email",
                basis=Basis.CONSENT.value,
                evidence=basis.evidence,
            )
        )
    return events


def record_objection(
    actor: Actor,
    contact_id: int,
    *,
    channel: str = ALL,
    received_via: str | None = None,
    note: str | None = None,
    source: str = "staff",
) -> ConsentEvent:
    """GDPR art. 21(2)-(3): record an objection to direct marketing.

    It ends marketing on every basis from the moment this transaction commits.
    An objection to all channels also puts the address on the suppression list
    so that it outlives erasure (R22).
    """
    if channel != ALL:
        current_policy().check_channel(channel)
    if received_via is not None and received_via not in OBJECTION_CHANNELS:
        raise InvalidInput(
            f"received_via must be one of: {', '.join(OBJECTION_CHANNELS)}.",
            fields={"received_via": ["Unknown."]},
        )
    event, email = ledger.record_objection(
        contact_id,
        actor=actor,
        source=source,
        channel=channel,
        received_via=received_via,
        note=note,
    )
    if channel == ALL and own_suppression(email) is None:
        contact = crm.get_contact(contact_id)
        record(contact, EventKind.SUPPRESSED, actor=actor, source=source, note="objection")
    crm.audit(actor, "objection.record", contact_id, detail=received_via)
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind="objected")
    return event


def decisions_for_contact(contact: Contact, at: datetime | None = None) -> list[Decision]:
    """The decision for every marketing topic and channel."""
    policy = current_policy()
    standing = standing_of(contact)
    moment = at or utcnow()
    return [
        decide(
            standing, email=contact.email, topic=topic, channel=channel, at=moment, policy=policy
        )
        for topic in policy.marketing_topics.values()
        for channel in policy.channels
    ]


def check_permissions(
    emails: Sequence[str],
    topic_key: str,
    channel: str = "email",
    at: datetime | None = None,
    actor: Actor | None = None,
) -> list[Decision]:
    """Decisions for many addresses at once, in input order, from one joined read.

    A malformed address cannot be a known contact: it is answered ``unknown_contact``.
    With an actor, the lookup is audited (R25): one entry per call with the count.
    """
    policy = current_policy()
    topic = policy.topic(topic_key)
    policy.check_channel(channel)
    normalised: list[str] = []
    for raw in emails:
        try:
            normalised.append(normalise_email(raw))
        except InvalidInput:
            normalised.append(raw if isinstance(raw, str) else "")
    standings = standings_by_email(normalised)
    moment = at or utcnow()
    if actor is not None:
        known = [s.contact_id for s in standings.values()]
        crm.audit(
            actor,
            "permissions.check",
            known[0] if len(known) == 1 and len(normalised) == 1 else None,
            detail=f"topic={topic.key} channel={channel} addresses={len(normalised)} "
            f"known={len(known)}",
        )
        db.session.commit()
    return [
        decide(
            standings.get(address),
            email=address,
            topic=topic,
            channel=channel,
            at=moment,
            policy=policy,
        )
        for address in normalised
    ]


def list_events(contact_id: int, actor: Actor | None = None) -> list[ConsentEvent]:
    """The ledger of a contact, oldest first; with an actor, the lookup is audited (R25)."""
    crm.get_contact(contact_id)
    events = list(
        db.session.scalars(
            sa.select(ConsentEvent)
            .where(ConsentEvent.contact_id == contact_id)
            .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
        )
    )
    if actor is not None:
        crm.audit(actor, "ledger.read", contact_id, detail=f"events={len(events)}")
        db.session.commit()
    return events


# Fields whose change can change a decision: the country (legitimate interest
# is per country), the company (customer relationship), the address (suppression).
_DECIDING_FIELDS = frozenset({"country", "company", "email"})


def _on_contact_rectified(sender: Any, contact_id: int, fields: tuple[str, ...]) -> None:
    if _DECIDING_FIELDS.intersection(fields):
        decisions_changed.send(sender, contact_id=contact_id, kind="rectified")


def connect_signals() -> None:
    """Announce CRM changes that can change a decision as ``decisions_changed``."""
    contact_rectified.connect(_on_contact_rectified)


def _source_of(actor: Actor) -> str:
    return "api" if actor.kind == "token" else "staff"


def restrict_processing(
    actor: Actor, contact_id: int, note: str | None = None, received_via: str | None = None
) -> ConsentEvent:
    """GDPR art. 18: restrict processing. No marketing and no edits until lifted."""
    contact = crm.get_contact(contact_id)
    if contact.is_restricted:
        raise Conflict("Processing of this contact is already restricted.", code="restricted")
    if received_via is not None and received_via not in OBJECTION_CHANNELS:
        raise InvalidInput(
            f"received_via must be one of: {', '.join(OBJECTION_CHANNELS)}.",
            fields={"received_via": ["Unknown."]},
        )
    event = record(
        contact,
        EventKind.RESTRICTED,
        actor=actor,
        source=_source_of(actor),
        received_via=received_via,
        note=note or None,
    )
    crm.audit(actor, "contact.restrict", contact.id, detail=received_via)
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact.id, kind=EventKind.RESTRICTED.value)
    return event


def lift_restriction(actor: Actor, contact_id: int, note: str | None = None) -> ConsentEvent:
    """GDPR art. 18(3): lift a restriction; the decision returns to what the ledger says."""
    contact = crm.get_contact(contact_id)
    if not contact.is_restricted:
        raise Conflict("Processing of this contact is not restricted.", code="not_restricted")
    event = record(
        contact, EventKind.UNRESTRICTED, actor=actor, source=_source_of(actor), note=note or None
    )
    crm.audit(actor, "contact.unrestrict", contact.id)
    db.session.commit()
    decisions_changed.send(
        signal_sender(), contact_id=contact.id, kind=EventKind.UNRESTRICTED.value
    )
    return event


@dataclass(frozen=True)
class ContactFile:
    """What a staff member sees about one contact: decisions with their evidence,
    the ledger and the activities."""

    contact: Contact
    decisions: list[Decision]
    events: list[ConsentEvent]
    activities: list[Activity]

    def evidence(self, decision: Decision) -> ConsentEvent | None:
        return evidence_for(decision, self.events)


def contact_file(actor: Actor, contact_id: int) -> ContactFile:
    """A contact's file for the staff page; the lookup is audited (R25)."""
    contact = crm.read_contact(actor, contact_id=contact_id)
    return ContactFile(
        contact=contact,
        decisions=decisions_for_contact(contact),
        events=list_events(contact.id),
        activities=crm.list_activities(contact.id),
    )


# The ledger event a staff member reads as the evidence for a decision that
# does not name one itself (R5).
_EVIDENCE_KINDS = {
    Reason.SUPPRESSED: (EventKind.SUPPRESSED, EventKind.CREATED_WHILE_SUPPRESSED),
    Reason.RESTRICTED: (EventKind.RESTRICTED,),
    Reason.UNDELIVERABLE: (EventKind.UNDELIVERABLE,),
    Reason.UNSUBSCRIBED: (EventKind.UNSUBSCRIBED, EventKind.WITHDRAWN),
    Reason.PENDING_CONFIRMATION: (EventKind.REQUESTED,),
}


def evidence_for(decision: Decision, events: Sequence[ConsentEvent]) -> ConsentEvent | None:
    """The event behind ``decision``: the one it names, else the latest event of
    the kind that explains its reason, on its topic and channel or on all."""
    if decision.event_id is not None:
        return next((e for e in events if e.id == decision.event_id), None)
    kinds = {k.value for k in _EVIDENCE_KINDS.get(decision.reason, ())}
    matching = [
        e
        for e in events
        if e.kind in kinds
        and e.topic in (ALL, decision.topic)
        and e.channel in (ALL, decision.channel)
    ]
    return max(matching, key=lambda e: (e.occurred_at, e.id), default=None)
