"""Fields of the HTTP API whose description states what the server enforces.

The API description (``/api/v1/openapi.json``) is generated from the
marshmallow schemas, and integrators generate clients and tests from it: a
value it allows must be one the server takes (``tests/reliability/
test_openapi_truth.py`` sends only such values and expects no refusal). What
marshmallow's own validators say (lengths, ranges, choices, patterns) apispec
writes down by itself; this module adds what it cannot see:

- ``RequestSchema``: the base of every schema the API *reads*. Its free-text
  strings are described with ``TEXT_PATTERN``: ``kernel.inputs`` refuses
  control characters and NUL in every value before any schema runs.
- ``Email``: ``format: email`` and the pattern of the addresses
  ``kernel.addresses.normalise_email`` accepts (see ``EMAIL_PATTERN``).
- ``Vocabulary``: a name from a list the application holds (the topics and
  channels of the policy file, loaded at start): its values are written into
  the description when the app starts (``install``), so that a site with other
  topics describes its own.
- ``CountryCode`` and ``LanguageCode``: the ISO code lists ``kernel.countries``
  checks against.
- ``BoundedDateTime`` / ``BoundedDate``: the years 1900-2999 the server takes,
  as a pattern on the written year (JSON Schema has no bound for a date);
  ``PastDateTime`` for a time the use case refuses in the future.
- URLs (``fields.Url``): ``format: uri`` and ``URL_PATTERN``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields

from kernel.countries import COUNTRY_CODES, LANGUAGE_CODES

# kernel.inputs refuses C0 controls (but tab, line feed, carriage return) and
# DEL in every value; JSON cannot carry a lone surrogate in valid UTF-8.
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$"

# What normalise_email accepts, written for any JSON Schema tool: an unquoted
# local part (an RFC 5322 dot-atom, at most 64 characters), an @-sign, and a
# domain of at least two labels of letters, digits and inner hyphens (no "--"
# in the third and fourth place: that is IDNA's), whose last label ends with a
# letter (every top-level domain does) and is not a special-use name (RFC
# 6761) that mail can never reach.
# normalise_email accepts more: internationalised addresses (UTF-8 local
# parts, IDN domains) are taken as email-validator allows them. It refuses
# what ``format: email`` alone would allow: quoted local parts
# ("john doe"@example.com) and address literals (user@[192.0.2.1]), which no
# B2B mailbox uses and which mail software mangles.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"(?![A-Za-z0-9]{2}--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


_TOP_LABEL = (
    rf"(?!(?:{'|'.join(_any_case(w) for w in _SPECIAL_USE)})$)"
    rf"(?![A-Za-z0-9]{{2}}--)"
    r"(?:[A-Za-z]|[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z])"
)
EMAIL_PATTERN = rf"^(?=[^@]{{1,64}}@){_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_LABEL}\.)+{_TOP_LABEL}$"
# RFC 5321 4.5.3.1.3, as email-validator counts it.
EMAIL_MAX_LENGTH = 254

# Text that is not only whitespace (the use case strips it; U+0085 is
# whitespace to Python but not to a JavaScript pattern, hence named).
NOT_BLANK_PATTERN = r"^(?=[\s\S]*[^\s\u0085])[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$"
# The same on one line: no line feed or carriage return (tab is fine).
ONE_LINE_PATTERN = r"^(?=[\s\S]*[^\s\u0085])[^\u0000-\u0008\u000a-\u001f\u007f]*$"

# The http(s) URLs marshmallow's URL check takes (with or without its TLD
# rule): a host name whose last label is letters, an optional port, a path.
# It takes more (addresses, query strings); this is what a client can rely on.
URL_PATTERN = (
    r"^https?://(?:(?![A-Za-z0-9]{2}--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}(?::[1-9][0-9]{0,3})?(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?$"
)

EARLIEST_YEAR, LATEST_YEAR = 1900, 2999
# A date or time whose written year is 1900-2999.
YEAR_PATTERN = r"^(?:19[0-9]{2}|2[0-9]{3})-"


def years_pattern(first: int, last: int) -> str:
    """A pattern for a date or time written with a year from ``first`` to ``last``."""
    if (first, last) == (EARLIEST_YEAR, LATEST_YEAR):
        return YEAR_PATTERN
    branches = []
    for decade in range(first // 10, last // 10 + 1):
        low, high = max(first, decade * 10) % 10, min(last, decade * 10 + 9) % 10
        digit = "[0-9]" if (low, high) == (0, 9) else f"[{low}-{high}]"
        branches.append(f"{decade:03d}{digit}")
    return "^(?:" + "|".join(branches) + ")-"


class RequestSchema(Schema):
    """A schema the API reads: its strings are described with ``TEXT_PATTERN``.

    ``openapi_extra`` is merged into the schema's description: what JSON Schema
    can say about the object as a whole (``anyOf`` of required fields)."""

    openapi_extra: dict[str, Any] | None = None


class NotBlank(fields.String):
    """Text the use case strips: at least one character that is not whitespace;
    ``one_line``: no line break either (a subject)."""

    def __init__(self, *, one_line: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.one_line = one_line


class Email(fields.String):
    """An email address; ``normalise_email`` (in the use case) has the last word."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {
            "format": "email",
            "pattern": EMAIL_PATTERN,
            "maxLength": EMAIL_MAX_LENGTH,
            "description": "An email address. Internationalised addresses are accepted too; "
            "quoted local parts and address literals are not.",
            **kwargs.pop("metadata", {}),
        }
        super().__init__(metadata=metadata, **kwargs)


class Vocabulary(fields.String):
    """A name from a list the running application holds (``install`` names them).

    The field does not check the value itself: the use case does, with its own
    message (``unknown_topic``, ``unknown_channel``); this says it in the
    description. ``also`` are values taken besides the list (``"all"``)."""

    def __init__(self, vocabulary: str, *, also: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocabulary = vocabulary
        self.also = tuple(also)


class SourceName(fields.String):
    """A caller's name for its own system: not blank, and none of the names the
    application reserves (vocabulary ``reserved_source``), in any case or with
    spaces around it; the use case refuses those (``reserved_source``)."""


class CountryCode(fields.String):
    """An ISO 3166-1 alpha-2 code (``kernel.countries`` checks it)."""

    enum = sorted(COUNTRY_CODES)


class LanguageCode(fields.String):
    """An ISO 639-1 code (``kernel.countries`` checks it)."""

    enum = sorted(LANGUAGE_CODES)


def _check_year(year: int) -> None:
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ValidationError(f"The year must be between {EARLIEST_YEAR} and {LATEST_YEAR}.")


class BoundedDateTime(fields.AwareDateTime):
    """An ISO 8601 time with a zone, written with a year from 1900 to 2999,
    returned in UTC. Other years would overflow on conversion or on the database."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)

    def described_years(self, today: date) -> tuple[int, int]:
        """The years the description admits (a subclass that takes fewer says so)."""
        return EARLIEST_YEAR, LATEST_YEAR

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        # The year as written, so that the description's pattern says it exactly.
        _check_year(moment.year)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Not a representable time.") from None


class PastDateTime(BoundedDateTime):
    """A time that cannot lie in the future (the use case refuses it): described
    as a year up to last year's, so that what the description allows is taken
    whatever the day."""

    def described_years(self, today: date) -> tuple[int, int]:
        return EARLIEST_YEAR, today.year - 1


class BoundedDate(fields.Date):
    """A date (YYYY-MM-DD) from 1900 to 2999."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> date:
        day = super()._deserialize(value, attr, data, **kwargs)
        _check_year(day.year)
        return day


def _with_null(field: fields.Field, values: Sequence[Any]) -> list[Any]:
    return [*values, None] if field.allow_none else list(values)


def install(api: Any, vocabularies: Mapping[str, Sequence[str]]) -> None:
    """Teach ``api``'s description these fields; call after ``api.init_app`` (each
    call makes a new converter) and before any blueprint is registered."""

    def consent_api_fields(
        converter: Any, field: fields.Field, ret: dict[str, Any], **kwargs: Any
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if isinstance(field, Vocabulary):
            extra["enum"] = _with_null(field, [*vocabularies[field.vocabulary], *field.also])
        elif isinstance(field, CountryCode | LanguageCode):
            extra["enum"] = _with_null(field, field.enum)
        elif isinstance(field, fields.Url):
            extra["format"] = "uri"
            extra["pattern"] = URL_PATTERN
        elif isinstance(field, BoundedDateTime):
            extra["pattern"] = years_pattern(*field.described_years(datetime.now(UTC).date()))
        elif isinstance(field, BoundedDate):
            extra["pattern"] = YEAR_PATTERN
        elif isinstance(field, SourceName):
            reserved = "|".join(_any_case(name) for name in vocabularies["reserved_source"])
            extra["pattern"] = rf"^(?!\s*(?:{reserved})\s*$)" + NOT_BLANK_PATTERN[1:]
        elif isinstance(field, NotBlank):
            extra["pattern"] = ONE_LINE_PATTERN if field.one_line else NOT_BLANK_PATTERN
        elif (
            isinstance(field, fields.String)
            and not isinstance(field, Email)
            and "pattern" not in ret
            and "enum" not in ret
            and isinstance(field.root, RequestSchema)
        ):
            extra["pattern"] = TEXT_PATTERN
        return extra

    api.ma_plugin.converter.add_attribute_function(consent_api_fields)


def _nullable_enums(schema: dict[str, Any]) -> None:
    """``{type: [string, null], enum: [..., null]}`` as ``anyOf: [{type: string,
    enum: [...]}, {type: null}]``: the same values, in the form generated
    clients turn into ``Enum | None`` (the first gave them three classes)."""
    for value in [*schema.get("properties", {}).values(), schema.get("items")]:
        if not isinstance(value, dict):
            continue
        kinds = value.get("type")
        if isinstance(kinds, list) and "null" in kinds and "enum" in value:
            (kind,) = [k for k in kinds if k != "null"]
            choices = [v for v in value.pop("enum") if v is not None]
            del value["type"]
            value["anyOf"] = [{"type": kind, "enum": choices}, {"type": "null"}]
        _nullable_enums(value)


def _keyed_objects(schema: dict[str, Any]) -> None:
    """An object whose keys follow a pattern (``x-propertyNames``, which apispec
    passes through) as ``patternProperties`` with no other key, the form
    generators and validators read: ``{"hubspot": "1234"}`` but never ``{"": ...}``."""
    for value in [*schema.get("properties", {}).values(), schema.get("items")]:
        if not isinstance(value, dict):
            continue
        names = value.get("x-propertyNames")
        if isinstance(names, dict) and "pattern" in names:
            values = value.get("additionalProperties", {})
            value["propertyNames"] = names
            value["patternProperties"] = {names["pattern"]: values}
            value["additionalProperties"] = False
        _keyed_objects(value)


def describe_schemas(api: Any) -> None:
    """Merge each request schema's ``openapi_extra`` into its description, and
    write nullable enums as generated clients read them; call once every
    blueprint is registered."""
    components = api.spec.components.schemas
    for schema in components.values():
        _nullable_enums(schema)
        _keyed_objects(schema)
    for key, name in api.ma_plugin.converter.refs.items():
        extra = getattr(key[0], "openapi_extra", None)
        if extra and name in components:
            if "oneOf" in extra:
                # A union: its branches are the description, not the fields read.
                components[name].clear()
            components[name].update(extra)
