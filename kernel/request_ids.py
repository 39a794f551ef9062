"""The request id: one opaque token that ties a request's log line to the lines
of every job it queued (``X-Request-ID``, docs/operations.md, Logs).

Held in a context variable rather than ``flask.g`` because the dramatiq
worker has no request: the job log middleware (``kernel.logs``) sets the same
variable from the message, so a job queued by a job keeps the id too.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token

HEADER = "X-Request-ID"
# What a proxy or load balancer may send (UUIDs, W3C trace ids, AWS's
# "Root=1-..." form), and nothing that could break a log line or a header:
# no spaces, quotes, control characters; at most 128 characters.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:=+/@-]{1,128}")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(raw: str | None) -> str | None:
    """``raw`` if it is an acceptable request id, else None (the caller makes one)."""
    if raw and _ACCEPTED.fullmatch(raw):
        return raw
    return None


def current_request_id() -> str | None:
    """The id of the request or job this code runs for; None outside both."""
    return _current.get()


def bind_request_id(request_id: str | None) -> Token[str | None]:
    """Make ``request_id`` current; give the token back to ``unbind_request_id``."""
    return _current.set(request_id)


def unbind_request_id(token: Token[str | None]) -> None:
    _current.reset(token)
