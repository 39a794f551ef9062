"""The one place an email address is normalised."""

from __future__ import annotations

import hashlib
import hmac

from email_validator import EmailNotValidError, validate_email
from flask import current_app

from crm.errors import InvalidInput


def normalise_email(raw: str) -> str:
    """Return the address in the one form that is stored, compared and hashed.

    email-validator normalises the domain (IDNA, case) and Unicode; we also
    lower-case the local part. RFC 5321 lets a server treat ``Anna@`` and
    ``anna@`` as different mailboxes, but no real B2B mail server does, and
    treating them as two people would let a case change slip past an objection.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("An email address is required.", code="invalid_email")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"Not a valid email address: {exc}", code="invalid_email") from exc
    return result.normalized.lower()


def is_valid_email(raw: str) -> bool:
    try:
        normalise_email(raw)
    except InvalidInput:
        return False
    return True


def keyed_hash(normalised_email: str) -> str:
    """HMAC-SHA256 of an address with the server's SUPPRESSION_KEY.

    Keyed so that a leaked suppression list cannot be reversed by hashing a
    list of guessed addresses. The key must never change. Stored on each
    contact too, so that set-based queries can join the suppression list.
    """
    key = current_app.config["SUPPRESSION_KEY"].encode()
    return hmac.new(key, normalised_email.encode(), hashlib.sha256).hexdigest()
