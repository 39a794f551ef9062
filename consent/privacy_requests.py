"""The record of each rights request (R20, R21): its deadline and how it was answered.

A request from the public form is opened and verified by ``consent.rights``;
staff answer it from the contact page (export, erasure, restriction,
rectification) or refuse it from the privacy-request inbox. A request staff
receive themselves (by phone, letter, ...) is recorded when they act on it.
Each answer writes who, when and what was done on the request's row, which
keeps no personal data and outlives the contact (``consent.models.PrivacyRequest``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from consent.models import OBJECTION_CHANNELS, PrivacyRequest
from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.i18n import N_
from kernel.timestamps import utcnow

# What a person may ask of us through staff (the public form takes access and erasure).
REQUEST_KINDS = ("access", "erasure", "rectification", "restriction")

# The labels pages show for these codes ("request." ~ code), declared for extraction.
REQUEST_LABELS = (
    N_("request.access"),
    N_("request.erasure"),
    N_("request.rectification"),
    N_("request.restriction"),
)
# How staff received a request: the objection's channels (phone, letter, ...).
RECEIVED_VIA = OBJECTION_CHANNELS
OPEN_STATUSES = ("pending_verification", "awaiting_admin")
STATUSES = (*OPEN_STATUSES, "completed", "refused")

# The labels pages show for these codes ("status." ~ code), declared for extraction.
STATUS_LABELS = (
    N_("status.pending_verification"),
    N_("status.awaiting_admin"),
    N_("status.completed"),
    N_("status.refused"),
)
# What was done, per kind of answer.
OUTCOMES = ("exported", "erased", "restricted", "rectified", "refused")

# The labels pages show for these codes ("outcome." ~ code), declared for extraction.
OUTCOME_LABELS = (
    N_("outcome.exported"),
    N_("outcome.erased"),
    N_("outcome.restricted"),
    N_("outcome.rectified"),
    N_("outcome.refused"),
)

# GDPR art. 12(3): one month from the (verified) request, extendable by two.
ANSWER_MONTHS = 1
EXTENSION_MONTHS = 2


def add_months(moment: datetime, months: int) -> datetime:
    """The same day ``months`` calendar months later, or that month's last day
    (31 January + 1 month = 28 or 29 February)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def due_date(verified_at: datetime) -> datetime:
    """When a request verified at ``verified_at`` must be answered (art. 12(3))."""
    return add_months(verified_at, ANSWER_MONTHS)


def is_overdue(request: PrivacyRequest, at: datetime) -> bool:
    """Open past its deadline (the extended one, if extended)."""
    deadline = request.deadline
    return request.is_open and deadline is not None and at > deadline


def get_request(request_id: int) -> PrivacyRequest:
    found = db.session.get(PrivacyRequest, request_id) if 0 < request_id < 2**31 else None
    if found is None:
        raise NotFound(N_("This request no longer exists."), code="request_not_found")
    return found


def _clean_reason(reason: str | None, missing: str) -> str:
    """The reason, spaces tidied; ``missing`` is the refusal when there is none."""
    text = " ".join((reason or "").split())
    if not text:
        raise InvalidInput(missing, fields={"reason": ["Required."]})
    if len(text) > 500:
        raise InvalidInput(N_("The reason is too long."), fields={"reason": ["At most 500."]})
    return text


def _check_received_via(received_via: str | None) -> None:
    if received_via is not None and received_via not in RECEIVED_VIA:
        raise InvalidInput(
            N_("received_via must be one of: %(channels)s."),
            values={"channels": ", ".join(RECEIVED_VIA)},
            fields={"received_via": ["Unknown."]},
        )


def open_requests(contact_id: int, kinds: tuple[str, ...] = REQUEST_KINDS) -> list[PrivacyRequest]:
    """The contact's requests of these kinds not yet answered, oldest first."""
    return list(
        db.session.scalars(
            sa.select(PrivacyRequest)
            .where(
                PrivacyRequest.contact_id == contact_id,
                PrivacyRequest.kind.in_(kinds),
                PrivacyRequest.status.in_(OPEN_STATUSES),
            )
            .order_by(PrivacyRequest.id)
        )
    )


def _close(
    request: PrivacyRequest, actor: Actor, outcome: str, note: str | None, at: datetime
) -> None:
    request.status = "refused" if outcome == "refused" else "completed"
    request.outcome = outcome
    request.outcome_note = note
    request.completed_at = at
    request.handled_by = actor.label


def record_answer(
    actor: Actor,
    contact: Contact,
    kind: str,
    outcome: str,
    *,
    received_via: str | None = None,
    note: str | None = None,
    at: datetime | None = None,
) -> list[PrivacyRequest]:
    """Note that the person's ``kind`` request was answered with ``outcome``. No commit.

    Every open request of that kind from the contact (verified or not: it is
    done now) is closed; with ``received_via`` and none open, the request
    staff received themselves is recorded, verified by them and answered at
    once, so that it is counted and proven like the others. Without either,
    nothing is recorded (an admin's own correction is not a request).
    """
    if kind not in REQUEST_KINDS or outcome not in OUTCOMES:
        raise InvalidInput(N_("Unknown kind of request or answer."), code="invalid_request")
    _check_received_via(received_via)
    now = at or utcnow()
    answered = open_requests(contact.id, (kind,))
    if not answered and received_via is not None:
        request = PrivacyRequest(
            contact_id=contact.id,
            address_hash=contact.address_hash,
            kind=kind,
            received_via=received_via,
            requested_at=now,
            verified_at=now,
            due_at=due_date(now),
        )
        db.session.add(request)
        answered = [request]
    for request in answered:
        _close(request, actor, outcome, note, now)
    db.session.flush()
    for request in answered:
        crm.audit(actor, f"privacy_request.{outcome}", contact.id, detail=f"request={request.id}")
    return answered


def extend_deadline(
    actor: Actor, request_id: int, reason: str, at: datetime | None = None
) -> PrivacyRequest:
    """GDPR art. 12(3): extend an open, verified request by two further months,
    once, with the reason (the complexity or number of requests)."""
    request = get_request(request_id)
    text = _clean_reason(reason, N_("An extension needs its reason."))
    if not request.is_open or request.due_at is None:
        raise Conflict(
            N_("Only an open, verified request can be extended."), code="request_not_extendable"
        )
    if request.extended_until is not None:
        raise Conflict(
            N_(
                "The deadline was extended already; GDPR art. 12(3) allows two further months once."
            ),
            code="request_extended",
        )
    if (at or utcnow()) > request.due_at:
        raise Conflict(
            N_("The month has passed: the extension had to be decided within it."),
            code="request_overdue",
        )
    request.extended_until = add_months(request.due_at, EXTENSION_MONTHS)
    request.extension_reason = text
    crm.audit(actor, "privacy_request.extend", request.contact_id, detail=f"request={request.id}")
    db.session.commit()
    return request


def refuse_request(
    actor: Actor, request_id: int, reason: str, at: datetime | None = None
) -> PrivacyRequest:
    """Answer an open request with a refusal and its reason (e.g. a legal hold,
    GDPR art. 17(3)); the person is owed the reason (art. 12(4))."""
    request = get_request(request_id)
    text = _clean_reason(reason, N_("A refusal needs its reason."))
    if not request.is_open:
        raise Conflict(N_("This request has been answered already."), code="request_closed")
    _close(request, actor, "refused", text, at or utcnow())
    crm.audit(actor, "privacy_request.refused", request.contact_id, detail=f"request={request.id}")
    db.session.commit()
    return request


@dataclass(frozen=True)
class RequestCounts:
    open: int
    closed: int
    overdue: int


def request_counts(at: datetime) -> RequestCounts:
    """How many requests are open, closed and open past their deadline at ``at``
    (the inbox's own tests of each), in one query. Not audited: numbers only."""
    deadline = sa.func.coalesce(PrivacyRequest.extended_until, PrivacyRequest.due_at)
    is_open = PrivacyRequest.status.in_(OPEN_STATUSES)
    opened, closed, overdue = db.session.execute(
        sa.select(
            sa.func.count().filter(is_open),
            sa.func.count().filter(sa.not_(is_open)),
            sa.func.count().filter(is_open, deadline < at),
        )
    ).one()
    return RequestCounts(open=opened, closed=closed, overdue=overdue)


@dataclass(frozen=True)
class Inbox:
    requests: list[PrivacyRequest]
    overdue: set[int]
    at: datetime


INBOX_FILTERS = ("open", "overdue", "closed", "all")

# The labels pages show for these codes ("show." ~ code), declared for extraction.
INBOX_FILTER_LABELS = (
    N_("show.open"),
    N_("show.overdue"),
    N_("show.closed"),
    N_("show.all"),
)
INBOX_PAGE = 200


def inbox(actor: Actor, show: str = "open", at: datetime | None = None) -> Inbox:
    """The requests for the inbox, soonest deadline first; reading it is audited (R25)."""
    if show not in INBOX_FILTERS:
        raise InvalidInput(N_("Unknown filter."), fields={"show": ["Unknown."]})
    now = at or utcnow()
    deadline = sa.func.coalesce(PrivacyRequest.extended_until, PrivacyRequest.due_at)
    query = sa.select(PrivacyRequest)
    if show in ("open", "overdue"):
        query = query.where(PrivacyRequest.status.in_(OPEN_STATUSES)).order_by(
            deadline.is_(None), deadline, PrivacyRequest.id
        )
        if show == "overdue":
            query = query.where(deadline < now)
    elif show == "closed":
        query = query.where(PrivacyRequest.status.not_in(OPEN_STATUSES)).order_by(
            PrivacyRequest.completed_at.desc(), PrivacyRequest.id.desc()
        )
    else:
        query = query.order_by(PrivacyRequest.id.desc())
    requests = list(db.session.scalars(query.limit(INBOX_PAGE)))
    crm.audit(actor, "privacy_request.list", detail=f"show={show} requests={len(requests)}")
    db.session.commit()
    return Inbox(requests=requests, overdue={r.id for r in requests if is_overdue(r, now)}, at=now)
