"""The suppression list: keyed hashes of addresses that must never be marketed to (R22)."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from consent.models import Suppression
from extensions import db
from kernel.addresses import keyed_hash
from kernel.timestamps import utcnow


def address_hash(normalised_email: str) -> str:
    """The suppression key of an address (``kernel.addresses.keyed_hash``)."""
    return keyed_hash(normalised_email)


def suppressed_hashes(hashes: Iterable[str]) -> dict[str, Suppression]:
    wanted = list(hashes)
    if not wanted:
        return {}
    rows = db.session.scalars(sa.select(Suppression).where(Suppression.address_hash.in_(wanted)))
    return {row.address_hash: row for row in rows}


def find_suppression(normalised_email: str) -> Suppression | None:
    return db.session.get(Suppression, address_hash(normalised_email))


def suppress(normalised_email: str, reason: str) -> Suppression:
    """Add the address to the list (no commit; part of the caller's transaction)."""
    digest = address_hash(normalised_email)
    existing = db.session.get(Suppression, digest)
    if existing is not None:
        return existing
    entry = Suppression(address_hash=digest, reason=reason, created_at=utcnow())
    db.session.add(entry)
    return entry


def lift_suppression(normalised_email: str) -> bool:
    """Remove the entry; only a fresh double opt-in by the person may call this."""
    entry = find_suppression(normalised_email)
    if entry is None:
        return False
    db.session.delete(entry)
    return True
