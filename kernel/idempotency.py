"""Writes an API caller may repeat: the ``Idempotency-Key`` request header.

After the IETF draft "The Idempotency-Key HTTP Header Field"
(draft-ietf-httpapi-idempotency-key-header-07). A caller that sends a write
(POST, PUT, PATCH, DELETE under /api/v1) with a key and repeats it with the
same key gets the first answer again, status, body and the headers worth
repeating, marked ``Idempotent-Replayed: true``, and nothing is done twice:

- the same key with another request (method, path, query or body differ):
  422 ``idempotency_key_reused``, nothing done;
- the same key while the first request is still being answered: 409
  ``idempotency_key_in_flight`` (try again shortly);
- a key that is empty, longer than 255 characters or holds other characters
  than visible ASCII without ``"`` and ``\\``: 400 ``invalid_idempotency_key``.
  The draft's form, a Structured Field string (``"abc"``), is read too.
  (Control characters never get this far: ``kernel.inputs`` refuses them in
  every header with a 422.)

Keys are scoped to the API token (two callers never meet) and kept
``IDEMPOTENCY_KEEP_HOURS`` (24 by default): an older key is forgotten and a
request with it is new. Expired rows are pruned when a key is claimed and by
the daily retention run (``kernel.signals.retention_due``). An answer of 5xx
is not kept (the caller may retry); every other answer is, 4xx included.

Concurrent duplicates: the key row is inserted first, in its own committed
transaction, and the unique (token, key) constraint is the lock. On
PostgreSQL the second insert waits for the first to commit, then finds the
row and answers 409; it never runs the write.

The stored answer may hold personal data (a contact as every read returns it).
It is never logged; it goes with the retention; and the row names the contact
of the request (the route's ``contact_id``) or of the answer (its top-level
``contact_id``, or ``id`` of an answer that is a contact, with ``email``). When
that contact is erased or purged, ``crm.services.remove_contacts`` calls
``answer_contacts_gone`` first: the answer becomes a tombstone without personal
data (410 ``contact_erased`` or ``contact_purged``) and the key keeps its
fingerprint, so a repeat gets the 410 and writes nothing (it does not create
the erased person again). The foreign key still cascades, as a backstop: a
contact deleted by any other path takes its answers with it rather than leave
personal data here. Answers that name people otherwise (an import report's
rejected rows) go with the retention.

An answer that carries a secret (a webhook's signing secret) is never kept as
it is: the route is marked ``@withholds_in_replay("secret")``, the kept answer
lacks those top-level fields, and a repeat says so in ``Idempotent-Withheld``
(the names of the fields left out). tests/test_idempotency.py checks that every
write whose answer schema has a field named like a secret or token is marked.

Where it applies: ``kernel.access.requires`` calls ``claim`` on every write of
the API once the caller is known (every API route has that guard, which
tests/staff/test_role_matrix.py checks), and ``init_app`` stores the answer
after the response is made. A route that writes nothing a repeat could double
(a read sent as POST, the batch permission check) is marked ``@read_by_post``
and ignores the header. ``IdempotencyKeyPlugin`` documents the header on every
other write operation of the OpenAPI document.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from apispec import BasePlugin
from flask import Flask, Response, after_this_request, current_app, g, request
from werkzeug.wsgi import get_input_stream

from extensions import db
from kernel.database import id_in, insert_for_dialect
from kernel.errors import BadRequest, Conflict, InvalidInput
from kernel.models import IdempotencyKey
from kernel.signals import retention_due
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/v1/"
MAX_KEY_LENGTH = 255
# Visible ASCII but the quote and the backslash (the characters of a Structured
# Field string that need no escape): UUIDs, ULIDs, base64 and the like.
KEY_CHARACTERS = r"[!#-\[\]-~]"
KEY_PATTERN = (
    rf'^(?:{KEY_CHARACTERS}{{1,{MAX_KEY_LENGTH}}}|"{KEY_CHARACTERS}{{1,{MAX_KEY_LENGTH}}}")$'
)
_KEY = re.compile(KEY_PATTERN)
DEFAULT_KEEP_HOURS = 24
# A first request not answered after this long died with its process (a
# repeat would otherwise get 409 until the key expires): it may be claimed anew.
ABANDONED_AFTER = timedelta(minutes=10)
# The answer's headers a repeat gets again; the others are the server's own.
REPLAYED_HEADERS = ("Content-Type", "Location", "Link", "ETag")
REPLAYED_MARK = "Idempotent-Replayed"
# Names the fields of the first answer a repeat does not show (``withholds_in_replay``).
WITHHELD_MARK = "Idempotent-Withheld"
# The answer a key keeps once the contact it named is gone (``answer_contacts_gone``).
GONE_STATUS = 410
GONE_MESSAGES = {
    "contact_erased": (
        "The contact this request named was erased after it was answered; its answer "
        "is not kept. Nothing was done."
    ),
    "contact_purged": (
        "The contact this request named was deleted by the retention after it was "
        "answered; its answer is not kept. Nothing was done."
    ),
}

F = TypeVar("F", bound=Callable[..., Any])

_table = IdempotencyKey.__table__
# The contact table by name: the kernel imports no package above it.
_contact = sa.table("contact", sa.column("id", sa.Integer))


def read_by_post(view: F) -> F:
    """Mark a route that is a read sent as POST (its body is too large for a
    query): repeating it is already safe, so the header is ignored there and its
    answer (which may name thousands of contacts) is never stored."""
    view._read_by_post = True  # type: ignore[attr-defined]
    return view


def withholds_in_replay(*fields: str) -> Callable[[F], F]:
    """Mark a route whose answer carries a secret shown once (a webhook's signing
    secret): the answer is kept without these top-level fields of its JSON
    object, and a repeat names them in the ``Idempotent-Withheld`` header. The
    secret is then never at rest in the key's row, nor shown a second time."""

    def mark(view: F) -> F:
        view._withheld_in_replay = tuple(fields)  # type: ignore[attr-defined]
        return view

    return mark


def _withheld(view: Any) -> tuple[str, ...]:
    return tuple(getattr(view, "_withheld_in_replay", ()))


@dataclass(frozen=True)
class _Claim:
    id: int
    key: str


def keep_for() -> timedelta:
    return timedelta(
        hours=float(current_app.config.get("IDEMPOTENCY_KEEP_HOURS", DEFAULT_KEEP_HOURS))
    )


def parse_key(raw: str) -> str:
    """The key a header value carries, or BadRequest (400)."""
    if not _KEY.match(raw):
        if len(raw.strip('"')) > MAX_KEY_LENGTH:
            reason = f"is longer than {MAX_KEY_LENGTH} characters"
        elif not raw.strip('"'):
            reason = "is empty"
        else:
            reason = 'holds characters other than visible ASCII (no spaces, no " or \\)'
        raise BadRequest(
            f"The {HEADER} header {reason}. Send 1 to {MAX_KEY_LENGTH} visible ASCII "
            'characters (a UUID is a good key), bare or as a quoted string ("...").',
            code="invalid_idempotency_key",
            fields={HEADER: ["Not a valid key."]},
        )
    return raw[1:-1] if raw.startswith('"') else raw


def _body_digest() -> str:
    """SHA-256 of the request body, leaving the body readable for the route.

    A multipart upload (an import, up to ``IMPORT_MAX_BYTES``) is copied to a
    spooled file while it is hashed, so that a large file is read once, within
    the largest limit any route takes (the route applies its own after this).
    Its boundary is random per request in every client, so it is hashed as a
    fixed marker: the same fields and file repeated are the same request. Any
    other body is read within the request's limit, and cached.
    """
    if not request.mimetype.startswith("multipart/"):
        return hashlib.sha256(request.get_data(cache=True)).hexdigest()
    limit = max(request.max_content_length or 0, int(current_app.config.get("IMPORT_MAX_BYTES", 0)))
    source = get_input_stream(request.environ, max_content_length=limit or None)
    boundary = request.mimetype_params.get("boundary", "").encode("latin-1")
    marker = b"--" + boundary if boundary else b""
    digest = hashlib.sha256()
    spooled = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115 - closed below
    after_this_request(_closing(spooled))
    pending = b""
    while chunk := source.read(64 * 1024):
        spooled.write(chunk)
        pending += chunk
        if marker:
            pending = pending.replace(marker, b"--\x00")
            # A marker may straddle two chunks: keep its length back.
            cut = max(len(pending) - len(marker) + 1, 0)
            digest.update(pending[:cut])
            pending = pending[cut:]
    digest.update(pending.replace(marker, b"--\x00") if marker else pending)
    spooled.seek(0)
    request.environ["wsgi.input"] = spooled
    request.__dict__.pop("stream", None)
    return digest.hexdigest()


def _closing(spooled: Any) -> Callable[[Response], Response]:
    def close(response: Response) -> Response:
        spooled.close()
        return response

    return close


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for part in (
        request.method,
        request.path,
        request.query_string.decode("latin-1"),
        _body_digest(),
    ):
        digest.update(part.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _take(token_id: int, key: str, fingerprint: str) -> _Claim | Any | None:
    """Claim the key (a ``_Claim``, committed), or read the row that holds it;
    None when that row went in between."""
    now = utcnow()
    # Expired keys of every caller go here too, a few at a time as writes come;
    # rows another transaction is deleting are skipped (no waits, no deadlock).
    expired = (
        sa.select(_table.c.id)
        .where(_table.c.created_at < now - keep_for())
        .limit(100)
        .with_for_update(skip_locked=True)
    )
    db.session.execute(sa.delete(_table).where(_table.c.id.in_(expired.scalar_subquery())))
    claimed = db.session.execute(
        insert_for_dialect(_table)
        .values(token_id=token_id, key=key, fingerprint=fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=["token_id", "key"])
        .returning(_table.c.id)
    ).scalar_one_or_none()
    if claimed is None:
        # Taken: by an answered request, one in flight, or one that died.
        claimed = db.session.execute(
            sa.update(_table)
            .where(
                _table.c.token_id == token_id,
                _table.c.key == key,
                _table.c.completed_at.is_(None),
                _table.c.created_at < now - ABANDONED_AFTER,
            )
            .values(fingerprint=fingerprint, created_at=now)
            .returning(_table.c.id)
        ).scalar_one_or_none()
    if claimed is not None:
        db.session.commit()
        return _Claim(id=claimed, key=key)
    row = db.session.execute(
        sa.select(_table).where(_table.c.token_id == token_id, _table.c.key == key)
    ).one_or_none()
    db.session.commit()
    return row


def claim(token_id: int | None) -> Response | None:
    """Before a write: take the request's key for this token, or answer it.

    Returns None when the route should run (no key, not a write, a read sent as
    POST, or the key newly claimed: ``g`` remembers it for ``store``); returns
    the stored answer for a repeat; raises BadRequest (a bad key),
    InvalidInput (the key used for another request) or Conflict (the first
    request is in flight).
    The claim is committed before the route runs: the route's own transaction
    starts clean, and a concurrent duplicate finds the row.
    """
    raw = request.headers.get(HEADER)
    if raw is None or token_id is None or request.method not in WRITE_METHODS:
        return None
    if getattr(current_app.view_functions.get(request.endpoint or ""), "_read_by_post", False):
        return None
    key = parse_key(raw)
    fingerprint = _fingerprint()
    # A few tries: the row found taken may be given back (its request ended in
    # a 5xx) before it is read.
    for _attempt in range(3):
        row = _take(token_id, key, fingerprint)
        if row is not None:
            break
    else:
        raise _in_flight()
    if isinstance(row, _Claim):
        g.idempotency_claim = row
        return None
    if row.fingerprint != fingerprint:
        raise InvalidInput(
            f"This {HEADER} was used for another request (method, path or body differ) "
            "within the last "
            f"{keep_for().total_seconds() / 3600:g} hours; nothing was done. "
            "Use a new key for a new request.",
            code="idempotency_key_reused",
            fields={HEADER: ["Used for another request."]},
        )
    if row.completed_at is None:
        raise _in_flight()
    return _replay(row)


def _in_flight() -> Conflict:
    return Conflict(
        f"A request with this {HEADER} is still being answered; nothing was done. "
        "Repeat it in a moment to get its answer.",
        code="idempotency_key_in_flight",
    )


def _replay(row: Any) -> Response:
    response = Response(row.response_body, status=row.status_code)
    for name, value in json.loads(row.response_headers or "{}").items():
        response.headers[name] = value
    response.headers[REPLAYED_MARK] = "true"
    return response


def _contact_named(response: Response) -> int | None:
    """The contact a request or its answer names, so that the stored answer goes
    with the contact (the module's docstring)."""
    contact_id = (request.view_args or {}).get("contact_id")
    if isinstance(contact_id, int):
        return contact_id
    if response.mimetype != "application/json":
        return None
    try:
        document = json.loads(response.get_data())
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    named = document.get("contact_id")
    if named is None and "email" in document:
        named = document.get("id")
    return named if isinstance(named, int) and not isinstance(named, bool) else None


def _kept_answer(response: Response) -> tuple[bytes, dict[str, str]]:
    """The body and headers to keep: the route's withheld fields left out."""
    headers = {n: response.headers[n] for n in REPLAYED_HEADERS if n in response.headers}
    body = response.get_data()
    fields = _withheld(current_app.view_functions.get(request.endpoint or ""))
    if not fields:
        return body, headers
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        if response.status_code < 400:
            # A success that is not a JSON object may carry the secret anywhere:
            # nothing of it is kept.
            return b"", {WITHHELD_MARK: "*"}
        return body, headers
    left_out = [name for name in fields if document.pop(name, None) is not None]
    if left_out:
        body = json.dumps(document, separators=(",", ":")).encode() + b"\n"
        headers[WITHHELD_MARK] = ", ".join(left_out)
    return body, headers


def answer_contacts_gone(contact_ids: Sequence[int], *, code: str = "contact_erased") -> int:
    """Before contacts are erased or purged: the answers kept for them become a
    tombstone (410 ``code``, no personal data, no contact), keeping their keys
    and fingerprints, so that a repeat gets the 410 and does nothing; returns
    how many. Does not commit (it is part of the caller's transaction)."""
    if not contact_ids:
        return 0
    tombstone = {"error": {"code": code, "message": GONE_MESSAGES[code]}}
    changed = db.session.execute(
        sa.update(_table)
        .where(id_in(_table.c.contact_id, contact_ids))
        .values(
            status_code=GONE_STATUS,
            response_headers=json.dumps({"Content-Type": "application/json"}),
            response_body=json.dumps(tombstone).encode() + b"\n",
            contact_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    return int(changed.rowcount or 0)  # type: ignore[attr-defined]


def store(response: Response) -> Response:
    """After the response is made: keep the answer of a claimed key (not a 5xx;
    then the key is given back, so that the caller's retry runs again)."""
    claimed: _Claim | None = g.pop("idempotency_claim", None)
    if claimed is None:
        return response
    try:
        db.session.rollback()  # whatever the route left (an error) is not ours to commit
        if response.status_code >= 500 or response.is_streamed:
            db.session.execute(sa.delete(_table).where(_table.c.id == claimed.id))
        else:
            body, headers = _kept_answer(response)
            contact_id = _contact_named(response)
            db.session.execute(
                sa.update(_table)
                .where(_table.c.id == claimed.id)
                .values(
                    completed_at=utcnow(),
                    status_code=response.status_code,
                    response_headers=json.dumps(headers),
                    response_body=body,
                    # None when the contact is gone (the answer of its erasure).
                    contact_id=sa.select(_contact.c.id)
                    .where(_contact.c.id == contact_id)
                    .scalar_subquery(),
                )
            )
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        # The key's row id and the error's kind, never its text: a database
        # error quotes its parameters, the answer among them, which may name a
        # person. The row stays in flight: repeats get 409 until it counts as
        # abandoned (ABANDONED_AFTER), since the write itself did happen.
        log.error(
            "Could not keep the answer of idempotency key row %s (%s)",
            claimed.id,
            type(exc).__name__,
        )
    return response


def prune() -> int:
    """Delete the keys older than the retention; returns how many. Does not commit."""
    cutoff = utcnow() - keep_for()
    removed = db.session.execute(sa.delete(_table).where(_table.c.created_at < cutoff))
    return int(removed.rowcount or 0)  # type: ignore[attr-defined]


def _on_retention_due(sender: Any, **_: object) -> dict[str, int]:
    # By the clock, not the run's as_of: a key's life is hours, and a run "as
    # of" a later date must not forget keys a caller may still repeat.
    removed = prune()
    # In the run's record only when it removed some: most days nothing has expired
    # that the writes themselves did not prune already.
    return {"idempotency-keys": removed} if removed else {}


class IdempotencyKeyPlugin(BasePlugin):
    """Documents the ``Idempotency-Key`` header, as one reusable parameter, on
    every write operation of the API that a token guards, but those marked
    ``read_by_post``."""

    COMPONENT = "IdempotencyKey"
    REFUSAL = "IdempotencyKeyRefused"

    def __init__(self, app: Flask) -> None:
        self.app = app

    def init_spec(self, spec: Any) -> None:
        super().init_spec(spec)
        spec.components.parameter(
            self.COMPONENT,
            "header",
            {
                "name": HEADER,
                "required": False,
                "description": (
                    "Makes the write safe to repeat: the same key (per API token, for "
                    f"{DEFAULT_KEEP_HOURS} hours by default) returns the first answer "
                    "and changes nothing. The same key with another request: 422; "
                    "while the first is in flight: 409; a malformed key: 400. "
                    "See docs/integration.md, Repeating a write safely."
                ),
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_KEY_LENGTH + 2,
                    "pattern": KEY_PATTERN,
                },
            },
        )

        spec.components.response(
            self.REFUSAL,
            {
                "description": (
                    f"The {HEADER} was refused: malformed (400), still in flight (409) "
                    "or used for another request (422)."
                ),
                "content": {"application/json": {"schema": "Error"}},
            },
        )

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if rule is None or not operations or not rule.rule.startswith(API_PREFIX):
            return
        view = self.app.view_functions.get(rule.endpoint)
        # Only where ``kernel.access.requires`` guards the route: the key is the
        # token's, so a route without a token (none yet) cannot honour one.
        if getattr(view, "_required_action", None) is None or getattr(view, "_read_by_post", False):
            return
        for method, operation in operations.items():
            if method.upper() in WRITE_METHODS:
                # A string names a component: apispec writes it as a $ref.
                operation.setdefault("parameters", []).append(self.COMPONENT)
                responses = operation.setdefault("responses", {})
                for status in ("400", "409", "422"):
                    responses.setdefault(status, self.REFUSAL)


def init_app(app: Flask) -> None:
    app.config.setdefault("IDEMPOTENCY_KEEP_HOURS", DEFAULT_KEEP_HOURS)
    app.after_request(store)
    retention_due.connect(_on_retention_due, weak=False)
