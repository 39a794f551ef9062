"""Staff pages of campaigns (marketing role): list, compose, preview, send, live counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, g, render_template, request
from marshmallow import fields, pre_load, validate

from kernel.access import staff_requires
from kernel.inputs import MAX_ROW_ID
from kernel.pages import FormSchema, add_staff_page, run_form, see_other, staff_blueprint
from mailing import campaigns, repermission, segments

bp = staff_blueprint("staff_campaigns", __name__)


class _SegmentChoice(FormSchema):
    # Empty: no segment, the whole topic's audience.
    segment_id = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=MAX_ROW_ID)
    )

    @pre_load
    def _none_chosen(self, data: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        if data.get("segment_id") == "":
            return {**data, "segment_id": None}
        return dict(data)


class ComposeForm(_SegmentChoice):
    topic = fields.String(required=True, validate=validate.Length(min=1, max=64))
    subject_sv = fields.String(required=True, validate=validate.Length(min=1, max=200))
    body_sv = fields.String(required=True, validate=validate.Length(min=1, max=50_000))
    subject_en = fields.String(required=True, validate=validate.Length(min=1, max=200))
    body_en = fields.String(required=True, validate=validate.Length(min=1, max=50_000))


class TargetForm(_SegmentChoice):
    pass


class SendForm(FormSchema):
    # The explicit "yes, send it" box: a send cannot be taken back.
    confirm = fields.String(
        required=True,
        validate=validate.Equal("yes", error="Tick the box to confirm."),
        error_messages={"required": "Tick the box to confirm."},
    )


@bp.get("/campaigns")
@staff_requires("campaigns.manage")
def campaign_list() -> Any:
    """Every campaign with its status, and the form to compose a new one."""
    from consent.topics import current_policy

    reports = campaigns.reports(campaigns.list_campaigns())
    return render_template(
        "staff/campaigns.html",
        reports=reports,
        topics=list(current_policy().marketing_topics.values()),
        repermission=repermission.outlook(),
        segments=segments.list_segments(),
    )


@bp.post("/campaigns")
@staff_requires("campaigns.manage")
def compose() -> Any:
    created = run_form(
        ComposeForm(),
        lambda d: campaigns.create_campaign(g.actor, campaigns.CampaignInput(**d)),
        "Campaign saved as a draft.",
    )
    if created is None:
        return see_other("staff_campaigns.campaign_list")
    return see_other("staff_campaigns.campaign_page", campaign_id=created.id)


@bp.get("/campaigns/<int:campaign_id>")
@staff_requires("campaigns.manage")
def campaign_page(campaign_id: int) -> Any:
    """The texts, the counts so far, and on request the audience a send now would reach."""
    report = campaigns.report(campaign_id)
    preview = campaigns.preview_campaign(campaign_id) if request.args.get("preview") else None
    return render_template(
        "staff/campaign.html", report=report, preview=preview, segments=segments.list_segments()
    )


@bp.post("/campaigns/<int:campaign_id>/segment")
@staff_requires("campaigns.manage")
def target(campaign_id: int) -> Any:
    """A draft's segment, or none (the whole topic's audience)."""
    run_form(
        TargetForm(),
        lambda d: campaigns.target_campaign(g.actor, campaign_id, d["segment_id"]),
        "The campaign's audience is set.",
    )
    return see_other("staff_campaigns.campaign_page", campaign_id=campaign_id)


@bp.post("/campaigns/<int:campaign_id>/send")
@staff_requires("campaigns.manage")
def send(campaign_id: int) -> Any:
    run_form(
        SendForm(),
        lambda d: campaigns.send_campaign(g.actor, campaign_id),
        "The campaign is on its way.",
    )
    return see_other("staff_campaigns.campaign_page", campaign_id=campaign_id)


@bp.post("/campaigns/repermission")
@staff_requires("campaigns.manage")
def send_repermission() -> Any:
    """R24: ask contacts whose consent predates the latest major policy version to
    confirm under it (their consent stands meanwhile)."""
    run_form(
        SendForm(),
        lambda d: repermission.send_repermission(g.actor),
        "Re-permission requests are on their way.",
    )
    return see_other("staff_campaigns.campaign_list")


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    add_staff_page(app, "staff_campaigns.campaign_list", "Campaigns", "campaigns.manage")
