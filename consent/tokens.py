"""Signed links: one serializer per purpose, each with its own salt and lifetime.

A link proves that whoever holds it received our email at that address
(docs/rules.md X9). The payload holds opaque ids, never the address, so a
forwarded or logged URL reveals nothing. Links keep working across a rotation
of ``SECRET_KEY`` while the old key is listed in ``SECRET_KEY_FALLBACKS``.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from kernel.errors import InvalidInput


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    VERIFY_ADDRESS = "verify-address"
    # Undoes a consent a form recorded at once (R8), from the email that tells of it.
    UNDO_SIGNUP = "undo-signup"


# How long a link works. Unsubscribe links must work for at least 60 days
# after the email was sent (mailbox providers' requirement for one-click).
MAX_AGE: dict[Purpose, timedelta] = {
    Purpose.CONFIRM: timedelta(days=7),
    Purpose.UNSUBSCRIBE: timedelta(days=180),
    Purpose.PREFERENCES: timedelta(days=180),
    Purpose.VERIFY_ADDRESS: timedelta(days=2),
    # As long as an unsubscribe link: the notice may be the person's only record
    # of a subscription they never asked for.
    Purpose.UNDO_SIGNUP: timedelta(days=180),
}

# An expired confirmation link may still ask for a fresh email for this long.
RENEWABLE_FOR = timedelta(days=90)


class LinkInvalid(InvalidInput):
    """Tampered, truncated, signed for another purpose or by an unknown key."""

    code = "invalid_link"


class LinkExpired(LinkInvalid):
    """Genuine but too old. ``payload`` is the verified content, for a renewal."""

    code = "expired_link"

    def __init__(
        self,
        message: str,
        payload: dict[str, Any],
        issued_at: datetime | None,
        purpose: Purpose | None = None,
    ):
        super().__init__(message)
        self.payload = payload
        self.issued_at = issued_at
        # Whose link it was can still be read (for the page's language).
        self.purpose = purpose


def _signer_issued_at(moment: datetime) -> type[TimestampSigner]:
    """A signer that stamps ``moment``, so that tests and ``--as-of`` can pass time in."""

    class _Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(moment.timestamp())

    return _Signer


def _serializer(purpose: Purpose, issued_at: datetime | None = None) -> URLSafeTimedSerializer:
    config = current_app.config
    # itsdangerous signs with the last key and accepts every key in the list.
    keys = [*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"]]
    signer = _signer_issued_at(issued_at) if issued_at is not None else TimestampSigner
    return URLSafeTimedSerializer(keys, salt=f"consent-service/{purpose.value}", signer=signer)


def make_token(purpose: Purpose, payload: dict[str, Any], issued_at: datetime | None = None) -> str:
    return _serializer(purpose, issued_at).dumps(payload)


def read_token(purpose: Purpose, token: str, *, max_age: timedelta | None = None) -> dict[str, Any]:
    """The verified payload, or ``LinkInvalid`` / ``LinkExpired``."""
    age = max_age if max_age is not None else MAX_AGE[purpose]
    serializer = _serializer(purpose)
    try:
        payload = serializer.loads(token, max_age=int(age.total_seconds()))
    except SignatureExpired as exc:
        # The signature itself is genuine: read the payload without the age check.
        payload = serializer.loads(token)
        raise LinkExpired(
            "This link has expired.",
            payload=payload if isinstance(payload, dict) else {},
            issued_at=exc.date_signed,
            purpose=purpose,
        ) from None
    except BadSignature:
        raise LinkInvalid("This link is not valid. It may be incomplete or changed.") from None
    if not isinstance(payload, dict):
        raise LinkInvalid("This link is not valid.")
    return payload
