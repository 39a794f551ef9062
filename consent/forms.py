"""Marshmallow schemas for the staff pages' HTML forms: about a contact, and imports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate

from consent.models import DELIVERY_STATUSES, OBJECTION_CHANNELS
from crm.models import ActivityKind, activity_time_problem
from kernel.inputs import MAX_ROW_ID, ROW_ID
from kernel.pages import FormSchema


class SearchQuery(FormSchema):
    q = fields.String(load_default="", validate=validate.Length(max=200))


class ActivityForm(FormSchema):
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in ActivityKind]))
    # <input type="datetime-local"> sends no zone; the form says the time is UTC.
    occurred_at = fields.String(required=True, validate=validate.Length(min=1, max=40))
    note = fields.String(load_default=None, validate=validate.Length(max=5000))

    @post_load
    def _in_utc(self, data: dict[str, Any], **kwargs: object) -> dict[str, Any]:
        try:
            moment = datetime.fromisoformat(data["occurred_at"])
        except ValueError:
            raise ValidationError("Not a date and time.", "occurred_at") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        # Year 1 parses, and would have made retention count from long ago.
        problem = activity_time_problem(moment, datetime.now(UTC))
        if problem:
            raise ValidationError(problem, "occurred_at")
        data["occurred_at"] = moment
        data["note"] = (data.get("note") or "").strip() or None
        return data


class ObjectionForm(FormSchema):
    received_via = fields.String(required=True, validate=validate.OneOf(OBJECTION_CHANNELS))
    # "all", or one configured channel (checked by the service).
    channel = fields.String(load_default="all", validate=validate.Length(min=1, max=16))
    note = fields.String(load_default=None, validate=validate.Length(max=1000))


class WithdrawalForm(FormSchema):
    # "all", or one configured topic / channel (checked by the service).
    topic = fields.String(load_default="all", validate=validate.Length(min=1, max=64))
    channel = fields.String(load_default="all", validate=validate.Length(min=1, max=16))
    received_via = fields.String(required=True, validate=validate.OneOf(OBJECTION_CHANNELS))
    note = fields.String(load_default=None, validate=validate.Length(max=1000))


class NoteForm(FormSchema):
    note = fields.String(load_default=None, validate=validate.Length(max=1000))


class LegalHoldForm(FormSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class ImportUploadForm(FormSchema):
    # Checked by imports.parse_basis, which explains why consent cannot be imported.
    basis = fields.String(required=True, validate=validate.Length(min=1, max=32))
    source = fields.String(required=True, validate=validate.Length(min=1, max=200))
    # Checked by imports.plan_for: a preset by name, or the importer's JSON mapping.
    preset = fields.String(load_default=None, validate=validate.Length(max=32))
    mapping = fields.String(load_default=None, validate=validate.Length(max=16 * 1024))


class RejectionsPage(FormSchema):
    # A row number of the file: bounded as a row id is (SQLite cannot bind over 2**63).
    after_row = fields.Integer(load_default=0, validate=ROW_ID)


# Rights requests: what staff record when they act on the person's request ---------------

# "none": staff act on their own (a correction), not on a request from the person.
NOT_A_REQUEST = "none"


class RequestForm(FormSchema):
    """How staff received the person's request (phone, letter, ...), or "none"."""

    received_via = fields.String(
        load_default=NOT_A_REQUEST, validate=validate.OneOf((NOT_A_REQUEST, *OBJECTION_CHANNELS))
    )

    @post_load
    def _none_is_no_request(self, data: dict[str, Any], **kwargs: object) -> dict[str, Any]:
        if data.get("received_via") == NOT_A_REQUEST:
            data["received_via"] = None
        return data


class RestrictionForm(RequestForm):
    note = fields.String(load_default=None, validate=validate.Length(max=1000))


class ErasureForm(RequestForm):
    # The confirmation page's explicit "yes": a stray post erases nothing.
    confirm = fields.String(required=True, validate=validate.Equal("yes"))


class RectificationForm(RequestForm):
    email = fields.String(required=True, validate=validate.Length(min=3, max=320))
    name = fields.String(load_default="", validate=validate.Length(max=200))
    phone = fields.String(load_default="", validate=validate.Length(max=40))
    country = fields.String(load_default="", validate=validate.Length(max=2))
    language = fields.String(load_default="", validate=validate.Length(max=8))

    @post_load
    def _stripped(self, data: dict[str, Any], **kwargs: object) -> dict[str, Any]:
        for key in ("email", "name", "phone", "country", "language"):
            data[key] = data[key].strip()
        return data


class ReasonForm(FormSchema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class InboxQuery(FormSchema):
    show = fields.String(
        load_default="open", validate=validate.OneOf(("open", "overdue", "closed", "all"))
    )


class WebhookLogQuery(FormSchema):
    """The delivery log page's filters: a status, and where a page continues."""

    status = fields.String(load_default=None, validate=validate.OneOf(["", *DELIVERY_STATUSES]))
    before = fields.Integer(load_default=None, validate=validate.Range(min=1, max=MAX_ROW_ID))

    @post_load
    def _blank_is_none(self, data: dict[str, Any], **kwargs: object) -> dict[str, Any]:
        data["status"] = data.get("status") or None
        return data


class ReplaySinceForm(FormSchema):
    """Replay every change after a change id, or since a UTC time (one of them)."""

    after_change = fields.String(load_default="", validate=validate.Length(max=24))
    since = fields.String(load_default="", validate=validate.Length(max=40))

    @post_load
    def _one_of(self, data: dict[str, Any], **kwargs: object) -> dict[str, Any]:
        after, since = data["after_change"].strip(), data["since"].strip()
        if bool(after) == bool(since):
            raise ValidationError("Give either a change id or a time.", "after_change")
        out: dict[str, Any] = {"after_change": None, "since": None}
        if after:
            # A change feed item's id (chg_<n>, the webhook-id), or its number.
            number = after.removeprefix("chg_")
            if not number.isascii() or not number.isdigit() or len(number) > 18:
                raise ValidationError("Not a change id (chg_<n>).", "after_change")
            out["after_change"] = int(number)
        else:
            try:
                moment = datetime.fromisoformat(since)
            except ValueError:
                raise ValidationError("Not a date and time.", "since") from None
            out["since"] = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return out


class BulkActionForm(FormSchema):
    """The confirmation of a bulk action; the filter travels beside it
    (``consent.contact_filters.parse_filter`` reads it from the same form)."""

    action = fields.String(required=True, validate=validate.Length(min=1, max=32))
    reason = fields.String(load_default=None, validate=validate.Length(max=500))
    # The number of contacts the confirmation page showed.
    confirmed = fields.Integer(required=True, strict=False, validate=ROW_ID)
    # The moment the confirmation page read the list at (ISO 8601, UTC).
    as_of = fields.AwareDateTime(required=True, default_timezone=UTC)
