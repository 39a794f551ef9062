"""VERP: an envelope sender per message, so returned mail names the message it is about.

With ``BOUNCE_ADDRESS=bounces@example.com`` the message of outbox row 42
leaves with the envelope sender ``bounces+42-<signature>@example.com``; every
bounce for it comes back to that address, which names the row even when the
bounce itself is mangled. The signature is an HMAC of the row id under a key
derived from ``SECRET_KEY`` (itsdangerous's key derivation, a salt of its
own): nobody can make us count a bounce against another message. It is short
and lower-case base32 so that the local part stays within the 64 characters
RFC 5321 allows and survives a mail server that lower-cases it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from flask import current_app
from itsdangerous import Signer

SALT = "verp-bounce-address"
# 80 bits: a forger must guess, the MTA must carry 16 characters.
SIGNATURE_CHARS = 16
# RFC 5321 4.5.3.1.1
MAX_LOCAL_PART = 64
_TOKEN = re.compile(rf"^(\d{{1,12}})-([a-z2-7]{{{SIGNATURE_CHARS}}})$")


class ForgedToken(Exception):
    """A VERP token whose signature is wrong: the bounce is not about our message."""


def bounce_address() -> tuple[str, str] | None:
    """``BOUNCE_ADDRESS`` as (local part, domain), or None when unset."""
    configured = current_app.config.get("BOUNCE_ADDRESS")
    if not configured:
        return None
    local, _, domain = str(configured).strip().rpartition("@")
    if not local or not domain or "+" in local:
        raise RuntimeError("BOUNCE_ADDRESS must be an address like bounces@example.com (no '+').")
    return local, domain.lower()


def _signature(outbox_id: int) -> str:
    keys = [current_app.config["SECRET_KEY"], *current_app.config.get("SECRET_KEY_FALLBACKS", [])]
    return _sign(keys[0], outbox_id)


def _sign(secret: str, outbox_id: int) -> str:
    key = Signer(secret, salt=SALT, digest_method=hashlib.sha256).derive_key()
    digest = hmac.new(key, str(outbox_id).encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:SIGNATURE_CHARS]


def envelope_sender(outbox_id: int) -> str | None:
    """The envelope sender of the message of ``outbox_id``, or None without
    ``BOUNCE_ADDRESS`` (the message's From address serves then)."""
    address = bounce_address()
    if address is None:
        return None
    local, domain = address
    verp_local = f"{local}+{outbox_id}-{_signature(outbox_id)}"
    if len(verp_local) > MAX_LOCAL_PART:
        raise RuntimeError("BOUNCE_ADDRESS's local part is too long for a VERP token.")
    return f"{verp_local}@{domain}"


def outbox_id_of(address: str) -> int | None:
    """The outbox row a returned message's recipient names, or None when the
    address is not a VERP address of ``BOUNCE_ADDRESS``. Raises ``ForgedToken``
    for a token with the right shape and a wrong signature."""
    configured = bounce_address()
    if configured is None or not address:
        return None
    local, domain = configured
    address = address.strip().strip("<>").lower()
    got_local, _, got_domain = address.rpartition("@")
    prefix = local.lower() + "+"
    if got_domain != domain or not got_local.startswith(prefix):
        return None
    token = got_local.removeprefix(prefix)
    found = _TOKEN.match(token)
    if found is None:
        raise ForgedToken("VERP token of the wrong shape")
    outbox_id, signature = int(found.group(1)), found.group(2)
    keys = [current_app.config["SECRET_KEY"], *current_app.config.get("SECRET_KEY_FALLBACKS", [])]
    if any(hmac.compare_digest(_sign(key, outbox_id), signature) for key in keys):
        return outbox_id
    raise ForgedToken("VERP token with a wrong signature")
