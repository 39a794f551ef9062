"""Domain exceptions. They carry a machine code and a message, never an HTTP status;
``app.py`` maps each class to its status at the boundary.

The message is English (the API's ``message``; machines read ``code``). A
message a person may read on a page is written as a catalog text, declared
with ``N_()``, its values given apart (``values={"topic": key}`` for
``"Topic %(topic)s is not marketing."``), so that a page can show it in the
reader's language (``kernel.pages.refusal_text``, docs/i18n.md)."""

from __future__ import annotations


def N_(text: str) -> str:
    """``text`` unchanged: marks a text for extraction that is translated where
    it is shown (a service's message, a code's label next to its enum).

    It lives here, in the kernel's lowest room, so that every module can mark
    its texts; ``kernel.i18n`` re-exports it."""
    return text


class DomainError(Exception):
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        fields: dict | None = None,
        details: dict | None = None,
        values: dict[str, object] | None = None,
    ):
        self.template = message
        self.values = values or {}
        self.message = message % self.values if self.values else message
        super().__init__(self.message)
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
