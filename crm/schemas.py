"""Marshmallow schemas for the CRM part of the HTTP API."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm.models import (
    EARLIEST_ACTIVITY,
    EXTERNAL_SYSTEM_PATTERN,
    EXTERNAL_VALUE_PATTERN,
    ActivityKind,
    activity_time_problem,
    support_code_problem,
)
from kernel.api_fields import (
    BoundedDate,
    BoundedDateTime,
    CountryCode,
    Email,
    LanguageCode,
    NotBlank,
    RequestSchema,
)
from kernel.inputs import ROW_ID

Text = fields.String
# A time from the API: written with a year from 1900 to 2999, returned in UTC.
UtcDateTime = BoundedDateTime


class ActivityTime(BoundedDateTime):
    """When an activity occurred: from 1970 to a day from now (``crm.models``), so
    that a date long ago is a clear 422 here rather than a purge date moved."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "metadata",
            {"description": "From 1970-01-01T00:00:00Z to a day from now."},
        )
        super().__init__(**kwargs)

    def described_years(self, today: date) -> tuple[int, int]:
        # After 1970 in any zone, and not in the future.
        return EARLIEST_ACTIVITY.year + 1, today.year - 1

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        problem = activity_time_problem(moment, datetime.now(UTC))
        if problem:
            raise ValidationError(problem)
        return moment


# External ids (crm.external_ids): {system: id}. The same patterns as the
# service checks (crm.models); the key pattern is passed as ``x-propertyNames``
# (apispec drops keys it does not know) and written as JSON Schema's
# ``patternProperties`` by kernel.api_fields.describe_schemas.
MAX_EXTERNAL_SYSTEMS = 20
EXTERNAL_IDS_DOC = {
    "description": "The ids other systems give this record, by system: "
    '{"hubspot": "1234", "salesforce": "0035g00000XyZ"}. A system name is 1-32 '
    "lower-case letters, digits, '_' or '-', starting with a letter; an id is 1-200 "
    "characters, no control characters, no space at either end. An id names one "
    "record per system. In a write, null removes that system's id and systems not "
    "named keep theirs.",
    "x-propertyNames": {"type": "string", "pattern": EXTERNAL_SYSTEM_PATTERN},
    "maxProperties": MAX_EXTERNAL_SYSTEMS,
}
_SYSTEM = validate.Regexp(
    EXTERNAL_SYSTEM_PATTERN,
    error="A system name is 1-32 lower-case letters, digits, '_' or '-', starting with a letter.",
)
_EXTERNAL_VALUE = validate.Regexp(
    EXTERNAL_VALUE_PATTERN,
    error="An external id is 1-200 characters, no control characters, no space at either end.",
)


def _at_most_systems(ids: dict[str, Any]) -> None:
    # A function, not validate.Length: apispec would state that as the
    # object's maxLength; ``maxProperties`` is in EXTERNAL_IDS_DOC.
    if len(ids) > MAX_EXTERNAL_SYSTEMS:
        raise ValidationError(f"At most {MAX_EXTERNAL_SYSTEMS} systems.")


def ExternalIdsInput() -> fields.Dict:
    """``external_ids`` in a write: {system: id or null}."""
    return fields.Dict(
        keys=Text(validate=_SYSTEM),
        values=Text(allow_none=True, validate=_EXTERNAL_VALUE),
        validate=_at_most_systems,
        metadata=EXTERNAL_IDS_DOC,
    )


def ExternalIdsOutput(**kwargs: Any) -> fields.Dict:
    """``external_ids`` in a read: {system: id}, {} when there are none."""
    return fields.Dict(
        keys=Text(),
        values=Text(validate=_EXTERNAL_VALUE),
        dump_only=True,
        metadata=EXTERNAL_IDS_DOC,
        **kwargs,
    )


class CompanyInputSchema(RequestSchema):
    """A company as a request names it: found by ``org_number`` (or by name
    without one), created when new."""

    name = Text(required=True, validate=validate.Length(min=1, max=200))
    org_number = Text(allow_none=True, validate=validate.Length(max=40))
    country = CountryCode(allow_none=True)
    customer_since = BoundedDate(allow_none=True)
    relationship_ended_at = BoundedDate(
        allow_none=True,
        metadata={"description": "Not before customer_since (422 invalid_relationship)."},
    )
    external_ids = ExternalIdsInput()


class CompanySchema(Schema):
    """A company as the API returns it."""

    name = Text(required=True)
    org_number = Text(required=True, allow_none=True)
    country = Text(required=True, allow_none=True)
    customer_since = fields.Date(required=True, allow_none=True)
    relationship_ended_at = fields.Date(required=True, allow_none=True)
    external_ids = ExternalIdsOutput(required=True)


class ContactSchema(Schema):
    """A contact as the API returns it (every field is always present)."""

    id = fields.Integer(required=True)
    email = Text(required=True)
    name = Text(required=True, allow_none=True)
    phone = Text(required=True, allow_none=True)
    country = Text(required=True, allow_none=True)
    language = Text(required=True)
    company = fields.Nested(CompanySchema, required=True, allow_none=True)
    external_ids = ExternalIdsOutput(required=True)
    last_interaction_at = fields.DateTime(required=True, allow_none=True)
    restricted_at = fields.DateTime(required=True, allow_none=True)
    legal_hold_reason = Text(required=True, allow_none=True)
    hard_bounced_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    # When the current retention rules delete this contact (R13, R14), or why not.
    retention = fields.Dict(
        dump_only=True,
        metadata={
            "description": "purge_on (a run on or after it deletes the contact), rule, excluded_because"
        },
    )


# The changed-since read's page (crm.changed_since).
MAX_PAGE = 1000
_RFC3339 = "an RFC 3339 time with a zone, e.g. 2026-12-06T09:00:00Z"


class ContactQuerySchema(RequestSchema):
    """One of three reads: by address, by another system's id, or every contact
    changed after a time (a page in keyset order). Exactly one of email,
    external_id and updated_after (422 otherwise); after and limit only with
    updated_after."""

    email = Email(metadata={"description": "Find the contact with this address."})
    external_id = Text(
        validate=validate.Length(min=3, max=233),
        metadata={
            "description": "Find the contact another system knows by this id: "
            "'system:id', e.g. 'hubspot:1234' (the id may hold colons).",
            "pattern": r"^[a-z][a-z0-9_-]{0,31}:[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{0,198}"
            r"[^\x00-\x20\x7f])?$",
        },
    )
    updated_after = UtcDateTime(
        error_messages={
            "invalid": f"Not a valid time: give {_RFC3339}.",
            "invalid_awareness": f"The time has no zone: give {_RFC3339}.",
        },
        metadata={
            "description": "List the contacts whose data or decisions changed after this "
            "time (RFC 3339 with a zone, years 1900-2999), oldest change first, in pages "
            "(docs/integration.md)."
        },
    )
    after = Text(
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "With updated_after: the next_cursor of a previous page, as given "
            "(opaque; 400 for anything else)."
        },
    )
    limit = fields.Integer(
        load_default=100,
        validate=validate.Range(min=1, max=MAX_PAGE),
        metadata={"description": "With updated_after: contacts per page, at most 1000."},
    )

    @validates_schema
    def _one_read(self, data: dict[str, Any], **kwargs: object) -> None:
        given = [key for key in ("email", "external_id", "updated_after") if key in data]
        if len(given) != 1:
            raise ValidationError(
                "Give exactly one of email, external_id or updated_after.", "_schema"
            )
        if "after" in data and "updated_after" not in data:
            raise ValidationError("A cursor continues an updated_after read.", "after")


class ContactPageSchema(Schema):
    """A page of the changed-since read."""

    contacts = fields.List(fields.Nested(ContactSchema))
    has_more = fields.Boolean(
        metadata={"description": "More contacts follow now: read the next page at once."}
    )
    next_cursor = Text(
        allow_none=True,
        metadata={
            "description": "Where the next page starts (pass it as 'after'): after this "
            "page's last contact; keep it to resume later. Null for an empty page."
        },
    )
    next = Text(
        allow_none=True,
        metadata={"description": "The next page's path and query while has_more; else null."},
    )


class RectifySchema(RequestSchema):
    email = Email()
    name = Text(allow_none=True, validate=validate.Length(max=200))
    phone = Text(allow_none=True, validate=validate.Length(max=40))
    country = CountryCode(allow_none=True)
    language = LanguageCode()
    company = fields.Nested(CompanyInputSchema, allow_none=True)
    external_ids = ExternalIdsInput()


def _support_code(value: str) -> None:
    problem = support_code_problem(value)
    if problem:
        raise ValidationError(problem)


# crm.models.SUPPORT_CODE, and not only digits, as a JSON Schema pattern.
SUPPORT_CODE_DOC: dict[str, Any] = {
    "description": "general support information kept after anonymisation (R15): "
    "a code from your own list, never free text",
    "pattern": r"^(?![0-9]+$)[a-z0-9][a-z0-9._-]{0,63}$",
    "maxLength": 64,
}


class ActivityCreateSchema(RequestSchema):
    kind = Text(required=True, validate=validate.OneOf([k.value for k in ActivityKind]))
    occurred_at = ActivityTime(required=True)
    note = Text(allow_none=True, validate=validate.Length(max=5000))
    product = Text(allow_none=True, validate=_support_code, metadata=SUPPORT_CODE_DOC)
    problem_category = Text(allow_none=True, validate=_support_code, metadata=SUPPORT_CODE_DOC)
    resolution_code = Text(allow_none=True, validate=_support_code, metadata=SUPPORT_CODE_DOC)


class ActivitySchema(Schema):
    id = fields.Integer()
    contact_id = fields.Integer()
    kind = Text()
    occurred_at = fields.DateTime()
    author = Text()
    note = Text(allow_none=True)
    product = Text(allow_none=True)
    problem_category = Text(allow_none=True)
    resolution_code = Text(allow_none=True)
    created_at = fields.DateTime()


class LegalHoldSchema(RequestSchema):
    reason = NotBlank(required=True, validate=validate.Length(min=1, max=500))


# Ids are 32-bit integers on PostgreSQL; a larger number names nothing.
Id = ROW_ID


class AuditQuerySchema(RequestSchema):
    contact_id = fields.Integer(validate=Id)
    actor = Text(validate=validate.Length(max=200))
    action = Text(validate=validate.Length(max=64))
    since = UtcDateTime()
    until = UtcDateTime()
    before_id = fields.Integer(validate=Id)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class AuditEntrySchema(Schema):
    id = fields.Integer()
    at = fields.DateTime()
    actor = Text()
    action = Text()
    contact_id = fields.Integer(allow_none=True)
    detail = Text(allow_none=True)


# Retention ---------------------------------------------------------------------


class RetentionPreviewQuerySchema(RequestSchema):
    as_of = BoundedDate(
        load_default=None,
        validate=validate.Range(min=date(1900, 1, 1), max=date(2999, 12, 31)),
        metadata={"description": "YYYY-MM-DD, 1900-2999; today (UTC) if left out"},
    )
    limit = fields.Integer(load_default=1000, validate=validate.Range(min=0, max=100_000))


class DueItemSchema(Schema):
    contact_id = fields.Integer()
    activity_id = fields.Integer(allow_none=True)
    purge_on = fields.Date()


class ExcludedItemSchema(DueItemSchema):
    reason = Text()


class RuleSchema(Schema):
    name = Text()
    category = Text()
    kinds = fields.List(Text())
    action = Text()
    description = Text()
    explanation = fields.Function(lambda rule: rule.explain())
    held_in = Text(allow_none=True)
    purged_by = Text(allow_none=True)


class ChecklistMarkSchema(Schema):
    done_through = fields.Date()
    done_by = Text()
    done_at = fields.DateTime()


class ChecklistItemSchema(Schema):
    rule = fields.Function(lambda item: item.rule.name)
    held_in = fields.Function(lambda item: item.rule.held_in)
    purged_by = fields.Function(lambda item: item.rule.purged_by)
    due_through = fields.Date(
        metadata={"description": "everything counting from this day or earlier is due there"}
    )
    is_done = fields.Boolean()
    last_done = fields.Nested(ChecklistMarkSchema, attribute="mark", allow_none=True)


class RuleOutcomeSchema(Schema):
    rule = fields.Nested(RuleSchema)
    count = fields.Integer(metadata={"description": "rows a run would delete or anonymise"})
    excluded_count = fields.Integer()
    truncated = fields.Boolean(metadata={"description": "more items than the limit"})
    items = fields.List(fields.Nested(DueItemSchema))
    told = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={
            "description": "external systems told of these purges (change feed tombstones): "
            "{system: contacts with an id there}"
        },
    )
    excluded = fields.Function(
        lambda outcome: [
            {
                "contact_id": row.contact_id,
                "activity_id": row.activity_id,
                "purge_on": row.purge_on.isoformat(),
                "reason": reason,
            }
            for row, reason in outcome.excluded
        ]
    )


class CopyDeletionsSchema(Schema):
    system = fields.String(metadata={"description": "e.g. `connector hubspot`"})
    erasure = fields.String(
        metadata={"description": "`delete` or `anonymise`: what the system does to its copies"}
    )
    due = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={
            "description": "copies of the rows this run removes, per object type there "
            "(`contacts`, `calls`, `meetings`, ...)"
        },
    )
    owed = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "removals still owed from before, per object type"},
    )


class RetentionPreviewSchema(Schema):
    as_of = fields.Date()
    outcomes = fields.List(fields.Nested(RuleOutcomeSchema), data_key="rules")
    external = fields.List(fields.Nested(RuleSchema), data_key="held_elsewhere")
    checklist = fields.List(fields.Nested(ChecklistItemSchema))
    told = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={"description": "every external system a run tells: {system: contacts}"},
    )
    receivers = fields.List(
        fields.String(),
        metadata={
            "description": "active webhook endpoints told of a purge (subscribed to purges or to every type), by host"
        },
    )
    copies = fields.List(
        fields.Nested(CopyDeletionsSchema),
        data_key="crm_deletions",
        metadata={
            "description": "per enabled CRM connector: what it will delete or anonymise "
            "in the CRM after this run, and what it still owes"
        },
    )


class RetentionRunSchema(Schema):
    id = fields.Integer()
    as_of = fields.Date()
    started_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    started_by = Text()
    status = Text()
    counts = fields.Dict()
    batches = fields.Integer()
    error = Text(allow_none=True)


# R19: web visits under an anonymous visitor id (a cookie's value, not a person).
VisitorId = validate.Regexp(
    r"^[A-Za-z0-9_-]{8,64}$", error="A visitor id is 8-64 letters, digits, '-' or '_'."
)


def check_visitor_id(value: str) -> str:
    """A visitor id in a path: the same rule as in a body, a 422 otherwise."""
    try:
        return str(VisitorId(value))
    except ValidationError as exc:
        from kernel.errors import InvalidInput

        raise InvalidInput(
            "Invalid visitor id.", fields={"visitor_id": [str(m) for m in exc.messages]}
        ) from None


class WebVisitCreateSchema(RequestSchema):
    visitor_id = Text(required=True, validate=VisitorId)
    page = Text(required=True, validate=validate.Length(min=1, max=500))
    visited_at = ActivityTime(required=True)


class WebVisitSchema(Schema):
    id = fields.Integer()
    visitor_id = Text()
    page = Text()
    visited_at = fields.DateTime()
