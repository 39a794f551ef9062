"""HTTP API of campaigns: create, send, and the report of one."""

from __future__ import annotations

from typing import Any

from flask import Flask, g
from flask_smorest import Blueprint

from extensions import api, csrf
from kernel.access import requires
from mailing import campaigns, provider_bounces
from mailing.schemas import (
    BounceReceiptSchema,
    BounceReportSchema,
    CampaignCreateSchema,
    CampaignSchema,
)

blp = Blueprint(
    "mailing_api", __name__, url_prefix="/api/v1", description="Campaigns, bounces and complaints"
)


def _dump(report: campaigns.Report) -> dict[str, Any]:
    campaign = report.campaign
    return {
        "id": campaign.id,
        "topic": campaign.topic,
        "channel": campaign.channel,
        "status": report.status,
        "subject_sv": campaign.subject_sv,
        "body_sv": campaign.body_sv,
        "subject_en": campaign.subject_en,
        "body_en": campaign.body_en,
        "created_by": campaign.created_by,
        "created_at": campaign.created_at,
        "send_started_at": campaign.send_started_at,
        "audience": report.audience,
        "queued": report.queued,
        "sent": report.sent,
        "blocked": report.blocked,
        "blocked_by_reason": report.blocked_by_reason,
        "failed": report.failed,
        "removed": report.removed,
        "hard_bounces": report.bounces.hard,
        "soft_bounces": report.bounces.soft,
        "complaints": report.bounces.complaints,
        "hard_bounce_rate": report.bounce_rates["hard"],
        "soft_bounce_rate": report.bounce_rates["soft"],
        "complaint_rate": report.bounce_rates["complaints"],
        "segment_id": campaign.segment_id,
        "segment_name": campaign.segment_name,
        "unsubscribes": report.unsubscribes,
        "objections": report.objections,
    }


@blp.post("/campaigns")
@requires("campaigns.manage")
@blp.arguments(CampaignCreateSchema)
@blp.response(201, CampaignSchema)
def create_campaign(data: dict[str, Any]) -> Any:
    """Create a draft campaign on a topic, in Swedish and English."""
    campaign = campaigns.create_campaign(g.actor, campaigns.CampaignInput(**data))
    return _dump(campaigns.report(campaign.id))


@blp.post("/campaigns/<int:campaign_id>/send")
@requires("campaigns.manage")
@blp.response(202, CampaignSchema)
def send_campaign(campaign_id: int) -> Any:
    """Queue the campaign for everyone the policy allows now; safe to repeat (no duplicates).

    Each recipient is checked again by the policy right before their message
    leaves; the report then counts them as sent or blocked, by reason.
    """
    campaigns.send_campaign(g.actor, campaign_id)
    return _dump(campaigns.report(campaign_id))


@blp.get("/campaigns/<int:campaign_id>")
@requires("campaigns.manage")
@blp.response(200, CampaignSchema)
def read_campaign(campaign_id: int) -> Any:
    """A campaign with its audience size and its sent, blocked (by reason) and failed counts."""
    return _dump(campaigns.report(campaign_id))


@blp.post("/bounces")
@requires("bounces.record")
@blp.arguments(BounceReportSchema)
@blp.response(200, BounceReceiptSchema)
def report_bounce(data: dict[str, Any]) -> Any:
    """Record a bounce or complaint another system saw, through the one bounce path.

    A hard bounce makes the address undeliverable for email, soft bounces do
    after several, a complaint is the person's objection to email marketing
    (docs/bounces.md). A report about an address we sent nothing to lately
    changes nothing and answers ``ignored``. The answer says only that: the
    caller's role may look up the contact anyway, and learns nothing else.
    """
    outcome = provider_bounces.report_bounce(g.actor, **data)
    return {"outcome": outcome.status, "reason": outcome.reason}


def register(app: Flask) -> None:
    csrf.exempt(blp)
    api.register_blueprint(blp)
