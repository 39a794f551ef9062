"""The one place an email address is normalised."""

from __future__ import annotations

import hashlib
import hmac
import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
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
    plain = _plain_address(raw.strip())
    if plain is not None:
        return plain
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"Not a valid email address: {exc}", code="invalid_email") from exc
    return result.normalized.lower()


# The everyday address: a dot-atom of ASCII letters, digits and ._%+- and a
# domain of letter-digit-hyphen labels ending in a letter TLD. For these,
# email-validator's answer is known (valid; normalised = lower-cased), and
# reaching it costs a tenth of the time; tests/crm/test_addresses.py checks the
# two agree on generated addresses. Anything else takes the full path.
_PLAIN = re.compile(
    r"(?P<local>[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*)"
    r"@(?P<domain>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})",
    re.IGNORECASE | re.ASCII,
)


def _plain_address(address: str) -> str | None:
    match = _PLAIN.fullmatch(address)
    if match is None or len(match["local"]) > 64 or len(address) > 254:
        return None
    labels = match["domain"].lower().split(".")
    # IDNA rules (xn-- Punycode, "ab--" labels) and special-use names: full path.
    if any(label[2:4] == "--" for label in labels):
        return None
    if any(".".join(labels[i:]) in SPECIAL_USE_DOMAIN_NAMES for i in range(len(labels))):
        return None
    return address.lower()


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
