"""The rights of the person (GDPR art. 15-18 and 20; R20-R22): a copy of
everything held, erasure that keeps only the suppression hash, and the
restriction (``consent.services.restrict_processing``) and rectification
(``crm.services.rectify_contact``) staff carry out on the person's request.
Each answer is noted on the request's record (``consent.privacy_requests``).

The export is assembled from named sections: the ones the consent layer can
see (profile, company, activities, the ledger with its evidence, decisions,
imports), then those the higher layers answer to
``kernel.signals.collect_export_sections`` (mailing: the emails sent), so
that consent never imports mailing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from consent import privacy_requests, services
from consent.ledger import record
from consent.models import (
    ALL,
    ConsentEvent,
    EventKind,
    ImportBatch,
    PermissionState,
    PrivacyRequest,
)
from consent.projection import PERSON
from consent.suppression import find_suppression, own_suppression
from crm import external_ids
from crm import services as crm
from crm.changes import CONTACT_ERASED
from crm.models import Activity, Company, Contact
from extensions import db
from kernel.access import SYSTEM_ACTOR, Actor
from kernel.addresses import keyed_hash, normalise_email
from kernel.countries import normalise_country, normalise_language
from kernel.database import id_in
from kernel.errors import N_, Conflict, InvalidInput, NotFound
from kernel.signals import (
    collect_export_sections,
    collect_retention_anchors,
    collect_retention_exclusions,
    decisions_changed,
)
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _columns(row: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        column.key: _plain(getattr(row, column.key))
        for column in row.__table__.columns
        if column.key not in exclude
    }


def _profile(contact: Contact) -> dict[str, Any]:
    # The ids other systems know the person by are data about them too (art. 15).
    ids = external_ids.for_contacts([contact.id]).get(contact.id, {})
    return {**_columns(contact), "external_ids": ids}


def _company(contact: Contact) -> dict[str, Any] | None:
    company = db.session.get(Company, contact.company_id) if contact.company_id else None
    if company is None:
        return None
    ids = external_ids.for_companies([company.id]).get(company.id, {})
    return {**_columns(company), "external_ids": ids}


def _activities(contact: Contact) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        sa.select(Activity).where(Activity.contact_id == contact.id).order_by(Activity.occurred_at)
    )
    return [_columns(row) for row in rows]


def _ledger(contact: Contact) -> list[dict[str, Any]]:
    rows = db.session.scalars(
        sa.select(ConsentEvent)
        .where(ConsentEvent.contact_id == contact.id)
        .order_by(ConsentEvent.occurred_at, ConsentEvent.id)
    )
    return [_columns(row) for row in rows]


def _decisions(contact: Contact) -> list[dict[str, Any]]:
    return [
        {
            "topic": d.topic,
            "channel": d.channel,
            "allowed": d.allowed,
            "basis": d.basis.value if d.basis else None,
            "reason": d.reason.value,
            "since": _plain(d.since),
            "explanation": d.explanation,
        }
        for d in services.decisions_for_contact(contact)
    ]


def _imports(contact: Contact) -> list[dict[str, Any]]:
    """Where the person's data came from (GDPR art. 15(1)(g)): the import batches."""
    refs = db.session.scalars(
        sa.select(ConsentEvent.source_ref)
        .where(ConsentEvent.contact_id == contact.id, ConsentEvent.source == "import")
        .distinct()
    )
    ids = [int(ref.rsplit(":", 1)[1]) for ref in refs if ref and ref.startswith("import-batch:")]
    batches = db.session.scalars(sa.select(ImportBatch).where(ImportBatch.id.in_(ids)))
    return [
        {
            "batch_id": b.id,
            "source": b.source,
            "basis": b.interest_kind,
            "imported_at": _plain(b.started_at),
        }
        for b in batches
    ]


_OWN_SECTIONS: dict[str, Callable[[Contact], Any]] = {
    "profile": _profile,
    "company": _company,
    "activities": _activities,
    "consent_events": _ledger,
    "decisions": _decisions,
    "imports": _imports,
}


def export_contact(
    actor: Actor, contact_id: int, received_via: str | None = None
) -> dict[str, Any]:
    """GDPR art. 15 and 20: everything held about the person, as JSON-ready data.

    Answers the contact's open access request, or records the one staff
    received ``received_via`` (``consent.privacy_requests.record_answer``)."""
    contact = crm.get_contact(contact_id)
    privacy_requests.record_answer(actor, contact, "access", "exported", received_via=received_via)
    data: dict[str, Any] = {
        "exported_at": utcnow().isoformat(),
        "contact_id": contact.id,
        "suppressed": find_suppression(contact.email) is not None,
    }
    sections = {name: build(contact) for name, build in _OWN_SECTIONS.items()}
    # The upper packages' sections (kernel.signals.collect_export_sections).
    for _receiver, (name, section) in collect_export_sections.send(
        signal_sender(), contact=contact
    ):
        sections[name] = section
    data.update(sections)
    crm.audit(actor, "contact.export", contact.id, detail=",".join(sections))
    db.session.commit()
    return data


def _source_of(actor: Actor) -> str:
    return "api" if actor.kind == "token" else actor.kind


def erase_contact(actor: Actor, contact_id: int, received_via: str | None = None) -> bool:
    """GDPR art. 17: remove the person's data; refused while a legal hold is set.

    R22: the address's keyed hash is put on the suppression list first, even
    when the person never said no: asking to be erased is asking to be left
    alone, and without the hash the same purchased list would bring them
    back. The scoped entries of earlier refusals (a topic, a channel) stay as
    they are. The audit entry names no contact afterwards. Returns whether
    the suppression hash is kept (always, since issue 19).

    The contact's open erasure request is answered (or the one staff received
    ``received_via`` recorded), and any other open request with it: nothing
    is left to give. Those rows stay, without the contact, as the proof that
    the request was answered and when (``consent.models.PrivacyRequest``).
    """
    contact = crm.get_contact(contact_id)
    if contact.legal_hold_reason:
        raise Conflict(
            N_(
                "Erasure refused: a legal hold is set on this contact (%(reason)s). "
                "Lift the hold once the obligation has ended."
            ),
            values={"reason": contact.legal_hold_reason},
            code="legal_hold",
        )
    for kind in privacy_requests.REQUEST_KINDS:
        privacy_requests.record_answer(
            actor,
            contact,
            kind,
            "erased",
            received_via=received_via if kind == "erasure" else None,
        )
    # The address's own entry: a mailbox's (see consent.suppression) may be lifted
    # one day, and this person's "no" must not go with it.
    if own_suppression(contact.email) is None:
        record(contact, EventKind.SUPPRESSED, actor=actor, source=_source_of(actor), note="erasure")
    suppressed = True
    # Every connected system is told to delete its copy (a tombstone in the change feed).
    crm.remove_contact(contact.id, tombstone=CONTACT_ERASED)
    crm.audit(
        actor,
        "contact.erase",
        None,
        detail="suppression hash kept" if suppressed else "nothing kept",
    )
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind="erased")
    return suppressed


def restrict_on_request(
    actor: Actor,
    contact_id: int,
    note: str | None = None,
    received_via: str | None = None,
) -> None:
    """GDPR art. 18 on the person's request: restrict processing and answer the
    request (``consent.services.restrict_processing`` commits both)."""
    contact = crm.get_contact(contact_id)
    privacy_requests.record_answer(
        actor, contact, "restriction", "restricted", received_via=received_via
    )
    services.restrict_processing(actor, contact_id, note=note, received_via=received_via)


def _changed_fields(contact: Contact, proposed: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``proposed`` (a whole form) that differ from the contact's,
    compared in their stored forms; an empty name, phone or country clears it."""
    changes: dict[str, Any] = {}
    if "email" in proposed and normalise_email(proposed["email"]) != contact.email:
        changes["email"] = proposed["email"]
    for key in ("name", "phone"):
        if key in proposed and (proposed[key] or None) != getattr(contact, key):
            changes[key] = proposed[key] or None
    if "country" in proposed and normalise_country(proposed["country"]) != contact.country:
        changes["country"] = proposed["country"] or None
    if proposed.get("language") and normalise_language(proposed["language"]) != contact.language:
        changes["language"] = proposed["language"]
    return changes


def rectify_on_request(
    actor: Actor, contact_id: int, proposed: dict[str, Any], received_via: str | None = None
) -> Contact:
    """GDPR art. 16 on the person's request: the fields of ``proposed`` that
    differ go through the API's rectification (``crm.services.rectify_contact``,
    which commits, announces ``contact_rectified`` and refuses while
    restricted), with the request answered in the same transaction. The
    record names the fields, never their values."""
    contact = crm.get_contact(contact_id)
    changes = _changed_fields(contact, proposed)
    if not changes:
        raise InvalidInput(N_("Nothing to correct: no field differs."), code="nothing_changed")
    privacy_requests.record_answer(
        actor,
        contact,
        "rectification",
        "rectified",
        received_via=received_via,
        note=",".join(sorted(changes)),
    )
    return crm.rectify_contact(actor, contact_id, changes)


# Requests from the public (R20, R21) -------------------------------------------------

PRIVACY_KINDS = ("access", "erasure")
# An unverified request no longer holds retention back after this long.
VERIFICATION_WINDOW = timedelta(days=2)


def open_privacy_request(contact: Contact, kind: str, at: datetime) -> PrivacyRequest:
    """Record an unverified request (no commit). The caller emails the link."""
    if kind not in PRIVACY_KINDS:
        raise InvalidInput(N_("kind must be access or erasure."), fields={"kind": ["Unknown."]})
    request = PrivacyRequest(
        contact_id=contact.id, address_hash=keyed_hash(contact.email), kind=kind, requested_at=at
    )
    db.session.add(request)
    db.session.flush()
    return request


def get_privacy_request(request_id: int) -> PrivacyRequest:
    """A request of a contact that still exists (the public link's request)."""
    found = privacy_requests.get_request(request_id)
    if found.contact_id is None:
        raise NotFound("This request no longer exists.", code="request_not_found")
    return found


def contact_of_request(request: PrivacyRequest) -> Contact:
    """The contact a request came from; NotFound once it is erased or purged."""
    if request.contact_id is None:
        raise NotFound("This request no longer exists.", code="request_not_found")
    return crm.get_contact(request.contact_id)


def verify_privacy_request(request_id: int, at: datetime) -> tuple[PrivacyRequest, bool]:
    """The address proved itself. Returns (request, newly verified). No commit.

    A copy request is then answered by email (the caller queues it, and the
    request is completed as exported); an erasure request waits for an admin
    in the inbox, due within one month (GDPR art. 12(3)), because a legal hold
    or an open matter may forbid it.
    """
    request = get_privacy_request(request_id)
    if request.status != "pending_verification":
        return request, False
    request.verified_at = at
    request.due_at = privacy_requests.due_date(at)
    crm.audit(SYSTEM_ACTOR, f"privacy_request.verify.{request.kind}", request.contact_id)
    if request.kind == "access":
        request.status = "completed"
        request.outcome = "exported"
        request.completed_at = at
        request.handled_by = SYSTEM_ACTOR.label
    else:
        request.status = "awaiting_admin"
        _suppress_on_erasure_request(request, at)
    return request, True


def _suppress_on_erasure_request(request: PrivacyRequest, at: datetime) -> None:
    """R22: the person who proved the address and asked to be erased is not
    marketed to from that moment, whether or not the erasure can be done
    (a legal hold keeps the data, not the right to market)."""
    if request.contact_id is None:
        return  # erased meanwhile: the erasure kept the hash
    contact = crm.get_contact(request.contact_id)
    if own_suppression(contact.email) is None:
        record(
            contact,
            EventKind.SUPPRESSED,
            actor=PERSON,
            source="email_link",
            at=at,
            source_ref=f"privacy_request:{request.id}",
            note="erasure request",
        )


def list_privacy_requests(status: str | None = None) -> list[PrivacyRequest]:
    query = sa.select(PrivacyRequest).order_by(PrivacyRequest.due_at, PrivacyRequest.id)
    if status:
        query = query.where(PrivacyRequest.status == status)
    return list(db.session.scalars(query))


def _open_requests(sender: Any, *, contact_ids: Sequence[int], **_: object) -> dict[int, str]:
    """Retention does not purge a contact whose rights request is open (R20)."""
    cutoff = utcnow() - VERIFICATION_WINDOW
    rows = db.session.execute(
        sa.select(PrivacyRequest.contact_id, PrivacyRequest.kind, PrivacyRequest.status).where(
            id_in(PrivacyRequest.contact_id, contact_ids),
            sa.or_(
                PrivacyRequest.status == "awaiting_admin",
                sa.and_(
                    PrivacyRequest.status == "pending_verification",
                    PrivacyRequest.requested_at >= cutoff,
                ),
            ),
        )
    ).all()
    return {
        cid: f"open {kind} request ({status.replace('_', ' ')})"
        for cid, kind, status in rows
        if cid is not None
    }


def _objection_anchors(sender: Any, *, counts_from: str, **_: object) -> sa.Select | None:
    """When each contact objected to all direct marketing (GDPR art. 21(3)), for the
    retention rules that count from ``objection``: after it only the suppression
    entry needs to live on (R22), not the full record."""
    if counts_from != "objection":
        return None
    return sa.select(
        PermissionState.contact_id.label("contact_id"),
        PermissionState.objected_since.label("at"),
    ).where(
        PermissionState.topic == ALL,
        PermissionState.channel == ALL,
        PermissionState.objected_since.is_not(None),
    )


def connect_signals() -> None:
    """Keep contacts with an open rights request out of retention, and tell it when
    contacts objected (consent.init_app)."""
    collect_retention_exclusions.connect(_open_requests, weak=False)
    collect_retention_anchors.connect(_objection_anchors, weak=False)
