"""Marshmallow schemas for the consent part of the HTTP API."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from consent.models import OBJECTION_CHANNELS, Basis, InterestKind
from crm.schemas import CompanyInputSchema, ContactSchema, UtcDateTime
from kernel.api_fields import (
    CountryCode,
    Email,
    LanguageCode,
    NotBlank,
    PastDateTime,
    RequestSchema,
    SourceName,
    Vocabulary,
)
from kernel.inputs import ROW_ID

MAX_BATCH = 10_000


class EvidenceSchema(RequestSchema):
    # Not after now (the use case refuses a consent obtained in the future).
    obtained_at = PastDateTime(required=True)
    policy_version = fields.String(required=True, validate=validate.Length(min=1, max=40))
    wording = fields.String(validate=validate.Length(min=1, max=20_000))
    wording_hash = fields.String(validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    ip_address = fields.String(allow_none=True, validate=validate.Length(max=64))
    user_agent = fields.String(allow_none=True, validate=validate.Length(max=400))
    form_id = fields.String(allow_none=True, validate=validate.Length(max=100))
    page_url = fields.String(allow_none=True, validate=validate.Length(max=500))

    @validates_schema
    def _wording_given(self, data: dict, **kwargs: object) -> None:
        if not data.get("wording") and not data.get("wording_hash"):
            raise ValidationError(
                "Give the wording shown, or its SHA-256 as wording_hash.", "wording"
            )

    # Said as if/then rather than anyOf: generated clients read an anyOf as a union
    # of types, and this is one type with a rule.
    openapi_extra = {
        "if": {"not": {"required": ["wording"]}},
        "then": {"required": ["wording_hash"]},
    }


class ConfirmationSchema(RequestSchema):
    """A double opt-in the caller ran itself (R7, R8): the confirming event's evidence."""

    confirmed_at = PastDateTime(
        required=True,
        metadata={
            "description": "When the person confirmed; not before evidence.obtained_at "
            "(422 invalid_confirmation), not in the future."
        },
    )
    ip_address = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "The IP address the confirmation came from.",
            "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
        },
    )
    message_id = NotBlank(
        required=True,
        validate=validate.Length(min=1, max=180),
        metadata={"description": "The Message-ID of the confirmation email the person answered."},
    )
    user_agent = fields.String(allow_none=True, validate=validate.Length(max=400))


_SOURCE_DOC = {
    "description": "Your system's short code, e.g. crm-sync; not blank, and not one of the "
    "names reserved for the person's own acts through this service's links "
    "(422 reserved_source)."
}


class BasisSchema(RequestSchema):
    """The legal basis, as the server reads it; described as one of
    ``ConsentBasis`` and ``LegitimateInterestBasis`` (``openapi_extra``)."""

    type = fields.String(required=True, validate=validate.OneOf([b.value for b in Basis]))
    kind = fields.String(validate=validate.OneOf([k.value for k in InterestKind]))
    # The ledger's event column holds 32 characters (a short code: "crm-sync").
    source = SourceName(
        required=True, validate=validate.Length(min=1, max=32), metadata=_SOURCE_DOC
    )
    topics = fields.List(
        fields.String(validate=validate.Length(max=64)), validate=validate.Length(max=50)
    )
    evidence = fields.Nested(EvidenceSchema)
    confirmation = fields.Nested(
        ConfirmationSchema,
        metadata={
            "description": "Only for a double opt-in already confirmed elsewhere, with its "
            "evidence; without it a consent that needs the double opt-in is pending and the "
            "person is sent the confirmation email."
        },
    )
    # Consent only: the channel the person said yes to (checked against the policy file).
    channel = fields.String(load_default="email", validate=validate.Length(min=1, max=16))

    openapi_extra = {
        "type": "object",
        "oneOf": [
            {"$ref": "#/components/schemas/ConsentBasis"},
            {"$ref": "#/components/schemas/LegitimateInterestBasis"},
        ],
        "discriminator": {
            "propertyName": "type",
            "mapping": {
                "consent": "#/components/schemas/ConsentBasis",
                "legitimate_interest": "#/components/schemas/LegitimateInterestBasis",
            },
        },
    }


class ConsentBasisSchema(RequestSchema):
    """Documentation of ``BasisSchema`` with ``type: consent`` (the use case's rules)."""

    type = fields.String(required=True, validate=validate.OneOf([Basis.CONSENT.value]))
    source = SourceName(
        required=True, validate=validate.Length(min=1, max=32), metadata=_SOURCE_DOC
    )
    topics = fields.List(
        Vocabulary("consent_topic"),
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"description": "Topics that take consent (the policy file's)."},
    )
    evidence = fields.Nested(
        EvidenceSchema,
        required=True,
        metadata={
            "description": "policy_version must be a published one once any is "
            "(422 unknown_policy_version), and the wording one it published."
        },
    )
    confirmation = BasisSchema._declared_fields["confirmation"]
    channel = Vocabulary("channel", load_default="email")


class LegitimateInterestBasisSchema(RequestSchema):
    """Documentation of ``BasisSchema`` with ``type: legitimate_interest``."""

    type = fields.String(required=True, validate=validate.OneOf([Basis.LEGITIMATE_INTEREST.value]))
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in InterestKind]))
    source = SourceName(
        required=True, validate=validate.Length(min=1, max=32), metadata=_SOURCE_DOC
    )


class ContactCreateSchema(RequestSchema):
    email = Email(required=True)
    name = fields.String(allow_none=True, validate=validate.Length(max=200))
    phone = fields.String(allow_none=True, validate=validate.Length(max=40))
    country = CountryCode(allow_none=True)
    language = LanguageCode()
    company = fields.Nested(CompanyInputSchema, allow_none=True)
    basis = fields.Nested(BasisSchema)


class TopicOutcomeSchema(Schema):
    topic = fields.String()
    status = fields.String(
        metadata={
            "description": "consent, pending_confirmation, or refused (a channel other than "
            "email after the person's no there: nothing is recorded)"
        }
    )
    reason = fields.String(
        metadata={
            "description": "recorded, already_held, confirmed_elsewhere, "
            "double_opt_in_required (R8), person_said_no (X6)"
        }
    )


class ConsentOutcomeSchema(Schema):
    """What a consent sent to ``POST /api/v1/contacts`` became (R7, R8, X6)."""

    status = fields.String(
        metadata={
            "description": "pending_confirmation while any topic awaits the person's "
            "confirmation, else refused where any topic was, else consent"
        }
    )
    confirmation_email = fields.String(
        allow_none=True,
        metadata={
            "description": "queued (sent to the person now), already_sent (an earlier "
            "confirmation email asks for these topics), held_back (the mailbox had its share; "
            "the next email confirms them), or null (none needed)"
        },
    )
    topics = fields.List(fields.Nested(TopicOutcomeSchema))


class ContactRegisteredSchema(ContactSchema):
    consent = fields.Nested(
        ConsentOutcomeSchema,
        allow_none=True,
        metadata={"description": "For a consent basis: what it became; else null."},
    )


class DecisionSchema(Schema):
    email = fields.String()
    contact_id = fields.Integer(allow_none=True)
    topic = fields.String()
    channel = fields.String()
    allowed = fields.Boolean()
    basis = fields.String(allow_none=True)
    reason = fields.String()
    since = fields.DateTime(allow_none=True)
    explanation = fields.String()
    event_id = fields.Integer(allow_none=True)


class PermissionsSchema(Schema):
    contact_id = fields.Integer()
    email = fields.String()
    decisions = fields.List(fields.Nested(DecisionSchema))


class PermissionsQuerySchema(RequestSchema):
    at = UtcDateTime()


class BatchCheckSchema(RequestSchema):
    emails = fields.List(
        Email(validate=validate.Length(max=320)),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH),
    )
    topic = Vocabulary("topic", required=True, validate=validate.Length(min=1, max=64))
    channel = Vocabulary("channel", load_default="email", validate=validate.Length(max=16))
    at = UtcDateTime()


class BatchResultSchema(Schema):
    topic = fields.String()
    channel = fields.String()
    decisions = fields.List(fields.Nested(DecisionSchema))


class ObjectionSchema(RequestSchema):
    channel = Vocabulary(
        "channel", also=["all"], load_default="all", validate=validate.Length(max=16)
    )
    received_via = fields.String(required=True, validate=validate.OneOf(OBJECTION_CHANNELS))
    note = fields.String(allow_none=True, validate=validate.Length(max=1000))


# R25: consent.evidence.IDENTIFYING_EVIDENCE, left out for other roles.
_NEED_TO_KNOW = "Only for tokens whose role may read evidence (admin, dpo); left out otherwise."


class WithdrawalSchema(RequestSchema):
    """A withdrawal the person made through staff or another tool (GDPR art. 7(3))."""

    topic = Vocabulary(
        "topic", also=["all"], load_default="all", validate=validate.Length(min=1, max=64)
    )
    channel = Vocabulary(
        "channel", also=["all"], load_default="all", validate=validate.Length(min=1, max=16)
    )
    received_via = fields.String(required=True, validate=validate.OneOf(OBJECTION_CHANNELS))
    # Who took it in the other tool (its user's name or id), kept with the token's name.
    recorded_by = fields.String(required=True, validate=validate.Length(min=1, max=150))
    note = fields.String(allow_none=True, validate=validate.Length(max=1000))


class ConsentEventSchema(Schema):
    id = fields.Integer()
    contact_id = fields.Integer()
    kind = fields.String()
    topic = fields.String()
    channel = fields.String()
    basis = fields.String(allow_none=True)
    interest_kind = fields.String(allow_none=True)
    occurred_at = fields.DateTime()
    recorded_at = fields.DateTime()
    source = fields.String()
    source_ref = fields.String(allow_none=True)
    recorded_by = fields.String()
    received_via = fields.String(allow_none=True)
    ip_address = fields.String(allow_none=True, metadata={"description": _NEED_TO_KNOW})
    user_agent = fields.String(allow_none=True, metadata={"description": _NEED_TO_KNOW})
    policy_version = fields.String(allow_none=True)
    wording_hash = fields.String(allow_none=True)
    form_id = fields.String(allow_none=True)
    page_url = fields.String(allow_none=True, metadata={"description": _NEED_TO_KNOW})
    language = fields.String(allow_none=True)
    note = fields.String(allow_none=True)


class ImportFormSchema(RequestSchema):
    """The form fields of ``POST /api/v1/imports`` (the CSV itself is the ``file`` part)."""

    basis = fields.String(required=True, validate=validate.Length(min=1, max=32))
    source = fields.String(required=True, validate=validate.Length(min=1, max=200))


class RejectionSchema(Schema):
    row = fields.Integer()
    reason = fields.String()


class ImportReportSchema(Schema):
    batch_id = fields.Integer()
    status = fields.String()
    basis = fields.String(attribute="interest_kind")
    source = fields.String()
    rows = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()
    skipped_suppressed = fields.Integer()
    rejected = fields.Integer()
    rejections = fields.List(fields.Nested(RejectionSchema))
    ignored_columns = fields.List(fields.String())
    file_sha256 = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class ImportBatchSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    basis = fields.String(attribute="interest_kind")
    source = fields.String()
    filename = fields.String(allow_none=True)
    file_sha256 = fields.String(allow_none=True)
    actor = fields.String()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    rows = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    unchanged = fields.Integer()
    skipped_suppressed = fields.Integer()
    rejected = fields.Integer()
    error = fields.String(allow_none=True)


class RejectionsQuerySchema(RequestSchema):
    after_row = fields.Integer(load_default=0, validate=ROW_ID)
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=10_000))


class RestrictionSchema(RequestSchema):
    received_via = fields.String(allow_none=True, validate=validate.OneOf(OBJECTION_CHANNELS))
    note = fields.String(allow_none=True, validate=validate.Length(max=1000))


class ErasureSchema(Schema):
    erased = fields.Boolean()
    contact_id = fields.Integer()
    suppression_kept = fields.Boolean()


class WordingInputSchema(RequestSchema):
    key = NotBlank(required=True, validate=validate.Length(min=1, max=64))
    language = LanguageCode(required=True, validate=validate.Length(min=2, max=8))
    text = NotBlank(required=True, validate=validate.Length(min=1, max=20_000))


class WordingSchema(Schema):
    key = fields.String(required=True)
    language = fields.String(required=True)
    text = fields.String(required=True)
    sha256 = fields.String(required=True)


class PolicyPublishSchema(RequestSchema):
    version = NotBlank(required=True, validate=validate.Length(min=1, max=40))
    major = fields.Boolean(load_default=False)
    url = fields.Url(allow_none=True, validate=validate.Length(max=500))
    text = fields.String(allow_none=True, validate=validate.Length(max=500_000))
    summary = fields.String(allow_none=True, validate=validate.Length(max=1000))
    wordings = fields.List(fields.Nested(WordingInputSchema), load_default=list)

    # The policy itself: its text, or the URL where it is published (422 missing_policy).
    openapi_extra = {
        "if": {"not": {"required": ["url"], "properties": {"url": {"type": "string"}}}},
        "then": {
            "required": ["text"],
            "properties": {"text": {"type": "string", "minLength": 1}},
        },
    }


class PolicyVersionSchema(Schema):
    id = fields.Integer()
    version = fields.String()
    published_at = fields.DateTime()
    published_by = fields.String()
    major = fields.Boolean(attribute="is_major")
    url = fields.String(allow_none=True)
    text = fields.String(allow_none=True)
    summary = fields.String(allow_none=True)
    wordings = fields.List(fields.Nested(WordingSchema))


class WebhookCreateSchema(RequestSchema):
    url = fields.Url(
        required=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=validate.Length(max=500),
    )
    description = fields.String(allow_none=True, validate=validate.Length(max=200))


class WebhookSchema(Schema):
    id = fields.Integer()
    url = fields.String()
    description = fields.String(allow_none=True)
    is_active = fields.Boolean()
    created_at = fields.DateTime()


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(metadata={"description": "Signing secret, shown only now."})


class PrivacyRequestSchema(Schema):
    id = fields.Integer()
    # Null once the contact is erased or purged: the record stays as the proof.
    contact_id = fields.Integer(allow_none=True)
    kind = fields.String()
    status = fields.String()
    received_via = fields.String()
    requested_at = fields.DateTime()
    verified_at = fields.DateTime(allow_none=True)
    due_at = fields.DateTime(allow_none=True)
    extended_until = fields.DateTime(allow_none=True)
    extension_reason = fields.String(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    outcome = fields.String(allow_none=True)
    outcome_note = fields.String(allow_none=True)
    handled_by = fields.String(allow_none=True)


class PrivacyRequestQuerySchema(RequestSchema):
    status = fields.String(
        validate=validate.OneOf(
            ["pending_verification", "awaiting_admin", "completed", "refused", "verified"]
        )
    )


class WebVisitorLinkSchema(RequestSchema):
    """R19: which contact an anonymous visitor id is (only with its consent)."""

    contact_id = fields.Integer(required=True, validate=ROW_ID)


class WebVisitorLinkedSchema(Schema):
    visitor_id = fields.String()
    contact_id = fields.Integer()
    linked_at = fields.DateTime()


class WebTrackingWithdrawalSchema(RequestSchema):
    received_via = fields.String(allow_none=True, validate=validate.OneOf(OBJECTION_CHANNELS))


class WebTrackingWithdrawnSchema(Schema):
    contact_id = fields.Integer()
    unlinked = fields.Integer()
