"""Marshmallow schemas for the consent part of the HTTP API."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from consent.models import (
    DELIVERY_STATUSES,
    OBJECTION_CHANNELS,
    WEBHOOK_EVENT_TYPES,
    Basis,
    InterestKind,
)
from crm.changes import TYPES as CHANGE_TYPES
from crm.schemas import (
    CompanyInputSchema,
    ContactSchema,
    ExternalIdsInput,
    UtcDateTime,
)
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
from kernel.inputs import MAX_ROW_ID, ROW_ID

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
    external_ids = ExternalIdsInput()


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
    outbox_id = fields.Integer(
        allow_none=True, metadata={"description": "The email whose link caused the event."}
    )
    campaign_id = fields.Integer(
        allow_none=True, metadata={"description": "The campaign of that email."}
    )


class ImportFormSchema(RequestSchema):
    """The form fields of ``POST /api/v1/imports`` (the CSV itself is the ``file`` part).

    ``preset`` and ``mapping`` are checked by ``consent.imports.plan_for``, which
    names the valid presets and fields in its 422."""

    basis = fields.String(required=True, validate=validate.Length(min=1, max=32))
    source = fields.String(required=True, validate=validate.Length(min=1, max=200))
    preset = fields.String(load_default=None, validate=validate.Length(max=32))
    mapping = fields.String(load_default=None, validate=validate.Length(max=16 * 1024))


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
    preset = fields.String(allow_none=True)
    suggested_preset = fields.String(allow_none=True)
    file_sha256 = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class ImportBatchSchema(ImportReportSchema):
    """A batch as the API shows it while queued or running, and its report once done."""

    id = fields.Integer(metadata={"description": "The batch id (also ``batch_id``)."})
    filename = fields.String(allow_none=True)
    actor = fields.String()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    rows_done = fields.Integer(metadata={"description": "Rows read so far (``rows``)."})
    rows_total = fields.Integer(
        allow_none=True,
        metadata={
            "description": "Rows expected: the file's non-blank lines after the header, "
            "counted at upload; exactly ``rows`` once done."
        },
    )


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
    events = fields.List(
        fields.String(validate=validate.OneOf(WEBHOOK_EVENT_TYPES)),
        allow_none=True,
        validate=validate.Length(max=len(WEBHOOK_EVENT_TYPES)),
        metadata={
            "description": "The event types to post; every type (also types added later) "
            "when omitted, null or empty."
        },
    )


class WebhookSchema(Schema):
    id = fields.Integer()
    url = fields.String()
    description = fields.String(allow_none=True)
    events = fields.List(
        fields.String(validate=validate.OneOf(WEBHOOK_EVENT_TYPES)),
        metadata={"description": "The event types posted to this receiver."},
    )
    all_events = fields.Boolean(
        metadata={"description": "Subscribed to every type, also types added later."}
    )
    is_active = fields.Boolean()
    created_at = fields.DateTime()
    deactivated_at = fields.DateTime(allow_none=True)
    deactivation_reason = fields.String(allow_none=True)


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(
        metadata={
            "description": (
                "Standard Webhooks signing secret (whsec_ and base64), shown only now: "
                "absent from a repeat with the same Idempotency-Key "
                "(Idempotent-Withheld: secret)."
            )
        }
    )


class WebhookDeliverySchema(Schema):
    id = fields.Integer()
    endpoint_id = fields.Integer()
    change_id = fields.String(
        attribute="webhook_id",
        allow_none=True,
        metadata={"description": "The id of the change feed item posted, also its webhook-id."},
    )
    event_type = fields.String()
    contact_id = fields.Integer(allow_none=True)
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    first_attempt_at = fields.DateTime(allow_none=True)
    next_attempt_at = fields.DateTime(
        allow_none=True, metadata={"description": "When the next try is due, if one is planned."}
    )
    delivered_at = fields.DateTime(allow_none=True)
    replay_of = fields.Integer(
        allow_none=True, metadata={"description": "The delivery this one re-sends."}
    )


class WebhookDeliveriesQuerySchema(RequestSchema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))
    before = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ROW_ID),
        metadata={"description": "Continue below this delivery id (the last one of a page)."},
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class WebhookReplaySchema(RequestSchema):
    # Exactly one of the two, as ``_one_of`` checks (not a "oneOf", which
    # describe_schemas reads as a union of schemas).
    openapi_extra = {
        "anyOf": [{"required": ["after_change"]}, {"required": ["since"]}],
        "not": {"required": ["after_change", "since"]},
    }

    after_change = fields.String(
        validate=validate.Regexp(r"^chg_(0|[1-9][0-9]{0,17})$"),
        metadata={
            "description": "Replay every change after this one: a change feed item's id, "
            "which is also its webhook-id (chg_<n>)."
        },
    )
    since = UtcDateTime(metadata={"description": "Replay every change that occurred since then."})

    @validates_schema
    def _one_of(self, data: dict[str, object], **kwargs: object) -> None:
        if ("after_change" in data) == ("since" in data):
            raise ValidationError("Give either after_change or since.", "_schema")

    @post_load
    def _change_number(self, data: dict[str, Any], **kwargs: object) -> dict[str, Any]:
        if "after_change" in data:
            data["after_change"] = int(data["after_change"].removeprefix("chg_"))
        return data


class WebhookReplayedSchema(Schema):
    queued = fields.Integer(metadata={"description": "How many deliveries were written."})


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


# The change feed (consent.feed, docs/integration.md "The change feed") ----------------

_DATE_TIME = {"format": "date-time"}
# consent.feed.CURSOR_PATTERN (schemas sit below the feed, so it is stated here too;
# tests/feed/test_change_feed.py checks the two agree).
FEED_CURSOR_PATTERN = r"^c1\.(0|[1-9][0-9]{0,17})\.([1-9][0-9]{0,17})$"


class ChangesQuerySchema(RequestSchema):
    after = fields.String(
        metadata={
            "description": "the next_cursor of the previous page (opaque); leave out to start. "
            "Anything else is a 400 malformed_cursor.",
            # Checked by consent.feed.decode_cursor, which answers 400 (not 422).
            "pattern": FEED_CURSOR_PATTERN,
        }
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class FeedDecisionSchema(Schema):
    """A decision as a feed item carries it: ``DecisionSchema``'s output, already JSON."""

    email = fields.String(metadata={"format": "email"})
    contact_id = fields.Integer(allow_none=True)
    topic = fields.String()
    channel = fields.String()
    allowed = fields.Boolean()
    basis = fields.String(allow_none=True)
    reason = fields.String()
    since = fields.String(allow_none=True, metadata=_DATE_TIME)
    explanation = fields.String()
    event_id = fields.Integer(allow_none=True)


class FeedCompanySchema(Schema):
    name = fields.String()
    org_number = fields.String(allow_none=True)
    country = fields.String(allow_none=True)


class FeedContactSchema(Schema):
    email = fields.String(metadata={"format": "email"})
    name = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    language = fields.String()
    company = fields.Nested(FeedCompanySchema, allow_none=True)
    updated_at = fields.String(allow_none=True, metadata=_DATE_TIME)


class ChangeItemSchema(Schema):
    """One item of the change feed; also the body of its webhook delivery."""

    id = fields.String(metadata={"description": "chg_<n>; the webhook-id of its deliveries"})
    type = fields.String(validate=validate.OneOf(CHANGE_TYPES))
    occurred_at = fields.String(metadata=_DATE_TIME)
    contact_id = fields.Integer()
    tombstone = fields.Boolean(
        metadata={"description": "the contact is gone: only ids, rule and counts follow"}
    )
    external_ids = fields.Dict(keys=fields.String(), values=fields.String())
    contact = fields.Nested(FeedContactSchema)
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields")
    decisions = fields.List(fields.Nested(FeedDecisionSchema))
    rule = fields.String()
    action = fields.String(validate=validate.OneOf(("deleted", "anonymised")))
    count = fields.Integer()


class ChangePageSchema(Schema):
    items = fields.List(fields.Nested(ChangeItemSchema))
    next_cursor = fields.String(allow_none=True)
    has_more = fields.Boolean()
