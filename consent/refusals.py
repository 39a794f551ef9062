"""A "no" that outlives the contact: scoped "do not contact" entries restated on
every way in, and dropped when the policy file says (docs/rules.md R22, X5).

Every refusal the ledger records keeps a keyed hash of the address with what
was refused (``consent.ledger``): all marketing on the suppression list, one
topic or one channel as a ``ScopedSuppression``. The decision reads the
suppression list itself. A scoped entry is brought back into the ledger
instead: when a contact appears at an address that holds entries (created by
the API, an import, a signup, a staff page or a connector, or rectified to
that address), ``restate_refusals`` records the refusal again, as the
service's own event naming the entry, in the same transaction. The decision
and its SQL copies then see an ordinary unsubscribe or objection, and only
the person's own verified opt-in reopens it (``consent.projection.fold``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

import sqlalchemy as sa

from consent.ledger import record_many
from consent.models import ALL, EventKind, PermissionState
from consent.suppression import drop_expired, scoped_refusals
from consent.topics import current_policy
from crm.models import Contact
from extensions import db
from kernel.access import SYSTEM_ACTOR
from kernel.addresses import keyed_hasher, keyed_hashes, mailbox_of
from kernel.database import id_in
from kernel.signals import contacts_addressed, retention_due

# The source of a restated refusal: the service itself, never a caller
# (consent.projection.RESERVED_SOURCES).
SYSTEM_SOURCE = "system"
_CHUNK = 5_000


def _describe(kind: str, topic: str, channel: str) -> str:
    what = "all marketing" if topic == ALL else f"the topic {topic!r}"
    how = "on every channel" if channel == ALL else f"by {channel}"
    return f"{kind} ({what} {how})"


def restate_refusals(contact_ids: Sequence[int]) -> int:
    """Record again, in these contacts' ledgers, each scoped "do not contact"
    entry kept for their address (its own, or its mailbox's for ``anna+x@``,
    as X5). Returns how many events were recorded. Does not commit.

    A contact whose projection already holds the refusal gets nothing. A
    fixed number of statements per 5,000 contacts when none is listed (the
    usual case of an import); one batch of events per refused scope otherwise.
    """
    hasher = keyed_hasher()
    recorded = 0
    for start in range(0, len(contact_ids), _CHUNK):
        chunk = list(contact_ids[start : start + _CHUNK])
        contacts = db.session.execute(
            sa.select(Contact.id, Contact.email, Contact.address_hash).where(
                id_in(Contact.id, chunk)
            )
        ).all()
        hashes = {c.id: _hashes(c.email, c.address_hash, hasher) for c in contacts}
        entries = scoped_refusals(h for hs in hashes.values() for h in hs)
        if not entries:
            continue
        states = {
            (s.contact_id, s.topic, s.channel): s
            for s in db.session.scalars(
                sa.select(PermissionState).where(
                    PermissionState.contact_id.in_(
                        [c.id for c in contacts if any(h in entries for h in hashes[c.id])]
                    )
                )
            )
        }
        groups: dict[tuple[str, str, str], dict[int, Any]] = {}
        for contact in contacts:
            for digest in hashes[contact.id]:
                for entry in entries.get(digest, ()):
                    if _holds(states, contact.id, entry.kind, entry.topic, entry.channel):
                        continue
                    scope = (entry.kind, entry.topic, entry.channel)
                    groups.setdefault(scope, {})[contact.id] = contact
        for (kind, topic, channel), members in groups.items():
            record_many(
                list(members.values()),
                EventKind(kind),
                actor=SYSTEM_ACTOR,
                source=SYSTEM_SOURCE,
                topic=topic,
                channel=channel,
                source_ref=f"do-not-contact:{topic}:{channel}",
                note=(
                    "Restated from the do-not-contact entry kept for this address: "
                    f"{_describe(kind, topic, channel)}. Only the person's own "
                    "double opt-in reopens it."
                ),
            )
            recorded += len(members)
    return recorded


def _hashes(email: str, stored: str | None, hasher: Callable[[str], str]) -> list[str]:
    """``keyed_hashes`` of an address, taking its own hash from the contact's
    ``address_hash`` (written with the address): only a sub-address's mailbox
    is hashed here, not each of a million imported addresses again."""
    if stored is None:
        return keyed_hashes(email, hasher)
    mailbox = mailbox_of(email)
    return [stored] if mailbox == email else [stored, hasher(mailbox)]


def _holds(states: dict[tuple[int, str, str], Any], contact_id: int, *scope: str) -> bool:
    kind, topic, channel = scope
    if kind == EventKind.OBJECTED.value:
        row = states.get((contact_id, ALL, channel))
        return row is not None and row.objected_since is not None
    row = states.get((contact_id, topic, channel))
    return row is not None and row.unsubscribed_since is not None


def _on_contacts_addressed(sender: Any, *, contact_ids: Sequence[int], **_: object) -> None:
    restate_refusals(contact_ids)


# How long the entries are kept -------------------------------------------------------


def expiry_cutoff(as_of: date) -> datetime | None:
    """The moment before which an entry created is dropped by a run on ``as_of``,
    or None when the policy file keeps the entries without end (the default)."""
    years = current_policy().do_not_contact_years
    if years is None:
        return None
    try:
        day = as_of.replace(year=as_of.year - years)
    except ValueError:  # 29 February in a year that has none
        day = as_of.replace(year=as_of.year - years, day=28)
    return datetime.combine(day, time.min, tzinfo=UTC)


def _on_retention_due(sender: Any, *, as_of: date, **_: object) -> dict[str, int]:
    cutoff = expiry_cutoff(as_of)
    if cutoff is None:
        return {}
    counts = drop_expired(cutoff)
    return {
        "do-not-contact-all-marketing": counts["suppression"],
        "do-not-contact-scoped": counts["scoped"],
    }


def connect_signals() -> None:
    """Restate refusals on every new address; drop expired entries in the daily run."""
    contacts_addressed.connect(_on_contacts_addressed, weak=False)
    retention_due.connect(_on_retention_due, weak=False)
