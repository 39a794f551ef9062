"""The rights of the person (GDPR art. 15, 17 and 20; R20-R22): a copy of
everything held, and erasure that keeps only the suppression hash.
Restriction (art. 18) is ``consent.services.restrict_processing``.

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

from consent import services
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
from crm import services as crm
from crm.models import Activity, Company, Contact
from extensions import db
from kernel.access import SYSTEM_ACTOR, Actor
from kernel.database import id_in
from kernel.errors import Conflict, InvalidInput, NotFound
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
    return _columns(contact)


def _company(contact: Contact) -> dict[str, Any] | None:
    company = db.session.get(Company, contact.company_id) if contact.company_id else None
    return _columns(company) if company else None


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


def export_contact(actor: Actor, contact_id: int) -> dict[str, Any]:
    """GDPR art. 15 and 20: everything held about the person, as JSON-ready data."""
    contact = crm.get_contact(contact_id)
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


def erase_contact(actor: Actor, contact_id: int) -> bool:
    """GDPR art. 17: remove the person's data; refused while a legal hold is set.

    R22: the address's keyed hash is put on the suppression list first, even
    when the person never said no: asking to be erased is asking to be left
    alone, and without the hash the same purchased list would bring them
    back. The scoped entries of earlier refusals (a topic, a channel) stay as
    they are. The audit entry names no contact afterwards. Returns whether
    the suppression hash is kept (always, since issue 19).
    """
    contact = crm.get_contact(contact_id)
    if contact.legal_hold_reason:
        raise Conflict(
            "Erasure refused: a legal hold is set on this contact "
            f"({contact.legal_hold_reason}). Lift the hold once the obligation has ended.",
            code="legal_hold",
        )
    # The address's own entry: a mailbox's (see consent.suppression) may be lifted
    # one day, and this person's "no" must not go with it.
    if own_suppression(contact.email) is None:
        record(contact, EventKind.SUPPRESSED, actor=actor, source=_source_of(actor), note="erasure")
    suppressed = True
    crm.remove_contact(contact.id)
    crm.audit(
        actor,
        "contact.erase",
        None,
        detail="suppression hash kept" if suppressed else "nothing kept",
    )
    db.session.commit()
    decisions_changed.send(signal_sender(), contact_id=contact_id, kind="erased")
    return suppressed


# Requests from the public (R20, R21) -------------------------------------------------

PRIVACY_KINDS = ("access", "erasure")
ANSWER_WITHIN = timedelta(days=30)
# An unverified request no longer holds retention back after this long.
VERIFICATION_WINDOW = timedelta(days=2)


def open_privacy_request(contact: Contact, kind: str, at: datetime) -> PrivacyRequest:
    """Record an unverified request (no commit). The caller emails the link."""
    if kind not in PRIVACY_KINDS:
        raise InvalidInput("kind must be access or erasure.", fields={"kind": ["Unknown."]})
    request = PrivacyRequest(contact_id=contact.id, kind=kind, requested_at=at)
    db.session.add(request)
    db.session.flush()
    return request


def get_privacy_request(request_id: int) -> PrivacyRequest:
    found = db.session.get(PrivacyRequest, request_id) if 0 < request_id < 2**31 else None
    if found is None:
        raise NotFound("This request no longer exists.", code="request_not_found")
    return found


def verify_privacy_request(request_id: int, at: datetime) -> tuple[PrivacyRequest, bool]:
    """The address proved itself. Returns (request, newly verified). No commit.

    A copy request is then answered by email (the caller queues it); an erasure
    request waits for an admin, due within a month (GDPR art. 12(3)), because a
    legal hold or an open matter may forbid it.
    """
    request = get_privacy_request(request_id)
    if request.status != "pending_verification":
        return request, False
    request.verified_at = at
    request.due_at = at + ANSWER_WITHIN
    request.status = "verified" if request.kind == "access" else "awaiting_admin"
    if request.kind == "erasure":
        _suppress_on_erasure_request(request, at)
    crm.audit(SYSTEM_ACTOR, f"privacy_request.verify.{request.kind}", request.contact_id)
    return request, True


def _suppress_on_erasure_request(request: PrivacyRequest, at: datetime) -> None:
    """R22: the person who proved the address and asked to be erased is not
    marketed to from that moment, whether or not the erasure can be done
    (a legal hold keeps the data, not the right to market)."""
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
    return {cid: f"open {kind} request ({status.replace('_', ' ')})" for cid, kind, status in rows}


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
