"""What each campaign caused: sent, bounced, complaints, unsubscribes and objections.

The counts come from three places, each tied to the campaign by the message
it is about, never by time or guesswork:

- ``sent``: the campaign's outbox rows the mail server accepted;
- ``bounced`` and ``complaints``: ``consent.models.BounceReport`` rows, which
  carry the campaign of the returned message (``mailing.bounces`` finds it by
  the VERP token or the Message-ID);
- ``unsubscribes`` and ``objections``: consent events made through the
  unsubscribe or preferences link of one of its emails (the link's signed
  message id, checked against the contact, see
  ``mailing.subscription_flows``) or the List-Unsubscribe one-click.

People are counted, not reports: a contact who bounced twice, or unsubscribed
from two topics in one visit, counts once. A complaint is counted as a
complaint only (its ledger event names the bounce report, not the campaign),
so the objections are the ones people made through the links.

One statement for any number of campaigns: each source is grouped by
campaign in SQL and joined to the campaign rows; no row of a recipient ever
reaches Python. Reads only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute

from consent.deliverability import COMPLAINT, HARD, SOFT
from consent.models import BounceReport, ConsentEvent, EventKind
from extensions import db
from mailing.models import Campaign, MailStatus, OutboxMessage


@dataclass(frozen=True)
class CampaignOutcome:
    campaign_id: int
    # The campaign's English subject: campaigns have no other name.
    name: str
    sent_at: datetime | None
    sent: int
    bounced: int
    complaints: int
    unsubscribes: int
    objections: int


def _people(
    condition: sa.ColumnElement[bool], person: InstrumentedAttribute[int]
) -> sa.ColumnElement[int]:
    """The number of distinct contacts for whom ``condition`` holds."""
    return sa.func.count(sa.distinct(sa.case((condition, person))))


def campaign_outcomes(campaign_ids: Sequence[int] | None = None) -> list[CampaignOutcome]:
    """The outcome of the campaigns ``campaign_ids`` (every campaign when None),
    newest first. An id that names no campaign is left out.

    ``bounced`` counts contacts whose message of the campaign bounced, hard or
    soft; ``unsubscribes`` contacts who unsubscribed (from a topic or from
    everything) through one of its emails, ``objections`` those who objected
    (GDPR art. 21(3)) through one. Contacts erased since are gone from every
    count, as their rows are.
    """
    sent = (
        sa.select(OutboxMessage.campaign_id.label("campaign_id"), sa.func.count().label("n"))
        .where(OutboxMessage.status == MailStatus.SENT.value)
        .group_by(OutboxMessage.campaign_id)
    )
    returned = sa.select(
        BounceReport.campaign_id.label("campaign_id"),
        _people(BounceReport.type.in_((HARD, SOFT)), BounceReport.contact_id).label("bounced"),
        _people(BounceReport.type == COMPLAINT, BounceReport.contact_id).label("complaints"),
    ).group_by(BounceReport.campaign_id)
    kinds = (EventKind.UNSUBSCRIBED.value, EventKind.OBJECTED.value)
    caused = sa.select(
        ConsentEvent.campaign_id.label("campaign_id"),
        _people(ConsentEvent.kind == EventKind.UNSUBSCRIBED.value, ConsentEvent.contact_id).label(
            "unsubscribes"
        ),
        _people(ConsentEvent.kind == EventKind.OBJECTED.value, ConsentEvent.contact_id).label(
            "objections"
        ),
    ).group_by(ConsentEvent.campaign_id)
    if campaign_ids is not None:
        wanted = list(campaign_ids)
        sent = sent.where(OutboxMessage.campaign_id.in_(wanted))
        returned = returned.where(BounceReport.campaign_id.in_(wanted))
        caused = caused.where(ConsentEvent.campaign_id.in_(wanted), ConsentEvent.kind.in_(kinds))
    else:
        sent = sent.where(OutboxMessage.campaign_id.is_not(None))
        returned = returned.where(BounceReport.campaign_id.is_not(None))
        # Matches the partial index's condition, so the index serves it.
        caused = caused.where(ConsentEvent.campaign_id.is_not(None), ConsentEvent.kind.in_(kinds))
    s, r, c = sent.subquery(), returned.subquery(), caused.subquery()
    query = (
        sa.select(
            Campaign.id,
            Campaign.subject_en,
            Campaign.send_started_at,
            sa.func.coalesce(s.c.n, 0),
            sa.func.coalesce(r.c.bounced, 0),
            sa.func.coalesce(r.c.complaints, 0),
            sa.func.coalesce(c.c.unsubscribes, 0),
            sa.func.coalesce(c.c.objections, 0),
        )
        .outerjoin(s, s.c.campaign_id == Campaign.id)
        .outerjoin(r, r.c.campaign_id == Campaign.id)
        .outerjoin(c, c.c.campaign_id == Campaign.id)
        .order_by(Campaign.id.desc())
    )
    if campaign_ids is not None:
        query = query.where(Campaign.id.in_(wanted))
    return [CampaignOutcome(*row) for row in db.session.execute(query).all()]
