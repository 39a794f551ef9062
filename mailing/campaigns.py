"""Campaigns: a marketing email on one topic, sent to whoever the policy allows at send time.

Sending expands the audience with ONE set-based statement (``INSERT ... SELECT``
over ``consent.audience.audience_query``), so a million recipients never pass
through Python; it commits, and only then hands the new outbox rows to the
job queue in batches. Each row goes through ``mailing.delivery.deliver``,
which asks the policy again right before the message leaves (R10, R11).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from consent.audience import audience_ids, plan_for_audience
from consent.deliverability import COMPLAINT, HARD, SOFT
from consent.models import BounceReport
from consent.policy import decide, standings_by_id
from consent.topics import current_policy
from crm.models import Contact
from crm.services import audit
from extensions import db
from kernel.access import Actor
from kernel.errors import N_, Conflict, InvalidInput, NotFound
from kernel.timestamps import utcnow
from mailing import messages, segments
from mailing.campaign_report import CampaignOutcome, campaign_outcomes
from mailing.models import Campaign, CampaignStatus, MailKind, MailStatus, OutboxMessage
from mailing.outbox import hand_over

# Outbox ids handed to the broker per query and commit.
HAND_OVER_BATCH = 1_000
# Contacts decided per chunk by the preview.
PREVIEW_CHUNK = 5_000
CHANNEL = "email"


@dataclass(frozen=True)
class CampaignInput:
    topic: str
    subject_sv: str
    body_sv: str
    subject_en: str
    body_en: str
    # The segment that narrows the topic's audience; None: the whole audience.
    segment_id: int | None = None


def _existing_segment(segment_id: int | None) -> int | None:
    if segment_id is None:
        return None
    try:
        return segments.get_segment(segment_id).id
    except NotFound:
        raise InvalidInput(
            N_("No segment with id %(id)s."),
            values={"id": segment_id},
            code="segment_not_found",
            fields={"segment_id": ["No such segment."]},
        ) from None


def _check_texts(data: CampaignInput) -> None:
    errors: dict[str, list[str]] = {}
    for name in ("subject_sv", "subject_en"):
        value = getattr(data, name)
        if not value.strip():
            errors[name] = ["A subject is required."]
        elif "\n" in value or "\r" in value:
            errors[name] = ["A subject is one line."]
    for name in ("body_sv", "body_en"):
        if not getattr(data, name).strip():
            errors[name] = ["A body is required."]
    if errors:
        raise InvalidInput(N_("The campaign is not complete."), fields=errors)


def create_campaign(actor: Actor, data: CampaignInput, at: datetime | None = None) -> Campaign:
    """A draft campaign on a configured topic, with its text in Swedish and English."""
    policy = current_policy()
    # An unknown topic is refused here, not at send time; so is a purpose that is
    # not marketing (R19's web tracking).
    if not policy.topic(data.topic).marketing:
        raise InvalidInput(
            N_("Topic %(topic)r is not marketing."),
            values={"topic": data.topic},
            code="not_a_marketing_topic",
            fields={"topic": ["Not a marketing topic."]},
        )
    _check_texts(data)
    segment_id = _existing_segment(data.segment_id)
    campaign = Campaign(
        segment_id=segment_id,
        topic=data.topic,
        channel=CHANNEL,
        subject_sv=data.subject_sv.strip(),
        body_sv=data.body_sv.strip(),
        subject_en=data.subject_en.strip(),
        body_en=data.body_en.strip(),
        status=CampaignStatus.DRAFT.value,
        created_by=actor.label,
        created_at=at or utcnow(),
    )
    db.session.add(campaign)
    db.session.flush()
    audit(actor, "campaign.create", detail=f"campaign {campaign.id}")
    db.session.commit()
    return campaign


def target_campaign(actor: Actor, campaign_id: int, segment_id: int | None) -> Campaign:
    """Narrow a draft's audience to a segment, or (None) let it reach the whole topic.

    Conflict ``campaign_not_draft`` once it was sent: it keeps the segment it
    went out with, so that a second send reaches the same kind of people."""
    campaign = get_campaign(campaign_id)
    if campaign.status != CampaignStatus.DRAFT.value:
        raise Conflict(
            N_("A campaign that was sent keeps its segment; compose a new one for other people."),
            code="campaign_not_draft",
        )
    campaign.segment_id = _existing_segment(segment_id)
    audit(actor, "campaign.target", detail=f"campaign {campaign.id}: segment {segment_id}")
    db.session.commit()
    return campaign


def _segment_members(campaign: Campaign, at: datetime) -> sa.Select[Any] | None:
    """The contacts the campaign's segment names at ``at``: its copy once sent,
    the live segment while a draft; None when no segment narrows it."""
    if campaign.segment_args is not None:
        return segments.members(campaign.segment_args, at)
    if campaign.segment_id is not None:
        return segments.members(segments.get_segment(campaign.segment_id).filter_args, at)
    return None


def _copy_segment(campaign: Campaign) -> None:
    """At the first send: keep the segment's name and filter with the campaign,
    so that what it went to stays on record and later sends, edits or a
    deletion of the segment cannot change it."""
    if campaign.segment_id is None or campaign.segment_args is not None:
        return
    segment = segments.get_segment(campaign.segment_id)
    campaign.segment_name = segment.name
    campaign.segment_args = dict(segment.filter_args)


def get_campaign(campaign_id: int) -> Campaign:
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"No campaign with id {campaign_id}.", code="campaign_not_found")
    return campaign


def list_campaigns(limit: int = 100) -> list[Campaign]:
    return list(db.session.scalars(sa.select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Preview:
    """Who a send now would reach, and why the others would not."""

    audience: int
    not_allowed: dict[str, int] = field(default_factory=dict)
    # How many the segment names, when one narrows the campaign (audience plus
    # the not allowed); None without a segment.
    in_segment: int | None = None


def _contact_id_chunks(size: int, within: sa.Select[Any] | None = None) -> Iterator[list[int]]:
    last = 0
    while True:
        query = sa.select(Contact.id).where(Contact.id > last)
        if within is not None:
            query = query.where(Contact.id.in_(within))
        ids = list(db.session.scalars(query.order_by(Contact.id).limit(size)))
        if not ids:
            return
        yield ids
        last = ids[-1]


def preview_campaign(campaign_id: int, at: datetime | None = None) -> Preview:
    """Ask the policy about every contact (every contact of the campaign's
    segment, when one narrows it), in chunks: the audience and the reasons of
    the rest.

    This is the policy's own answer (``consent.policy.decide``), not the SQL
    pre-filter, so the figures are what the last check before each send says.
    Reads only.
    """
    campaign = get_campaign(campaign_id)
    policy = current_policy()
    topic = policy.topic(campaign.topic)
    moment = at or utcnow()
    within = _segment_members(campaign, moment)
    allowed = 0
    refused: Counter[str] = Counter()
    for ids in _contact_id_chunks(PREVIEW_CHUNK, within):
        for standing in standings_by_id(ids).values():
            decision = decide(
                standing,
                email=standing.email,
                topic=topic,
                channel=campaign.channel,
                at=moment,
                policy=policy,
            )
            if decision.allowed:
                allowed += 1
            else:
                refused[decision.reason.value] += 1
        db.session.expunge_all()
    db.session.rollback()
    return Preview(
        audience=allowed,
        not_allowed=dict(sorted(refused.items())),
        in_segment=allowed + sum(refused.values()) if within is not None else None,
    )


@dataclass(frozen=True)
class SendResult:
    campaign: Campaign
    newly_queued: int
    handed_over: int


def _queue_audience(campaign: Campaign, at: datetime) -> int:
    """One INSERT ... SELECT: an outbox row for every contact in the audience that has none yet.

    The audience is the topic's (the policy's rules) AND, when a segment
    narrows the campaign, the segment's members: a segment never adds anyone."""
    policy = current_policy()
    plan_for_audience()
    audience = audience_ids(policy.topic(campaign.topic), campaign.channel, at, policy).subquery()
    narrowed = [Contact.id.in_(sa.select(audience.c.id))]
    members = _segment_members(campaign, at)
    if members is not None:
        narrowed.append(Contact.id.in_(members))
    prefix = f"campaign:{campaign.id}:contact:"
    contact_id = sa.cast(Contact.id, sa.String)
    earlier = aliased(OutboxMessage)
    already = (
        sa.exists()
        .where(earlier.campaign_id == campaign.id, earlier.contact_id == Contact.id)
        .correlate_except(earlier)
    )
    select = sa.select(
        sa.literal(prefix) + contact_id,
        sa.literal(MailKind.MARKETING.value),
        Contact.id,
        sa.literal(campaign.id),
        sa.literal("campaign"),
        # The row keeps the raw language; rendering picks sv or en from it.
        sa.func.coalesce(Contact.language, "en"),
        sa.literal(campaign.topic),
        sa.literal({}, sa.JSON),
        sa.literal(MailStatus.QUEUED.value),
        sa.literal(0),
        # Deterministic, so a resend after a lost reply is recognisably the same mail.
        sa.literal(f"<campaign.{campaign.id}.") + contact_id + f"@{messages.sender_domain()}>",
        sa.literal(at, OutboxMessage.created_at.type),
    ).where(*narrowed, ~already)
    db.session.execute(
        sa.insert(OutboxMessage).from_select(
            [
                "idempotency_key",
                "kind",
                "contact_id",
                "campaign_id",
                "template",
                "language",
                "topic",
                "params",
                "status",
                "attempts",
                "message_id",
                "created_at",
            ],
            select,
        )
    )
    total = db.session.scalar(
        sa.select(sa.func.count()).where(OutboxMessage.campaign_id == campaign.id)
    )
    return (total or 0) - (campaign.queued_count or 0)


def send_campaign(actor: Actor, campaign_id: int, at: datetime | None = None) -> SendResult:
    """Queue the campaign for everyone the policy allows now, then hand the rows to workers.

    Sending again is safe: a contact who already has a row for this campaign
    gets none (the unique key ``campaign:<id>:contact:<id>``), so a second
    send only reaches contacts who became eligible since, and rows a broker
    outage left un-handed are handed over again. The final word on each
    recipient is the policy's, right before the send (``deliver``).
    """
    now = at or utcnow()
    # The conditional update takes the campaign's row lock first, so two
    # concurrent sends of one campaign run one after the other.
    locked = db.session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(status=CampaignStatus.SENDING.value, send_started_at=now, sent_by=actor.label)
    )
    if locked.rowcount != 1:  # type: ignore[attr-defined]
        db.session.rollback()
        raise NotFound(f"No campaign with id {campaign_id}.", code="campaign_not_found")
    campaign = get_campaign(campaign_id)
    if campaign.channel != CHANNEL:
        raise InvalidInput(
            N_("Campaigns send by %(channel)s only."),
            values={"channel": CHANNEL},
            code="unsupported_channel",
        )
    _copy_segment(campaign)
    added = _queue_audience(campaign, now)
    campaign.queued_count = (campaign.queued_count or 0) + added
    audit(actor, "campaign.send", detail=f"campaign {campaign.id}: {added} queued")
    db.session.commit()
    handed = 0
    for ids in _unhanded_chunks(campaign.id):
        handed += len(hand_over(ids))
    return SendResult(campaign=get_campaign(campaign_id), newly_queued=added, handed_over=handed)


def _unhanded_chunks(campaign_id: int) -> Iterator[list[int]]:
    last = 0
    while True:
        ids = list(
            db.session.scalars(
                sa.select(OutboxMessage.id)
                .where(
                    OutboxMessage.campaign_id == campaign_id,
                    OutboxMessage.id > last,
                    OutboxMessage.status == MailStatus.QUEUED.value,
                    OutboxMessage.handed_over_at.is_(None),
                )
                .order_by(OutboxMessage.id)
                .limit(HAND_OVER_BATCH)
            )
        )
        db.session.commit()
        if not ids:
            return
        yield ids
        last = ids[-1]


@dataclass(frozen=True)
class BounceCounts:
    """What came back for a campaign: the contacts whose message of it bounced
    hard or soft, or who complained, each counted once per type."""

    hard: int = 0
    soft: int = 0
    complaints: int = 0

    def rates(self, tried: int) -> dict[str, float | None]:
        """Each count as a share of the messages tried (sent, or refused while
        sending); None before any was tried."""
        if not tried:
            return {"hard": None, "soft": None, "complaints": None}
        return {
            "hard": round(self.hard / tried, 4),
            "soft": round(self.soft / tried, 4),
            "complaints": round(self.complaints / tried, 4),
        }


@dataclass(frozen=True)
class Report:
    """Where every recipient of a campaign stands."""

    campaign: Campaign
    audience: int  # outbox rows ever queued for it (contacts in the audience at send time)
    queued: int  # waiting for a worker or being sent
    sent: int
    blocked: int
    failed: int
    # Rows gone with their contact (erasure, retention) after the send.
    removed: int
    blocked_by_reason: dict[str, int]
    bounces: BounceCounts = field(default_factory=BounceCounts)
    # Contacts who unsubscribed or objected through one of its emails' links
    # (mailing.campaign_report).
    unsubscribes: int = 0
    objections: int = 0

    @property
    def tried(self) -> int:
        """Messages handed to the mail server: sent, or refused by it (failed)."""
        return self.sent + self.failed

    @property
    def bounce_rates(self) -> dict[str, float | None]:
        return self.bounces.rates(self.tried)

    @property
    def status(self) -> str:
        """``sent`` once a sending campaign has nothing left to send."""
        if self.campaign.status == CampaignStatus.SENDING and self.queued == 0:
            return CampaignStatus.SENT.value
        return self.campaign.status


def bounce_counts(campaign_id: int) -> BounceCounts:
    """Bounces and complaints tied to the campaign's messages (``consent.models.BounceReport``
    rows carry the campaign of the message that came back), contacts counted once per type."""
    return _bounce_counts([campaign_id]).get(campaign_id, BounceCounts())


def _bounce_counts(campaign_ids: Sequence[int]) -> dict[int, BounceCounts]:
    counts: dict[int, dict[str, int]] = {}
    for campaign_id, kind, n in db.session.execute(
        sa.select(
            # Not null under the IN below; type_coerce only tells the type checker so.
            sa.type_coerce(BounceReport.campaign_id, sa.Integer),
            BounceReport.type,
            sa.func.count(sa.distinct(BounceReport.contact_id)),
        )
        .where(BounceReport.campaign_id.in_(campaign_ids))
        .group_by(BounceReport.campaign_id, BounceReport.type)
    ):
        counts.setdefault(campaign_id, {})[kind] = n
    return {
        campaign_id: BounceCounts(
            hard=c.get(HARD, 0), soft=c.get(SOFT, 0), complaints=c.get(COMPLAINT, 0)
        )
        for campaign_id, c in counts.items()
    }


def report(campaign_id: int) -> Report:
    """Counts per status and block reason, from the outbox. Reads only (a GET calls it)."""
    return reports([get_campaign(campaign_id)])[0]


def reports(listed: Sequence[Campaign]) -> list[Report]:
    """``report`` for each campaign of ``listed``, in its order, in a fixed number of
    queries however many campaigns there are (the campaigns page lists up to 100)."""
    ids = [c.id for c in listed]
    by_status: dict[int, Counter[str]] = {i: Counter() for i in ids}
    by_reason: dict[int, Counter[str]] = {i: Counter() for i in ids}
    for campaign_id, status, reason, count in db.session.execute(
        sa.select(
            sa.type_coerce(OutboxMessage.campaign_id, sa.Integer),
            OutboxMessage.status,
            OutboxMessage.block_reason,
            sa.func.count(),
        )
        .where(OutboxMessage.campaign_id.in_(ids))
        .group_by(OutboxMessage.campaign_id, OutboxMessage.status, OutboxMessage.block_reason)
    ):
        by_status[campaign_id][status] += count
        if status == MailStatus.BLOCKED:
            by_reason[campaign_id][reason or "unknown"] += count
    outcomes = {o.campaign_id: o for o in campaign_outcomes(ids)} if ids else {}
    bounces = _bounce_counts(ids) if ids else {}
    return [
        _report(c, by_status[c.id], by_reason[c.id], outcomes.get(c.id), bounces.get(c.id))
        for c in listed
    ]


def _report(
    campaign: Campaign,
    by_status: Counter[str],
    by_reason: Counter[str],
    outcome: CampaignOutcome | None,
    bounces: BounceCounts | None,
) -> Report:
    total = sum(by_status.values())
    return Report(
        unsubscribes=outcome.unsubscribes if outcome else 0,
        objections=outcome.objections if outcome else 0,
        bounces=bounces or BounceCounts(),
        campaign=campaign,
        audience=campaign.queued_count,
        queued=by_status[MailStatus.QUEUED] + by_status[MailStatus.SENDING],
        sent=by_status[MailStatus.SENT],
        blocked=by_status[MailStatus.BLOCKED],
        failed=by_status[MailStatus.FAILED],
        removed=max(campaign.queued_count - total, 0),
        blocked_by_reason=dict(sorted(by_reason.items())),
    )
