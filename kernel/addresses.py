"""The one place an email address is normalised."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from flask import current_app

from kernel.errors import N_, InvalidInput

# An unquoted ASCII address: an RFC 5322 dot-atom before the @-sign (the
# characters email-validator's own first check accepts), letters, digits,
# dots and hyphens after it. Nearly every address in a list is of this form.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"({_ATEXT}(?:\.{_ATEXT})*)@([A-Za-z0-9.-]+)")
# RFC 5321 4.5.3.1.3, as email-validator counts it.
_MAX_LENGTH = 254


@lru_cache(maxsize=65_536)
def _plain_domain(domain: str) -> str | None:
    """email-validator's normal form of an ASCII domain, or None when it refuses
    the domain or would rewrite it into something else than its lower case
    (an IDNA ``xn--`` label); the caller then validates the whole address.

    A list holds few domains for many addresses (one per company), and the
    domain check is most of email-validator's cost; it depends on the domain
    alone, so its answer is kept.
    """
    try:
        result = validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    normal = result.domain.lower()
    return normal if normal == domain.lower() else None


def normalise_email(raw: str) -> str:
    """Return the address in the one form that is stored, compared and hashed.

    email-validator normalises the domain (IDNA, case) and Unicode; we also
    lower-case the local part. RFC 5321 lets a server treat ``Anna@`` and
    ``anna@`` as different mailboxes, but no real B2B mail server does, and
    treating them as two people would let a case change slip past an objection.

    A plain ASCII address (a dot-atom local part, a domain email-validator has
    already accepted) is answered without running the full validator: the
    result is the same (tests/crm/test_addresses.py checks it against
    email-validator), and an import of a million rows runs it a million times.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(N_("An email address is required."), code="invalid_email")
    address = raw.strip()
    plain = _PLAIN_ADDRESS.fullmatch(address)
    if plain is not None and len(address) <= _MAX_LENGTH:
        domain = _plain_domain(plain.group(2))
        if domain is not None:
            return f"{plain.group(1).lower()}@{domain}"
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"Not a valid email address: {exc}", code="invalid_email") from exc
    return result.normalized.lower()


def is_valid_email(raw: str) -> bool:
    try:
        normalise_email(raw)
    except InvalidInput:
        return False
    return True


def mailbox_of(normalised_email: str) -> str:
    """The mailbox a normalised address delivers to: the address without its
    ``+tag`` (RFC 5233 sub-addressing), ``anna+news@firma.se`` -> ``anna@firma.se``.

    Mail servers deliver ``anna+anything@`` to ``anna@``, so a limit or a
    suppression that counts typed addresses can be walked around with a new tag
    per post. A local part that starts with ``+`` or is quoted has no tag we
    could strip safely and is its own mailbox.
    """
    local, at, domain = normalised_email.rpartition("@")
    base, plus, _tag = local.partition("+")
    if not at or not plus or not base or local.startswith('"'):
        return normalised_email
    return f"{base}@{domain}"


def domain_of(normalised_email: str) -> str:
    """The recipient domain of a normalised address (already lower case)."""
    return normalised_email.rpartition("@")[2]


def keyed_hash(normalised_email: str) -> str:
    """HMAC-SHA256 of an address with the server's SUPPRESSION_KEY.

    Keyed so that a leaked suppression list cannot be reversed by hashing a
    list of guessed addresses. The key must never change. Stored on each
    contact too, so that set-based queries can join the suppression list.
    """
    return keyed_hasher()(normalised_email)


def keyed_hashes(normalised_email: str, hasher: Callable[[str], str] | None = None) -> list[str]:
    """The keyed hashes an address can be found under on the suppression list:
    its own, then its mailbox's when it has a ``+tag`` (``mailbox_of``).

    A suppressed ``anna@firma.se`` must block ``anna+x@firma.se`` too, and the
    list holds only hashes, so both are computed from the address in hand.
    """
    digest = hasher or keyed_hasher()
    mailbox = mailbox_of(normalised_email)
    own = digest(normalised_email)
    return [own] if mailbox == normalised_email else [own, digest(mailbox)]


def keyed_hasher() -> Callable[[str], str]:
    """``keyed_hash`` with the key read once, for hashing many addresses."""
    key = current_app.config["SUPPRESSION_KEY"].encode()

    def digest(normalised_email: str) -> str:
        return hmac.digest(key, normalised_email.encode(), hashlib.sha256).hex()

    return digest
