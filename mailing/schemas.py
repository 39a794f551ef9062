"""Schemas of the public forms (form-encoded or JSON)."""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate

from kernel.addresses import is_valid_email
from kernel.api_fields import Email, NotBlank, RequestSchema, Vocabulary


def _split(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.extend(part.strip() for part in item.split(",") if part.strip())
        else:
            raise ValidationError("Topics are names, comma-separated or repeated.")
    return out


class SignupSchema(Schema):
    """``POST /subscribe`` from a registered form (``[forms.<id>]`` in the policy file).

    ``wording``, ``wording_hash`` and ``policy_version`` are no longer read: the
    registered form says what it showed (R23), so what a post claims about its
    own wording is dropped with the other unknown fields, and old snippets that
    still send them keep working.
    """

    class Meta:
        unknown = EXCLUDE

    email = fields.String(required=True, validate=validate.Length(max=320))
    topics = fields.List(fields.String(validate=validate.Length(max=64)), load_default=list)
    name = fields.String(load_default=None, validate=validate.Length(max=200))
    company = fields.String(load_default=None, validate=validate.Length(max=200))
    country = fields.String(load_default=None, validate=validate.Length(max=2))
    language = fields.String(load_default="en", validate=validate.Length(max=8))
    form_id = fields.String(load_default=None, validate=validate.Length(max=100))
    # The page the form sat on (the snippet fills it in): browsers send only the
    # origin as Referer across sites.
    page_url = fields.String(load_default=None, validate=validate.Length(max=2000))
    # R8: the person ticked a marketing consent checkbox on the form.
    consent = fields.Boolean(load_default=False)
    # A field people never see: only robots fill it in.
    website = fields.String(load_default="")

    @pre_load
    def _normalise(self, data: Any, **kwargs: Any) -> Any:
        if not isinstance(data, dict):
            raise ValidationError("Expected an object.")
        data = {k: v for k, v in data.items() if v not in ("", None) or k == "email"}
        if "topics" in data:
            data["topics"] = _split(data["topics"])
        return data


class AddressSchema(Schema):
    """``POST /unsubscribe`` without a link: a typed address."""

    class Meta:
        unknown = EXCLUDE

    email = fields.String(required=True, validate=validate.Length(max=320))
    website = fields.String(load_default="")


class PrivacyRequestSchema(Schema):
    """``POST /privacy/requests``: a person's access or erasure request."""

    class Meta:
        unknown = EXCLUDE

    email = fields.String(required=True, validate=validate.Length(max=320))
    kind = fields.String(required=True, validate=validate.OneOf(["access", "erasure"]))
    website = fields.String(load_default="")


class CampaignCreateSchema(RequestSchema):
    """``POST /api/v1/campaigns``: a topic and the email in Swedish and English."""

    class Meta:
        unknown = RAISE

    topic = Vocabulary(
        "marketing_topic",
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "A marketing topic of the policy file."},
    )
    subject_sv = NotBlank(required=True, one_line=True, validate=validate.Length(min=1, max=200))
    body_sv = NotBlank(required=True, validate=validate.Length(min=1, max=50_000))
    subject_en = NotBlank(required=True, one_line=True, validate=validate.Length(min=1, max=200))
    body_en = NotBlank(required=True, validate=validate.Length(min=1, max=50_000))


class CampaignSchema(Schema):
    """A campaign and where every recipient stands (counts from the outbox)."""

    id = fields.Integer()
    topic = fields.String()
    channel = fields.String()
    status = fields.String(metadata={"description": "draft, sending or sent"})
    subject_sv = fields.String()
    body_sv = fields.String()
    subject_en = fields.String()
    body_en = fields.String()
    created_by = fields.String()
    created_at = fields.DateTime()
    send_started_at = fields.DateTime(allow_none=True)
    audience = fields.Integer(
        metadata={"description": "Contacts the audience query found at send time."}
    )
    queued = fields.Integer(metadata={"description": "Waiting for a worker or being sent."})
    sent = fields.Integer()
    blocked = fields.Integer(
        metadata={"description": "Stopped by the policy right before sending."}
    )
    blocked_by_reason = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "Reason codes."}
    )
    failed = fields.Integer()
    removed = fields.Integer(
        metadata={"description": "Recipients erased or purged since the send."}
    )
    hard_bounces = fields.Integer(
        metadata={"description": "Contacts whose message of this campaign bounced hard (5.x.x)."}
    )
    soft_bounces = fields.Integer(
        metadata={"description": "Contacts whose message of this campaign bounced soft (4.x.x)."}
    )
    complaints = fields.Integer(
        metadata={"description": "Contacts who reported this campaign's message as spam."}
    )
    hard_bounce_rate = fields.Float(
        allow_none=True,
        metadata={"description": "hard_bounces / (sent + failed); null before any was tried."},
    )
    soft_bounce_rate = fields.Float(
        allow_none=True,
        metadata={"description": "soft_bounces / (sent + failed); null before any was tried."},
    )
    complaint_rate = fields.Float(
        allow_none=True,
        metadata={"description": "complaints / (sent + failed); null before any was tried."},
    )
    segment_id = fields.Integer(
        allow_none=True,
        metadata={"description": "The segment that narrows the audience (staff pages set it)."},
    )
    segment_name = fields.String(
        allow_none=True,
        metadata={"description": "The segment's name as the campaign was first sent to it."},
    )
    unsubscribes = fields.Integer(
        metadata={
            "description": "Contacts who unsubscribed through this campaign's unsubscribe or "
            "preferences link, or its List-Unsubscribe one-click."
        }
    )
    objections = fields.Integer(
        metadata={
            "description": "Contacts who objected to direct marketing through this campaign's "
            "links (GDPR art. 21(3)); complaints are counted apart."
        }
    )


def _an_address(value: str) -> None:
    """What ``format: email`` promises: an address email-validator accepts."""
    if not is_valid_email(value):
        raise ValidationError("Not a valid email address.")


class BounceReportSchema(RequestSchema):
    """``POST /api/v1/bounces``: a bounce or complaint another system saw."""

    class Meta:
        unknown = RAISE

    email = Email(
        required=True,
        validate=[_an_address],
        metadata={"description": "The address that bounced or complained."},
    )
    type = fields.String(
        required=True,
        validate=validate.OneOf(["hard", "soft", "complaint"]),
        metadata={
            "description": "hard: permanent (5.x.x); soft: temporary (4.x.x); "
            "complaint: the person reported the mail as spam."
        },
    )
    source = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=100),
            validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]*$", error="Letters, digits, . _ : / -"),
        ],
        metadata={
            "description": "Who saw it (e.g. 'mailgun', 'crm-sync'); kept with the token's name.",
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]*$",
        },
    )
    message_id = fields.String(
        load_default=None,
        validate=validate.Length(min=3, max=255),
        metadata={"description": "The Message-ID of our message that bounced, with <>."},
    )
    diagnostic = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=1000),
        metadata={"description": "The receiving server's words (e.g. 'smtp; 550 5.1.1 unknown')."},
    )
    status = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[245]\.[0-9]{1,3}\.[0-9]{1,3}$"),
        metadata={
            "description": "The RFC 3463 enhanced status code, e.g. 5.1.1.",
            "pattern": r"^[245]\.[0-9]{1,3}\.[0-9]{1,3}$",
        },
    )


class BounceReceiptSchema(Schema):
    """What became of a reported bounce: nothing more about the address than that."""

    outcome = fields.String(
        required=True,
        validate=validate.OneOf(["recorded", "duplicate", "ignored"]),
        metadata={
            "description": "recorded: matched to a message of ours and recorded; "
            "duplicate: recorded before; ignored: no message of ours to that address "
            "matches, or the bounce predates the address working again; nothing changed."
        },
    )
    reason = fields.String(
        required=True,
        validate=validate.OneOf(
            [
                "undeliverable",
                "soft_bounce",
                "objection",
                "unsubscribed",
                "duplicate",
                "not_our_message",
                "unknown_type",
                "contact_gone",
                "address_fixed_since",
            ]
        ),
        metadata={"description": "The effect on the decisions, or why nothing changed."},
    )
