"""Segments: saved contact filters that a campaign can target.

A segment is a ``consent.contact_filters.ContactFilter`` with a name, stored
as the strings ``filter_args`` writes and read back with ``parse_filter``, so
it names exactly the contacts the contact list shows for the same filter.
It only ever NARROWS a campaign: the audience is the topic's audience (the
policy's rules, ``consent.audience``) AND the segment (``mailing.campaigns``);
a contact in the segment whom the policy does not allow is never sent to, and
the policy still has the last word right before each send.

Deleting a segment keeps every campaign's record whole: a campaign copies the
segment's name and filter at its first send and is narrowed by that copy
from then on, so a sent campaign simply loses the link to the live segment.
A draft that targets it has no copy yet; deleting would make it go to the
whole topic, so that is refused until the draft targets another or none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent.contact_filters import ContactFilter, filter_args, matching_contacts, parse_filter
from crm.services import audit
from extensions import db
from kernel.access import Actor
from kernel.errors import N_, Conflict, InvalidInput, NotFound
from kernel.timestamps import utcnow
from mailing.models import Campaign, CampaignStatus, Segment

MAX_NAME = 100


@dataclass(frozen=True)
class SegmentInput:
    name: str
    # The filter as a query string or form names it (``parse_filter``'s input).
    args: Mapping[str, str]


def _checked(data: SegmentInput) -> tuple[str, dict[str, str]]:
    """The segment's name and normalised filter, or ``InvalidInput`` saying what is wrong."""
    name = " ".join(data.name.split())
    if not name:
        raise InvalidInput(N_("A segment needs a name."), fields={"name": ["Required."]})
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidInput(
            N_("A segment's name is one line of at most %(most)s characters."),
            values={"most": MAX_NAME},
            fields={"name": ["Too long or not printable."]},
        )
    chosen = parse_filter(data.args)
    if chosen.is_empty:
        # A segment of everyone narrows nothing: the topic's audience is what a
        # campaign without a segment already reaches.
        raise InvalidInput(
            N_("Choose at least one filter: a segment of everyone narrows nothing."),
            code="empty_segment",
        )
    return name, filter_args(chosen)


def _name_taken(name: str, other_than: int | None = None) -> bool:
    query = sa.select(Segment.id).where(sa.func.lower(Segment.name) == name.lower())
    if other_than is not None:
        query = query.where(Segment.id != other_than)
    return db.session.scalar(query.limit(1)) is not None


def _refuse_taken(name: str) -> InvalidInput:
    return InvalidInput(
        N_("There is already a segment called %(name)r."),
        values={"name": name},
        code="segment_name_taken",
        fields={"name": ["Taken."]},
    )


def create_segment(actor: Actor, data: SegmentInput, at: datetime | None = None) -> Segment:
    """A named, saved filter; audited with its filter."""
    name, args = _checked(data)
    if _name_taken(name):
        raise _refuse_taken(name)
    segment = Segment(
        name=name, filter_args=args, created_by=actor.label, created_at=at or utcnow()
    )
    db.session.add(segment)
    db.session.flush()
    audit(actor, "segment.create", detail=f"segment {segment.id}: {_described(args)}")
    db.session.commit()
    return segment


def update_segment(
    actor: Actor, segment_id: int, data: SegmentInput, at: datetime | None = None
) -> Segment:
    """A new name or filter. Campaigns already sent keep the copy they went out with."""
    segment = get_segment(segment_id)
    name, args = _checked(data)
    if _name_taken(name, other_than=segment.id):
        raise _refuse_taken(name)
    segment.name = name
    segment.filter_args = args
    segment.updated_by = actor.label
    segment.updated_at = at or utcnow()
    audit(actor, "segment.update", detail=f"segment {segment.id}: {_described(args)}")
    db.session.commit()
    return segment


def delete_segment(actor: Actor, segment_id: int) -> str:
    """Delete a segment no draft targets; campaigns sent with it keep their copy.
    Returns its name.

    Conflict ``segment_in_use`` while a campaign that was never sent targets
    it: without its segment the draft would go to the whole topic's audience.
    """
    segment = get_segment(segment_id)
    drafts = list(
        db.session.scalars(
            sa.select(Campaign.id).where(
                Campaign.segment_id == segment.id, Campaign.segment_args.is_(None)
            )
        )
    )
    if drafts:
        raise Conflict(
            N_(
                "A campaign not yet sent targets this segment (campaign %(campaigns)s); "
                "target another segment or none first."
            ),
            values={"campaigns": ", ".join(map(str, drafts))},
            code="segment_in_use",
        )
    # Sent campaigns keep the name and filter they copied at their first send.
    db.session.execute(
        sa.update(Campaign).where(Campaign.segment_id == segment.id).values(segment_id=None)
    )
    db.session.delete(segment)
    name = segment.name
    audit(actor, "segment.delete", detail=f"segment {segment.id}: {name}")
    db.session.commit()
    return name


def get_segment(segment_id: int) -> Segment:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(
            N_("No segment with id %(id)s."), values={"id": segment_id}, code="segment_not_found"
        )
    return segment


def list_segments() -> list[Segment]:
    return list(db.session.scalars(sa.select(Segment).order_by(sa.func.lower(Segment.name))))


def segment_filter(args: Mapping[str, str]) -> ContactFilter:
    """A stored filter read back. A stored value the policy no longer knows (a
    topic removed from the policy file) raises ``InvalidInput``: a campaign is
    refused rather than sent to a different set of people."""
    return parse_filter(args)


def members(args: Mapping[str, str], at: datetime) -> sa.Select[Any]:
    """SELECT the ids of the contacts a stored filter names at ``at``."""
    return matching_contacts(segment_filter(args), at=at)


def count_members(segment: Segment, at: datetime | None = None) -> int:
    """How many contacts the segment names now (one COUNT; reads only)."""
    query = members(segment.filter_args, at or utcnow()).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(query)) or 0


def campaigns_of(segment_id: int) -> list[Campaign]:
    """The campaigns that target the segment, newest first."""
    return list(
        db.session.scalars(
            sa.select(Campaign)
            .where(Campaign.segment_id == segment_id)
            .order_by(Campaign.id.desc())
        )
    )


def is_draft(campaign: Campaign) -> bool:
    return campaign.status == CampaignStatus.DRAFT.value


def _described(args: Mapping[str, str]) -> str:
    """The filter in the audit log: names and values, no personal data (a
    company prefix at most, which staff typed)."""
    return " ".join(f"{k}={v}" for k, v in sorted(args.items()))[:400]
