"""PLACEHOLDER until branch i23-segments merges (engineer "segments" owns this
module; at the merge take theirs whole). The agreed interface only: sent
counts from the outbox; the attributed outcomes are zero here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from extensions import db
from mailing.models import Campaign, MailStatus, OutboxMessage


@dataclass(frozen=True)
class CampaignOutcome:
    campaign_id: int
    name: str
    sent_at: datetime | None
    sent: int
    bounced: int
    complaints: int
    unsubscribes: int
    objections: int


def campaign_outcomes(campaign_ids: Sequence[int] | None = None) -> list[CampaignOutcome]:
    sent = sa.func.count(OutboxMessage.id).filter(OutboxMessage.status == MailStatus.SENT.value)
    query = (
        sa.select(Campaign.id, Campaign.subject_en, Campaign.send_started_at, sent)
        .outerjoin(OutboxMessage, OutboxMessage.campaign_id == Campaign.id)
        .group_by(Campaign.id)
        .order_by(Campaign.id)
    )
    if campaign_ids is not None:
        query = query.where(Campaign.id.in_(list(campaign_ids)))
    return [
        CampaignOutcome(cid, name, at, count, 0, 0, 0, 0)
        for cid, name, at, count in db.session.execute(query)
    ]
