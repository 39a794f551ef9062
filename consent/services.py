"""Use cases of the consent layer: bases, objections and decisions."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent import bases, ledger
from consent.claims import ConsentOutcome, ExternalConfirmation, claim_consent
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
    PolicyVersion,
)
from consent.policies import check_consent_version, latest_major_version, version_published_at
from consent.policy import (
    Decision,
    Reason,
    Standing,
    decide,
    email_in_keys,
    standing_of,
    standings_beside,
    standings_by_email,
    standings_by_id,
    standings_of_rows,
)
from consent.projection import RESERVED_SOURCES
from consent.suppression import find_suppression, find_suppressions
from consent.topics import current_policy
from crm import bulk, external_ids
from crm import services as crm
from crm.models import Activity, AuditEntry, Company, Contact
from extensions import db
from kernel import metrics
from kernel.access import Actor, BearerToken, token_row
from kernel.addresses import normalise_email
from kernel.database import id_in
from kernel.errors import N_, Conflict, InvalidInput, NotFound
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
    # A double opt-in the caller ran itself, with the confirming event's evidence (R7).
    confirmation: ExternalConfirmation | None = None
    # The channel a consent was given for (the policy file's ``channels``): a
    # "yes" to email is no "yes" to a phone call, and the reverse (R2).
    channel: str = "email"

    def validate(self) -> None:
        if not self.source.strip():
            raise InvalidInput(
                N_("A basis needs a source."), fields={"basis": {"source": ["Required."]}}
            )
        if self.source.strip().lower() in RESERVED_SOURCES:
            # X6: these name the person's own acts through links this service
            # emailed; a caller claiming one is refused rather than believed.
            raise InvalidInput(
                f"The source {self.source.strip()!r} is reserved for what the person does "
                "through this service's own links (the double opt-in confirmation, "
                "unsubscribe links); name your own system instead, e.g. 'crm-sync'. A double "
                "opt-in your system ran is reported with basis.confirmation (its time, IP "
                "address and message id).",
                code="reserved_source",
                fields={"basis": {"source": ["Reserved."]}},
            )
        if self.confirmation is not None and self.type is not Basis.CONSENT:
            raise InvalidInput(
                N_("Only a consent is confirmed."),
                code="invalid_confirmation",
                fields={"basis": {"confirmation": ["Only with type consent."]}},
            )
        if self.type is Basis.LEGITIMATE_INTEREST and self.interest_kind is None:
            raise InvalidInput(
                N_("Legitimate interest needs its kind: customer or industry_list."),
                code="missing_interest_kind",
                fields={"basis": {"kind": ["Required for legitimate_interest."]}},
            )
        if self.type is Basis.CONSENT:
            if not self.topics:
                raise InvalidInput(
                    N_("Consent is given to topics; name at least one."),
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
                    N_("Consent cannot be obtained in the future."),
                    fields={"basis": {"evidence": {"obtained_at": ["In the future."]}}},
                )
            if self.confirmation is not None:
                self.confirmation.validate(self.obtained_at)
            check_consent_version(self.evidence.policy_version, self.evidence.wording_hash)
            policy = current_policy()
            if self.channel not in policy.channels:
                raise InvalidInput(
                    f"Unknown channel {self.channel!r}; consent is given for one of: "
                    f"{', '.join(policy.channels)}.",
                    code="unknown_channel",
                    fields={"basis": {"channel": ["Not a configured channel."]}},
                )
            for topic in self.topics:
                if Basis.CONSENT not in policy.topic(topic).bases:
                    raise InvalidInput(
                        f"Topic {topic!r} does not take consent.", code="basis_not_admitted"
                    )


@dataclass(frozen=True)
class Registration:
    """A registered contact; for a consent basis, what the consent became."""

    contact: Contact
    created: bool
    consent: ConsentOutcome | None = None


def register_contact(
    actor: Actor,
    email: str,
    profile: dict[str, Any],
    company: crm.CompanyInput | None = None,
    basis: BasisInput | None = None,
    external_ids: Mapping[str, str | None] | None = None,
) -> Registration:
    """Create or update a contact by address, with the basis it may be marketed on,
    and the ids other systems know it by (``external_ids``; Conflict
    ``external_id_taken`` when another contact holds one, nothing written).

    A suppressed address is still stored (a customer contact must be reachable
    for service mail), but the ledger notes it and it is never allowed (R22).
    An objection or unsubscribe is never undone here: only the person can.
    A consent goes through the person's double opt-in where a form's would
    (R7, R8) and wherever the person said no (X6): ``consent.claims``.
    A restricted contact (GDPR art. 18) takes no edit and no basis: Conflict
    ``restricted``.
    """
    if basis is not None:
        basis.validate()
    contact, created = crm.upsert_contact(email, profile, company, actor=actor, ids=external_ids)
    if created and find_suppression(contact.email) is not None:
        record(
            contact,
            EventKind.CREATED_WHILE_SUPPRESSED,
            actor=actor,
            source="api" if actor.kind == "token" else actor.kind,
            note="Address is on the suppression list; it will not be marketed to.",
        )
    outcome = None
    if basis is not None:
        outcome = grant_basis(contact, basis, actor)
    if created and contact.company is not None and contact.company.is_customer:
        # R1: a new contact of a customer company holds the company's basis;
        # the ledger shows it like any other (a moved contact: consent.bases).
        bases.grant_company_basis(
            sa.select(Contact.id).where(Contact.id == contact.id),
            actor,
            f"The contact joined company #{contact.company.id}, a customer since "
            f"{contact.company.customer_since}.",
            f"company:{contact.company.id}",
        )
    crm.audit(actor, "contact.create" if created else "contact.update", contact.id)
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact.id, kind="basis")
    return Registration(contact, created, outcome)


def register_new_contacts(
    actor: Actor,
    entries: Sequence[bulk.ContactInput],
    with_created: Callable[[dict[int, int]], None] | None = None,
) -> dict[int, int]:
    """``register_contact`` for a page of contacts without a basis (a CRM
    connector's page), set-based for those new here: {entry's index: contact id}.

    ``crm.bulk.create_contacts`` creates them with their companies and
    external ids. The same rules as one by one: an address on the
    suppression list is stored with the ledger's note that it will not be
    marketed to (R22); a contact of a customer company holds the company's
    basis (R1); each creation is audited (R25). One commit, then one
    ``decisions_changed`` naming them all. The entries it leaves out (known
    here, or refused: ``crm.bulk.create_contacts``) are the caller's to pass
    to ``register_contact`` one by one. ``with_created`` writes the caller's
    own rows about the new contacts in the same transaction (a connector's
    link to them), so that they commit together or not at all."""
    created = bulk.create_contacts(entries, actor)
    if not created:
        db.session.commit()
        return created
    ids = list(created.values())
    suppressed = find_suppressions({created[i]: normalise_email(entries[i].email) for i in created})
    if suppressed:
        ledger.record_set(
            sa.select(Contact.id).where(id_in(Contact.id, list(suppressed))),
            EventKind.CREATED_WHILE_SUPPRESSED,
            actor=actor,
            source="api" if actor.kind == "token" else actor.kind,
            note="Address is on the suppression list; it will not be marketed to.",
        )
    customers = db.session.execute(
        sa.select(Contact.id, Company.id, Company.customer_since)
        .join(Company, Company.id == Contact.company_id)
        .where(
            id_in(Contact.id, ids),
            Company.customer_since.is_not(None),
            Company.relationship_ended_at.is_(None),
        )
        .order_by(Company.id, Contact.id)
    ).all()
    for (company_id, since), rows in itertools.groupby(customers, lambda r: (r[1], r[2])):
        # R1: a new contact of a customer company holds the company's basis.
        bases.grant_company_basis(
            sa.select(Contact.id).where(id_in(Contact.id, [r[0] for r in rows])),
            actor,
            f"The contact joined company #{company_id}, a customer since {since}.",
            f"company:{company_id}",
        )
    crm.audit_many(actor, "contact.create", [(cid, None) for cid in ids])
    if with_created is not None:
        with_created(created)
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_ids=tuple(ids), kind="basis")
    return created


def grant_basis(contact: Contact, basis: BasisInput, actor: Actor) -> ConsentOutcome | None:
    """Record a basis unless the projection already holds it, so that a repeated
    sync or import adds nothing to the ledger. Does not commit. A consent is
    recorded as ``consent.claims.claim_consent`` allows; its outcome is returned.

    Refused (Conflict ``restricted``) while processing is restricted, even a
    basis already held: the caller learns the contact takes no change now
    rather than a 200 that reads like one (GDPR art. 18)."""
    if contact.is_restricted:
        raise crm.refusal_while_restricted()
    if basis.type is Basis.LEGITIMATE_INTEREST:
        state = db.session.get(PermissionState, (contact.id, ALL, ALL))
        attribute = (
            "customer_since"
            if basis.interest_kind is InterestKind.CUSTOMER
            else "industry_list_since"
        )
        first = state is None or getattr(state, attribute) is None
        if first:
            # GDPR art. 14: the data did not come from the person (a list, or
            # their employer, our customer); within a month, or with the first
            # email, they must hear who we are and where we got their address.
            crm.owe_art14_notice([contact.id])
        if (
            state is None
            or first
            or (attribute == "customer_since" and _only_company_granted(contact.id, state))
        ):
            record(
                contact,
                EventKind.BASIS_GRANTED,
                actor=actor,
                source=basis.source,
                basis=Basis.LEGITIMATE_INTEREST.value,
                interest_kind=basis.interest_kind.value if basis.interest_kind else None,
            )
        company = contact.company
        if (
            basis.interest_kind is InterestKind.CUSTOMER
            and company is not None
            and company.customer_since is None
        ):
            company.customer_since = utcnow().date()
            # The company's other contacts hold its basis from now on (R1).
            bases.grant_company_basis(
                sa.select(Contact.id).where(Contact.company_id == company.id),
                actor,
                f"The contact's company became a customer on {company.customer_since}.",
                f"company:{company.id}",
            )
        return None
    assert basis.obtained_at is not None  # BasisInput.validate
    return claim_consent(
        contact,
        basis.topics,
        actor=actor,
        source=basis.source,
        obtained_at=basis.obtained_at,
        evidence=basis.evidence,
        confirmation=basis.confirmation,
        channel=basis.channel,
    )


def _only_company_granted(contact_id: int, state: PermissionState) -> bool:
    """The customer basis the contact holds was granted only because its company
    is a customer (``consent.bases``): a caller's own grant is then still worth
    its event, as the source an art. 14 notice names. Once it is written, a
    repeated sync finds it and adds nothing."""
    return not db.session.scalar(
        sa.select(
            sa.exists().where(
                ConsentEvent.contact_id == contact_id,
                ConsentEvent.kind == EventKind.BASIS_GRANTED,
                ConsentEvent.interest_kind == InterestKind.CUSTOMER,
                ConsentEvent.source != "company",
                ConsentEvent.occurred_at >= state.customer_since,
            )
        )
    )


@dataclass(frozen=True)
class RecordedObjection:
    """The objection in force after ``record_objection``, and whether this call wrote it."""

    event: ConsentEvent
    created: bool


def record_objection(
    actor: Actor,
    contact_id: int,
    *,
    channel: str = ALL,
    received_via: str | None = None,
    note: str | None = None,
    source: str = "staff",
) -> RecordedObjection:
    """GDPR art. 21(2)-(3): record an objection to direct marketing.

    It ends marketing on every basis from the moment this transaction commits.
    It outlives erasure and purges (R22): ``consent.ledger.record_objection``
    puts the address on the suppression list (all channels) or keeps a "do
    not contact" entry for the channel, in the same transaction.

    An objection on the same channel already in force is "already so": its
    event is returned (``created`` False) and no second one is written, so an
    integrator's retry or a second call by the person changes no decision, no
    date (R11: the first objection stands) and sends no webhook. The lookup is
    audited all the same.
    """
    if channel != ALL:
        current_policy().check_channel(channel)
    if received_via is not None and received_via not in OBJECTION_CHANNELS:
        raise InvalidInput(
            N_("received_via must be one of: %(channels)s."),
            values={"channels": ", ".join(OBJECTION_CHANNELS)},
            fields={"received_via": ["Unknown."]},
        )
    in_force = ledger.objection_in_force(contact_id, channel)
    if in_force is not None:
        existing, email = in_force
        # R22 restated, should a "do not contact" entry have been dropped meanwhile.
        ledger.keep_objection_refusal(
            contact_id,
            email,
            channel=channel,
            actor=actor,
            source=source,
            at=utcnow(),
            received_via=received_via,
        )
        crm.audit(actor, "objection.repeat", contact_id, detail=received_via)
        db.session.commit()
        return RecordedObjection(existing, created=False)
    event, _email = ledger.record_objection(
        contact_id,
        actor=actor,
        source=source,
        channel=channel,
        received_via=received_via,
        note=note,
    )
    crm.audit(actor, "objection.record", contact_id, detail=received_via)
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind="objected")
    return RecordedObjection(event, created=True)


def record_withdrawal(
    actor: Actor,
    contact_id: int,
    *,
    topic: str = ALL,
    channel: str = ALL,
    received_via: str,
    recorded_by: str | None = None,
    note: str | None = None,
) -> list[ConsentEvent]:
    """GDPR art. 7(3): the person withdrew, told staff or another tool ("stop the
    newsletter", "no more calls"); record it on their behalf.

    A topic or every topic (``ALL``), on one channel or on every channel. Never
    refused for want of evidence: withdrawing must be as easy as consenting, so
    who recorded it (the actor, and ``recorded_by`` as another tool names its
    user) and how it was received are kept, and it takes effect with the
    commit. A topic on every channel is one event per configured channel, so
    that the person's own later double opt-in on one channel reopens only that
    channel; every topic on every channel is an unsubscribe from all marketing
    and, as the unsubscribe link's, puts the address on the suppression list
    (R22). Allowed while processing is restricted (a "no" always is).
    """
    events = note_withdrawal(
        actor,
        contact_id,
        topic=topic,
        channel=channel,
        received_via=received_via,
        recorded_by=recorded_by,
        note=note,
    )
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind=EventKind.WITHDRAWN.value)
    return events


def note_withdrawal(
    actor: Actor,
    contact_id: int,
    *,
    topic: str = ALL,
    channel: str = ALL,
    received_via: str,
    recorded_by: str | None = None,
    note: str | None = None,
) -> list[ConsentEvent]:
    """``record_withdrawal`` without the commit and its signal: for a use case
    that ends more in the same transaction (``consent.web_tracking.withdraw``
    unlinks the visitor ids). The caller commits, then sends
    ``decisions_changed``."""
    policy = current_policy()
    if topic != ALL:
        policy.topic(topic)
    if channel != ALL:
        policy.check_channel(channel)
    if received_via not in OBJECTION_CHANNELS:
        raise InvalidInput(
            f"received_via must be one of: {', '.join(OBJECTION_CHANNELS)}.",
            code="invalid_received_via",
            fields={"received_via": ["Unknown."]},
        )
    contact = crm.get_contact(contact_id)
    channels = [channel] if channel != ALL or topic == ALL else list(policy.channels)
    source = _source_of(actor)
    reference = (
        f"recorded by {recorded_by.strip()}"[:200] if recorded_by and recorded_by.strip() else None
    )
    # No basis named: whichever the topic rests on (consent or legitimate
    # interest), the person's "no" ends it.
    events = [
        record(
            contact,
            EventKind.WITHDRAWN,
            actor=actor,
            source=source,
            topic=topic,
            channel=each,
            source_ref=reference,
            received_via=received_via,
            note=note or None,
        )
        for each in channels
    ]
    # A withdrawal from every topic on every channel puts the address on the
    # suppression list: consent.ledger.record does it for every "no" to everything.
    crm.audit(
        actor,
        "withdrawal.record",
        contact.id,
        detail=f"topic={topic} channel={channel} received_via={received_via}",
    )
    return events


def decisions_for_contact(contact: Contact, at: datetime | None = None) -> list[Decision]:
    """The decision for every marketing topic and channel."""
    return _every_decision(standing_of(contact), at)


def _every_decision(
    standing: Standing, at: datetime | None, any_major: bool | None = None
) -> list[Decision]:
    policy = current_policy()
    moment = at or utcnow()
    return mark_older_consents(
        [
            decide(
                standing,
                email=standing.email,
                topic=topic,
                channel=channel,
                at=moment,
                policy=policy,
            )
            for topic in policy.marketing_topics.values()
            for channel in policy.channels
        ],
        any_major=any_major,
    )


def contact_permissions(
    actor: Actor, contact_id: int, at: datetime | None = None
) -> tuple[Standing, list[Decision]]:
    """A staff lookup of one contact's decisions, every marketing topic and
    channel (``GET /api/v1/contacts/<id>/permissions``): audited as
    ``contact.read`` (R25), the entry committed with the read before anything
    is decided, as the permission check does (``_read_and_audit``)."""
    missing = NotFound(f"No contact with id {contact_id}.", code="contact_not_found")
    if not 0 < contact_id <= crm.MAX_CONTACT_ID:
        raise missing
    dialect = db.session.get_bind().dialect.name
    db.session.flush()
    rows = (
        db.session.connection()
        .execute(
            _audited_read(dialect, "lookup"),
            {"id": contact_id, "at": utcnow(), "actor": actor.label},
        )
        .all()
    )
    if not rows:
        # PostgreSQL: the INSERT found no contact either, so nothing was audited.
        raise missing
    _audited(actor, dialect, rows, "contact.read", contact_id, None)
    standing = standings_of_rows(rows)[contact_id]
    return standing, _every_decision(standing, at, any_major=rows[0].major_id is not None)


def decisions_for_contacts(
    contact_ids: Sequence[int], at: datetime | None = None
) -> dict[int, list[Decision]]:
    """``decisions_for_contact`` for many contacts with a fixed number of
    queries (a page of the change feed): {contact id: its decisions}, the
    same standing read by id. Contacts that do not exist are left out."""
    policy = current_policy()
    moment = at or utcnow()
    flat = [
        decide(
            standing, email=standing.email, topic=topic, channel=channel, at=moment, policy=policy
        )
        for standing in standings_by_id(contact_ids).values()
        for topic in policy.marketing_topics.values()
        for channel in policy.channels
    ]
    out: dict[int, list[Decision]] = {}
    for decision in mark_older_consents(flat):
        out.setdefault(int(decision.contact_id or 0), []).append(decision)
    return out


@dataclass(frozen=True)
class OlderConsent:
    """A consent given under a policy version older than the latest major one (R23, R24)."""

    event_id: int
    contact_id: int
    topic: str
    channel: str
    given_under: str | None
    major: str

    @property
    def note(self) -> str:
        return (
            f" Given under policy version {self.given_under or 'unknown'}; version "
            f"{self.major} is a major change. The consent still stands until the person "
            f"withdraws it; a re-permission request can ask them to confirm under {self.major}."
        )


def _older_consents(event_ids: Sequence[int]) -> dict[int, OlderConsent]:
    """Of the consent events ``event_ids``, those given under a version published
    before the latest major version (or, for a version never published here,
    given before it), by event id. Empty while no major version exists."""
    if not event_ids:
        return {}
    major = latest_major_version()
    if major is None:
        return {}
    events = db.session.execute(
        sa.select(
            ConsentEvent.id,
            ConsentEvent.contact_id,
            ConsentEvent.topic,
            ConsentEvent.channel,
            ConsentEvent.policy_version,
            ConsentEvent.occurred_at,
        ).where(ConsentEvent.id.in_(list(dict.fromkeys(event_ids))))
    ).all()
    published: dict[str | None, datetime | None] = {}
    out = {}
    for event in events:
        if event.policy_version == major.version:
            continue
        if event.policy_version not in published:
            published[event.policy_version] = version_published_at(event.policy_version)
        since = published[event.policy_version] or event.occurred_at
        if since < major.published_at:
            out[event.id] = OlderConsent(
                event.id,
                event.contact_id,
                event.topic,
                event.channel,
                event.policy_version,
                major.version,
            )
    return out


def mark_older_consents(decisions: list[Decision], any_major: bool | None = None) -> list[Decision]:
    """R23, R24: say in the explanation of each decision that rests on a consent
    given under a version older than the latest major one.

    Such a consent is neither void nor renewed by the new version: it was
    valid for what the person was shown, and it keeps allowing marketing until
    the person withdraws it or the company decides to stop relying on it
    (docs/rules.md R24). Staff see the mark and may send a re-permission
    request (``mailing.repermission``).

    ``any_major``: whether a major version exists, when the caller read it
    already (the permission check reads it with the standings); False spares
    the query, and so does None when no decision rests on a consent."""
    if any_major is False:
        return decisions
    older = _older_consents(
        [d.event_id for d in decisions if d.reason is Reason.CONSENT and d.event_id is not None]
    )
    if not older:
        return decisions
    return [
        replace(d, explanation=d.explanation + older[d.event_id].note)
        if d.reason is Reason.CONSENT and d.event_id in older
        else d
        for d in decisions
    ]


def older_consents(at: datetime | None = None) -> dict[int, list[str]]:
    """Contacts whose email consent to a marketing topic still allows marketing but was given
    under a version older than the latest major one: contact id -> topics.
    Who a re-permission request goes to (R24)."""
    if latest_major_version() is None:
        return {}
    rows = db.session.execute(
        sa.select(PermissionState.contact_id, PermissionState.consent_event_id).where(
            PermissionState.channel == "email",
            PermissionState.consent_since.is_not(None),
            PermissionState.consent_event_id.is_not(None),
        )
    ).all()
    older = _older_consents([r.consent_event_id for r in rows])
    if not older:
        return {}
    policy = current_policy()
    standings = standings_by_id({o.contact_id for o in older.values()})
    moment = at or utcnow()
    out: dict[int, list[str]] = {}
    for item in sorted(older.values(), key=lambda o: (o.contact_id, o.topic)):
        standing = standings.get(item.contact_id)
        if standing is None or item.topic not in policy.marketing_topics:
            continue
        decision = decide(
            standing,
            email=standing.email,
            topic=policy.topic(item.topic),
            channel="email",
            at=moment,
            policy=policy,
        )
        if decision.reason is Reason.CONSENT and decision.event_id == item.event_id:
            out.setdefault(item.contact_id, []).append(item.topic)
    return out


def check_permissions(
    emails: Sequence[str],
    topic_key: str,
    channel: str = "email",
    at: datetime | None = None,
    actor: Actor | BearerToken | None = None,
) -> list[Decision]:
    """Decisions for many addresses at once, in input order, from one joined read.

    A malformed address cannot be a known contact: it is answered ``unknown_contact``.
    With an actor, the lookup is audited (R25): one entry per call with the
    count, stored before any decision is made (``_read_and_audit``); if it
    cannot be stored, the call fails and nothing is answered. With the
    request's ``BearerToken`` instead, the same read checks the token as well
    (NotAuthenticated, NotPermitted) and audits in its name.
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
    if actor is None:
        standings, any_major = standings_by_email(normalised), None
    else:
        standings, any_major = _read_and_audit(
            actor, normalised, f"topic={topic.key} channel={channel}"
        )
    moment = at or utcnow()
    decisions = mark_older_consents(
        [
            decide(
                standings.get(address),
                email=address,
                topic=topic,
                channel=channel,
                at=moment,
                policy=policy,
            )
            for address in normalised
        ],
        any_major=any_major,
    )
    metrics.count_decisions(d.reason.value for d in decisions)
    return decisions


# The audited lookups' one read, built once per database and kind (building a
# statement costs more than running it on a warm database): the standings of
# the contacts asked about, whether any major policy version exists (R24:
# without one, no consent needs the "older version" note and nothing more is
# read), and on PostgreSQL the audit INSERT itself, as a data-modifying CTE;
# "check_by_token" reads the API token in the same statement as well.
_AUDITED_READS: dict[tuple[str, str], sa.Select] = {}
# More addresses than one statement reads (the API takes at most 10,000).
_AUDITED_READ_LIMIT = 10_000


def _audited_read(dialect: str, kind: str) -> sa.Select:
    """``kind``: "check" (addresses in ``keys``, one ``permissions.check``
    entry with the counts), "check_by_token" (the same, on PostgreSQL only,
    for the actor of the token ``BearerToken.parameters`` names) or "lookup"
    (one contact by ``id``, a ``contact.read`` entry, no row when there is no
    such contact)."""
    built = _AUDITED_READS.get((dialect, kind))
    if built is None:
        postgresql = dialect == "postgresql"
        if kind == "lookup":
            built = _lookup_read(postgresql)
        else:
            built = _check_read(postgresql, by_token=kind == "check_by_token")
        _AUDITED_READS[dialect, kind] = built
    return built


def _major_id() -> Any:
    return (
        sa.select(PolicyVersion.id)
        .where(PolicyVersion.is_major.is_(True))
        .limit(1)
        .scalar_subquery()
        .label("major_id")
    )


def _one_row() -> sa.Subquery:
    """SQLite's head: no INSERT inside WITH there, the entry is written after."""
    return sa.select(sa.literal(1).label("one")).subquery("one_row")


def _check_read(postgresql: bool, by_token: bool = False) -> sa.Select:
    if not postgresql:
        return standings_beside(_one_row(), email_in_keys(), _major_id())
    found = (
        sa.select(sa.func.count(Contact.id).label("known"), sa.func.min(Contact.id).label("only"))
        .where(email_in_keys())
        .subquery("found")
    )
    # By token: written in the token's name, and only when it may act (an
    # invalid token leaves no entry and gets no contact back).
    token = token_row() if by_token else None
    values = sa.select(
        sa.bindparam("at", type_=AuditEntry.at.type),
        token.label if token else sa.bindparam("actor", type_=sa.String),
        sa.bindparam("action", type_=sa.String),
        # The contact's id when one address was asked about and is known.
        sa.case(
            (
                sa.and_(found.c.known == 1, sa.bindparam("single", type_=sa.Boolean)),
                found.c.only,
            )
        ),
        sa.bindparam("detail", type_=sa.String) + sa.cast(found.c.known, sa.String),
    ).select_from(found)
    if token:
        values = values.join(token.token, sa.true()).where(token.may_act)
    entry = (
        sa.insert(AuditEntry)
        .from_select(["at", "actor", "action", "contact_id", "detail"], values)
        .returning(AuditEntry.id)
        .cte("audit")
    )
    if not token:
        return standings_beside(entry, email_in_keys(), entry.c.id.label("audit_id"), _major_id())
    # The token's row leads: no row, no such token; without an entry, no contact.
    return standings_beside(
        token.token.outerjoin(entry, sa.true()),
        sa.and_(entry.c.id.is_not(None), email_in_keys()),
        *token.columns,
        entry.c.id.label("audit_id"),
        _major_id(),
    ).add_cte(token.used)


def _lookup_read(postgresql: bool) -> sa.Select:
    by_id = sa.bindparam("id", type_=sa.Integer)
    if not postgresql:
        return standings_beside(_one_row(), Contact.id == by_id, _major_id(), outer=False)
    entry = (
        sa.insert(AuditEntry)
        .from_select(
            ["at", "actor", "action", "contact_id"],
            sa.select(
                sa.bindparam("at", type_=AuditEntry.at.type),
                sa.bindparam("actor", type_=sa.String),
                sa.literal("contact.read", sa.String),
                Contact.id,
            ).where(Contact.id == by_id),
        )
        .returning(AuditEntry.id, AuditEntry.contact_id)
        .cte("audit")
    )
    return standings_beside(
        entry,
        Contact.id == entry.c.contact_id,
        entry.c.id.label("audit_id"),
        _major_id(),
        outer=False,
    )


def _read_and_audit(
    actor: Actor | BearerToken, normalised: list[str], asked: str
) -> tuple[dict[str, Standing], bool | None]:
    """The standings of ``normalised`` and the lookup's audit entry (R25),
    committed before this returns: (standings by address, whether any major
    policy version exists).

    PostgreSQL: one statement reads the standings and inserts the entry (a
    data-modifying CTE); under ``autocommit_statements`` it commits on its
    own, waiting for the WAL flush, before its rows come back. The entry's
    id is in every row: a read without it is refused. Given the request's
    ``BearerToken``, that statement also reads the token (and notes its last
    use), so a check is one round trip; the token is then checked from the
    row before anything is decided. SQLite (no INSERT in a WITH): the token
    first, then the read, then the entry's INSERT, then the commit.
    """
    wanted = list(dict.fromkeys(normalised))
    detail = f"{asked} addresses={len(normalised)} known="
    if len(wanted) > _AUDITED_READ_LIMIT:
        if isinstance(actor, BearerToken):
            actor = actor.authenticate()
        standings = standings_by_email(normalised)
        _audit_check(actor, normalised, standings, detail)
        return standings, None
    dialect = db.session.get_bind().dialect.name
    if isinstance(actor, BearerToken) and dialect != "postgresql":
        actor = actor.authenticate()
    # The connection does not autoflush as the session would (a no-op when clean).
    db.session.flush()
    at = utcnow()
    values: dict[str, Any] = {
        "keys": wanted,
        "at": at,
        "action": "permissions.check",
        "single": len(normalised) == 1,
        "detail": detail,
    }
    if isinstance(actor, BearerToken):
        values.update(actor.parameters(at))
        kind = "check_by_token"
    else:
        values["actor"] = actor.label
        kind = "check"
    rows = db.session.connection().execute(_audited_read(dialect, kind), values).all()
    if isinstance(actor, BearerToken):
        actor = actor.accept(rows[0] if rows else None, at)
    standings = {s.email: s for s in standings_of_rows(rows).values()}
    if dialect == "postgresql":
        _audited(actor, dialect, rows, "permissions.check", None, None)
    else:
        _audit_check(actor, normalised, standings, detail)
    return standings, rows[0].major_id is not None


def _audited(
    actor: Actor,
    dialect: str,
    rows: Sequence[sa.Row[Any]],
    action: str,
    contact_id: int | None,
    detail: str | None,
) -> None:
    """After an audited read: on PostgreSQL the entry came with the rows (or
    the read is refused); on SQLite it is written now. Committed either way."""
    if dialect == "postgresql":
        if not rows or rows[0].audit_id is None:
            raise RuntimeError(f"The audit entry of {action} was not written (R25).")
    else:
        crm.audit(actor, action, contact_id, detail=detail)
    db.session.commit()


def _audit_check(
    actor: Actor, normalised: list[str], standings: Mapping[str, Standing], detail: str
) -> None:
    known = [s.contact_id for s in standings.values()]
    crm.audit(
        actor,
        "permissions.check",
        known[0] if len(known) == 1 and len(normalised) == 1 else None,
        detail=f"{detail}{len(known)}",
    )
    db.session.commit()


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
        raise Conflict(N_("Processing of this contact is already restricted."), code="restricted")
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
        raise Conflict(N_("Processing of this contact is not restricted."), code="not_restricted")
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
    # The ids other systems know the contact by: {system: id}.
    external_ids: dict[str, str]

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
        external_ids=external_ids.for_contacts([contact.id]).get(contact.id, {}),
    )


# The ledger event a staff member reads as the evidence for a decision that
# does not name one itself (R5).
_EVIDENCE_KINDS = {
    Reason.SUPPRESSED: (EventKind.SUPPRESSED, EventKind.CREATED_WHILE_SUPPRESSED),
    Reason.RESTRICTED: (EventKind.RESTRICTED,),
    Reason.UNDELIVERABLE: (EventKind.UNDELIVERABLE,),
    Reason.UNSUBSCRIBED: (EventKind.UNSUBSCRIBED, EventKind.WITHDRAWN),
    Reason.PENDING_CONFIRMATION: (EventKind.REQUESTED,),
    # Within a company's grace period the basis names no event of its own: the
    # end of the relationship (and the grace it leaves) is the evidence.
    Reason.CUSTOMER: (EventKind.BASIS_GRANTED, EventKind.BASIS_ENDED),
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
