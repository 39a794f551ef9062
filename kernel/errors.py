"""Domain exceptions. They carry a machine code and a message, never an HTTP status;
``app.py`` maps each class to its status at the boundary."""

from __future__ import annotations


class DomainError(Exception):
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict | None = None,
        details: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}
        # Machine-readable facts about the refusal, shown next to code and
        # message (the other contact's id of an ``external_id_taken``).
        self.details = details or {}


class InvalidInput(DomainError):
    code = "invalid_input"


class BadRequest(DomainError):
    """The request cannot be understood at all (a malformed feed cursor)."""

    code = "bad_request"


class Gone(DomainError):
    """What the request names existed once and was removed for good (a feed
    cursor older than the feed's pruned horizon)."""

    code = "gone"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class NotPermitted(DomainError):
    code = "forbidden"


class NotAuthenticated(DomainError):
    code = "unauthenticated"


class Unavailable(DomainError):
    """A part the request needs (the job queue) is down; nothing was recorded."""

    code = "unavailable"
