"""Web visits (R19): page views under an anonymous visitor id, and the links from
a visitor id to a contact.

This module only stores; whether a link may exist is the consent package's
question (``consent.web_tracking``, which asks the decision). A visit never
names a contact: the only way from a visit to a person is a
``WebVisitorLink``, and deleting it makes every visit of that id anonymous
again. Visits are deleted after the policy's web-analytics period (R18). A link
shows only the visits made since the consent began (the caller passes its
date); the earlier ones stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from crm.models import WebVisit, WebVisitorLink
from crm.services import audit, get_contact
from extensions import db
from kernel.access import Actor
from kernel.database import id_in
from kernel.timestamps import utcnow


def record_visit(visitor_id: str, page: str, visited_at: datetime) -> WebVisit:
    """Store one page view of an anonymous visitor; commits."""
    visit = WebVisit(visitor_id=visitor_id, page=page, visited_at=visited_at, recorded_at=utcnow())
    db.session.add(visit)
    db.session.commit()
    return visit


def set_link(visitor_id: str, contact_id: int, actor: Actor) -> WebVisitorLink:
    """Tie ``visitor_id`` to a contact, or move it to another. Does not commit:
    the caller checked the contact's consent in the same transaction."""
    link = db.session.get(WebVisitorLink, visitor_id)
    if link is None:
        link = WebVisitorLink(visitor_id=visitor_id, contact_id=contact_id)
        db.session.add(link)
    link.contact_id = contact_id
    link.linked_at = utcnow()
    link.linked_by = actor.label
    db.session.flush()
    return link


def unlink_contacts(contact_ids: Sequence[int]) -> int:
    """Remove every visitor link of these contacts: their visits are anonymous
    again. Does not commit. Returns how many links went."""
    if not contact_ids:
        return 0
    result = db.session.execute(
        sa.delete(WebVisitorLink)
        .where(id_in(WebVisitorLink.contact_id, list(contact_ids)))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def linked_contact_ids() -> list[int]:
    """Every contact that has a visitor linked, for the daily check of their consent."""
    return list(db.session.scalars(sa.select(WebVisitorLink.contact_id).distinct()))


def linked_among(contact_ids: Sequence[int]) -> list[int]:
    """Those of these contacts that have a visitor linked."""
    if not contact_ids:
        return []
    return list(
        db.session.scalars(
            sa.select(WebVisitorLink.contact_id)
            .where(id_in(WebVisitorLink.contact_id, list(contact_ids)))
            .distinct()
        )
    )


def has_links(contact_id: int) -> bool:
    return (
        db.session.scalar(
            sa.select(WebVisitorLink.visitor_id)
            .where(WebVisitorLink.contact_id == contact_id)
            .limit(1)
        )
        is not None
    )


def visits_of(contact_id: int, since: datetime | None, limit: int = 500) -> list[WebVisit]:
    """The visits linked to a contact (through its visitor ids) made on or after
    ``since``, the start of the consent that allows the link, newest first.
    Earlier visits of the same ids stay unlinked: the consent covers nothing
    before it. None (no consent holds): none."""
    if since is None:
        return []
    return list(
        db.session.scalars(
            sa.select(WebVisit)
            .join(WebVisitorLink, WebVisitorLink.visitor_id == WebVisit.visitor_id)
            .where(WebVisitorLink.contact_id == contact_id, WebVisit.visited_at >= since)
            .order_by(WebVisit.visited_at.desc(), WebVisit.id.desc())
            .limit(limit)
        )
    )


def read_visits(actor: Actor, contact_id: int, since: datetime | None) -> list[WebVisit]:
    """``visits_of`` for an API or staff lookup, which is audited (R25)."""
    contact = get_contact(contact_id)
    visits = visits_of(contact.id, since)
    audit(actor, "web_visits.read", contact.id, detail=f"visits={len(visits)}")
    db.session.commit()
    return visits


def purge_visits(before: datetime) -> int:
    """Delete the visits made before ``before`` (R18's web-analytics period).
    Commits; returns how many were deleted."""
    deleted = db.session.execute(
        sa.delete(WebVisit)
        .where(WebVisit.visited_at < before)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return int(deleted.rowcount or 0)  # type: ignore[attr-defined]
