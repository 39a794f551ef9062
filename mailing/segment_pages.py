"""Staff pages of segments (marketing role): list with live counts, create, edit, delete."""

from __future__ import annotations

from typing import Any

from flask import Flask, g, render_template, request
from marshmallow import fields, validate

from consent.contact_filters import FIELDS, filter_choices
from kernel.access import staff_requires
from kernel.errors import N_
from kernel.pages import FormSchema, add_staff_page, run_form, see_other, staff_blueprint
from mailing import segments

bp = staff_blueprint("staff_segments", __name__)


class SegmentForm(FormSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=segments.MAX_NAME))


class DeleteForm(FormSchema):
    confirm = fields.String(
        required=True,
        validate=validate.Equal("yes", error=N_("Tick the box to confirm.")),
        error_messages={"required": N_("Tick the box to confirm.")},
    )


def _posted_filter() -> dict[str, str]:
    """The filter fields of the posted form; ``parse_filter`` checks them."""
    return {name: request.form[name] for name in FIELDS if name in request.form}


@bp.get("/segments")
@staff_requires("segments.manage")
def segment_list() -> Any:
    """Every segment with how many contacts it names now, and the form for a new one."""
    shown = [(s, segments.count_members(s)) for s in segments.list_segments()]
    return render_template(
        "staff/segments.html", segments=shown, args=request.args.to_dict(), **filter_choices()
    )


@bp.post("/segments")
@staff_requires("segments.manage")
def create() -> Any:
    created = run_form(
        SegmentForm(),
        lambda d: segments.create_segment(
            g.actor, segments.SegmentInput(d["name"], _posted_filter())
        ),
        "Segment saved.",
    )
    if created is None:
        return see_other("staff_segments.segment_list")
    return see_other("staff_segments.segment_page", segment_id=created.id)


@bp.get("/segments/<int:segment_id>")
@staff_requires("segments.manage")
def segment_page(segment_id: int) -> Any:
    """One segment: its filter to edit, its live count, the campaigns that target it."""
    segment = segments.get_segment(segment_id)
    return render_template(
        "staff/segment.html",
        segment=segment,
        count=segments.count_members(segment),
        campaigns=segments.campaigns_of(segment.id),
        args=segment.filter_args,
        **filter_choices(),
    )


@bp.post("/segments/<int:segment_id>")
@staff_requires("segments.manage")
def update(segment_id: int) -> Any:
    run_form(
        SegmentForm(),
        lambda d: segments.update_segment(
            g.actor, segment_id, segments.SegmentInput(d["name"], _posted_filter())
        ),
        "Segment saved.",
    )
    return see_other("staff_segments.segment_page", segment_id=segment_id)


@bp.post("/segments/<int:segment_id>/delete")
@staff_requires("segments.manage")
def delete(segment_id: int) -> Any:
    done = run_form(
        DeleteForm(),
        lambda d: segments.delete_segment(g.actor, segment_id),
        "Segment deleted.",
    )
    if done is None:
        return see_other("staff_segments.segment_page", segment_id=segment_id)
    return see_other("staff_segments.segment_list")


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    add_staff_page(app, "staff_segments.segment_list", "Segments", "segments.manage")
