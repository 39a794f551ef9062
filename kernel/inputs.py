"""Hostile input refused at the edge, once, before any view, schema or query sees it.

Every request passes here: its path values, query string, headers, form fields
and uploaded file names, and its JSON body. Refused, with a 422 in the house
error shape (or the error page) and nothing read further or written:

- NUL and the other control characters (C0 but tab, line feed and carriage
  return; DEL), and lone UTF-16 surrogates (``"\\ud800"`` in JSON, or its raw
  bytes, which ``json.loads`` decodes with "surrogatepass"). PostgreSQL
  cannot store NUL in text, neither database can store a surrogate (it is not
  UTF-8), and no field of the service means one: a NUL in an objection's note
  failed the whole objection with a 500 on PostgreSQL, and the objection was
  lost. Refusing with the field's name is clearer than stripping, which would
  store something else than what was sent.
- JSON nested deeper than ``MAX_JSON_DEPTH``, measured on the raw bytes before
  any parser runs: Python's parser recurses, and 50,000 levels exhausted the
  stack (a 500) in Flask's and in webargs' parsing alike.
- JSON a parser refuses for another reason than its syntax (an integer of more
  than 4,300 digits raises ValueError, which webargs did not expect). Syntax
  errors are left to the route's own parser, which answers them already.

Forms are checked when they are parsed, by whoever parses them first (the CSRF
check, a rate-limit key, the view), through ``CheckedRequest``: a hook that
read the body itself would parse a large import under the 1 MiB limit before
the import route can raise it for a caller who may import. After a refusal the
form cannot be read any more; every later reader meets the same refusal.

Numbers that name rows (ids, cursors) are bounded by ``ROW_ID``: ids are 32-bit
on PostgreSQL, and SQLite cannot even bind an integer over 2**63 - 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from flask import Flask, Request, request
from marshmallow import validate

from kernel.errors import InvalidInput

# The deepest JSON the API has is three levels (a contact's basis' evidence);
# this leaves room for any honest client.
MAX_JSON_DEPTH = 32
# Ids are 32-bit integers on PostgreSQL; a larger number cannot name a row.
MAX_ROW_ID = 2**31 - 1
ROW_ID = validate.Range(min=0, max=MAX_ROW_ID)

_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# What in a raw JSON body could parse into a forbidden character or a number the
# parser refuses: such bytes; their escapes (\u0000, \b, a surrogate half:
# pairs match too, and backslash parity is not read, so this over-matches);
# a surrogate half as raw bytes; a run of 1,000 digits. A body with none of
# them is left to the route's own parser, unparsed here (a 10,000-address
# permission check costs 2 ms here, not a second parse); a body with one is
# parsed and walked to be sure.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_NOT_CONTROL_BYTES = bytes(b for b in range(256) if b not in _CONTROL_BYTES)
_SUSPECT_ESCAPE = re.compile(
    rb"\\(?:[bf]|u(?:00[01][0-9a-fA-F]|007[fF]|[dD][89a-fA-F][0-9a-fA-F]{2}))"
)
# A surrogate half encoded as UTF-8 bytes: invalid UTF-8, yet json.loads decodes
# bytes with "surrogatepass" (Flask's get_json does), which lets it through.
_RAW_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_LONG_NUMBER = b"0" * 1000


def _suspect_json(raw: bytes) -> bool:
    """Whether ``raw`` may hold what ``check_json_body`` refuses (translate and
    substring searches: a fraction of a millisecond on a large body)."""
    return bool(
        raw.translate(None, _NOT_CONTROL_BYTES)
        or (b"\\" in raw and _SUSPECT_ESCAPE.search(raw))
        or (b"\xed" in raw and _RAW_SURROGATE.search(raw))
        or _LONG_NUMBER in raw.translate(_DIGITS_AS_ZERO)
    )


# A JSON string, escapes included (unrolled so that long strings cost one pass).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _describe(character: str) -> str:
    code = ord(character)
    if code == 0:
        return "a NUL byte"
    if 0xD800 <= code <= 0xDFFF:
        return f"an unpaired surrogate (U+{code:04X})"
    return f"a control character (U+{code:04X})"


def _refuse(where: str, name: str, character: str) -> InvalidInput:
    what = _describe(character)
    # The name as sent, unless it is itself the problem or too long to repeat.
    shown = ascii(name)[1:-1] if _FORBIDDEN.search(name) else name
    shown = shown if len(shown) <= 100 else shown[:100] + "..."
    return InvalidInput(
        f"The {where} '{shown}' contains {what}, which no field accepts. "
        "Nothing was saved; remove it and send again.",
        code="invalid_characters",
        fields={shown: [f"Contains {what}."]},
    )


def check_text(where: str, pairs: Iterable[tuple[str, str]]) -> None:
    """Refuse the first name or value of ``pairs`` holding a forbidden character."""
    for name, value in pairs:
        for text in (name, value):
            found = _FORBIDDEN.search(text) if isinstance(text, str) else None
            if found:
                raise _refuse(where, name if isinstance(name, str) else "?", found.group())


def check_stored_text(
    values: Mapping[str, object], limits: Mapping[str, int | None], within: str | None = None
) -> None:
    """Refuse, with the field's name, the first text of ``values`` a column
    cannot hold: a forbidden character, or more characters than its limit.
    ``within``: the object the fields belong to ("company"), when nested.

    For what reaches the domain without passing a request (a CRM connector's
    records): the request edge refuses such text before any schema sees it,
    and PostgreSQL refused it with a DataError that failed the whole write."""
    for name, value in values.items():
        if not isinstance(value, str):
            continue
        found = _FORBIDDEN.search(value)
        problem = f"contains {_describe(found.group())}" if found else None
        limit = limits.get(name)
        if problem is None and limit is not None and len(value) > limit:
            problem = f"is longer than {limit} characters"
        if problem is not None:
            field = " ".join(filter(None, (within, name.replace("_", " "))))
            errors: dict[str, Any] = {name: [f"{problem[0].upper()}{problem[1:]}."]}
            raise InvalidInput(
                f"The {field} {problem}; it cannot be stored.",
                code="invalid_text",
                fields={within: errors} if within else errors,
            )


def json_depth(raw: bytes, limit: int) -> int:
    """How deep ``raw`` nests arrays and objects, counting no further than ``limit + 1``.

    Brackets inside strings do not count; invalid JSON is measured all the same
    (its parser will refuse it)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return 0  # too few brackets to nest deeper: the usual body stops here
    brackets = _JSON_STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def _json_pairs(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, text) for every key and string of a parsed JSON document."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where or "body", item
        elif isinstance(item, dict):
            for key, inner in item.items():
                name = f"{where}.{key}" if where else str(key)
                yield name, str(key)
                stack.append((name, inner))
        elif isinstance(item, list):
            stack.extend((f"{where}[{index}]", inner) for index, inner in enumerate(item))


def check_json_body(raw: bytes) -> None:
    """Refuse a JSON body that is too deep, unparseable for a reason other than
    its syntax, or holds a forbidden character in a key or a string."""
    if not raw.strip():
        return
    if json_depth(raw, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InvalidInput(
            f"The JSON body nests more than {MAX_JSON_DEPTH} levels deep; nothing was read.",
            code="json_too_deep",
            fields={"json": [f"More than {MAX_JSON_DEPTH} levels deep."]},
        )
    if not _suspect_json(raw):
        return
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        return  # a syntax error: the route's parser answers it
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(
            f"The JSON body cannot be read: {str(exc)[:200]}",
            code="invalid_json",
            fields={"json": ["Not readable."]},
        ) from None
    for name, text in _json_pairs(document):
        found = _FORBIDDEN.search(text)
        if found:
            raise _refuse("JSON field", name, found.group())


class CheckedRequest(Request):
    """Flask's request, whose form fields and file names are checked as they are parsed."""

    _input_refusal: InvalidInput | None = None

    def _load_form_data(self) -> None:
        if self._input_refusal is not None:
            raise self._input_refusal
        if "form" in self.__dict__:
            return
        super()._load_form_data()
        try:
            check_text("form field", self.form.items(multi=True))
            check_text(
                "uploaded file name",
                ((name, upload.filename or "") for name, upload in self.files.items(multi=True)),
            )
        except InvalidInput as refusal:
            # Forget what was parsed: whoever reads the form next meets the refusal too.
            self._input_refusal = refusal
            self.__dict__.pop("form", None)
            self.__dict__.pop("files", None)
            raise


def _check_request() -> None:
    """Before every view: the path values, the query string, the headers, a JSON body."""
    check_text(
        "path value",
        (
            (name, value)
            for name, value in (request.view_args or {}).items()
            if isinstance(value, str)
        ),
    )
    check_text("query parameter", request.args.items(multi=True))
    check_text("header", request.headers.items())
    if request.is_json:
        # Read within the request's size limit (a larger body is a 413 here).
        check_json_body(request.get_data(cache=True))


def init_app(app: Flask) -> None:
    app.request_class = CheckedRequest
    # First of every before-request hook, so that nothing (the CSRF check, the
    # rate limits' keys) reads a value that is refused.
    app.before_request_funcs.setdefault(None, []).insert(0, _check_request)
