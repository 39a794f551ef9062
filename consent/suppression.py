"""The suppression list: keyed hashes of addresses that must never be marketed to (R22),
and the scoped "do not contact" entries of addresses that refused one topic or
one channel.

An entry is the keyed hash of one address, as it was suppressed. An address
is blocked by its own entry or by its mailbox's: mail to ``anna+x@firma.se``
lands in ``anna@firma.se``, so a suppressed ``anna@`` blocks every
``anna+tag@`` (X5). The list keeps no address, so both hashes are computed
from the address being checked (``kernel.addresses.keyed_hashes``). The other
way round does not hold: a suppressed sub-address blocks only itself.

A scoped entry (``ScopedSuppression``) is the same keyed hash with the topic
or channel refused. The decision does not read it: ``consent.refusals``
restates it in the ledger of a contact that appears at the address again,
and ``consent.ledger`` writes it with every refusal. Both kinds of entry are
kept for as long as the policy file's ``[do_not_contact]`` says
(``drop_expired``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa

from consent.models import ALL, ScopedSuppression, Suppression
from crm.models import SUB_ADDRESS, Contact
from extensions import db
from kernel.addresses import keyed_hash, keyed_hashes, mailbox_of
from kernel.database import insert_for_dialect
from kernel.timestamps import utcnow

K = TypeVar("K", bound=Hashable)

# Hashes per lookup: well under SQLite's limit of bound parameters.
_CHUNK = 5_000


def address_hash(normalised_email: str) -> str:
    """The suppression key of an address (``kernel.addresses.keyed_hash``)."""
    return keyed_hash(normalised_email)


def suppressed_hashes(hashes: Iterable[str]) -> dict[str, Suppression]:
    wanted = list(dict.fromkeys(hashes))
    found: dict[str, Suppression] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = db.session.scalars(sa.select(Suppression).where(Suppression.address_hash.in_(chunk)))
        found.update((row.address_hash, row) for row in rows)
    return found


def find_suppression(normalised_email: str) -> Suppression | None:
    """The entry that blocks this address: its own, else its mailbox's. None when
    neither is listed. This is the question "may it ever be marketed to?"."""
    hashes = keyed_hashes(normalised_email)
    found = suppressed_hashes(hashes)
    return next((found[h] for h in hashes if h in found), None)


def find_suppressions(addresses: Mapping[K, str]) -> dict[K, Suppression]:
    """``find_suppression`` for many addresses (normalised, by any key): the
    entry that blocks each blocked one. One query per five thousand hashes."""
    hashes = {key: keyed_hashes(address) for key, address in addresses.items()}
    found = suppressed_hashes(h for each in hashes.values() for h in each)
    return {
        key: next(found[h] for h in each if h in found)
        for key, each in hashes.items()
        if any(h in found for h in each)
    }


def own_suppression(normalised_email: str) -> Suppression | None:
    """The address's own entry only: what ``suppress`` adds and
    ``lift_suppression`` removes.

    Writers ask this one. A person who says no at ``anna+x@`` gets an entry of
    their own even when ``anna@`` is listed (so that it outlives a later lift
    of ``anna@``), and a confirmation at ``anna+x@`` lifts its own entry,
    never the mailbox's: the mailbox's owner said no at ``anna@``.
    """
    return db.session.get(Suppression, address_hash(normalised_email))


def mailbox_suppressions(addresses: Mapping[K, str]) -> dict[K, Suppression]:
    """For each address with a ``+tag`` among ``addresses`` (normalised, by any
    key), its mailbox's entry where the mailbox is listed. Addresses without a
    tag are skipped at no cost: there is no query when none has one."""
    tagged: dict[K, str] = {}
    for key, address in addresses.items():
        mailbox = mailbox_of(address)
        if mailbox != address:
            tagged[key] = address_hash(mailbox)
    found = suppressed_hashes(tagged.values())
    return {key: found[digest] for key, digest in tagged.items() if digest in found}


def suppressed_sub_addresses() -> list[int]:
    """Ids of the contacts at a sub-address (``anna+x@``) whose mailbox is
    suppressed: the set-based queries (the campaign audience) join the list on
    each contact's own hash and leave these out by id.

    One read of the partial index of the addresses holding a ``+``
    (``crm.models.SUB_ADDRESS``, migration 0035); few do in a B2B list.
    """
    rows = db.session.execute(sa.select(Contact.id, Contact.email).where(SUB_ADDRESS)).all()
    return sorted(mailbox_suppressions({row.id: row.email for row in rows}))


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
    """Remove the address's own entry; only a fresh double opt-in by the person may
    call this. A mailbox's entry stays (see ``own_suppression``)."""
    entry = own_suppression(normalised_email)
    if entry is None:
        return False
    db.session.delete(entry)
    return True


# Scoped entries ----------------------------------------------------------------------


def keep_scoped_refusal(
    normalised_email: str, kind: str, topic: str, channel: str, at: datetime
) -> None:
    """Keep the address's "no" to one topic or one channel (no commit; part of
    the transaction that records the refusal). A refusal of everything is a
    ``suppress`` instead. An entry already kept keeps its date: the person's
    first "no" is the one that counts. One statement, also right when
    another transaction keeps the same entry at the same moment."""
    if topic == ALL and channel == ALL:
        raise ValueError("A refusal of all marketing is a suppression; use suppress().")
    insert = insert_for_dialect(ScopedSuppression.__table__)
    db.session.execute(
        insert.values(
            address_hash=address_hash(normalised_email),
            topic=topic,
            channel=channel,
            kind=kind,
            created_at=at,
        ).on_conflict_do_nothing(index_elements=["address_hash", "topic", "channel"])
    )


def lift_scoped_refusal(normalised_email: str, topic: str, channel: str) -> bool:
    """Remove the address's own entry for ``topic`` by ``channel``; only the
    person's verified opt-in to that topic may call this (``consent.projection.fold``).
    A mailbox's entry stays, as for ``lift_suppression``."""
    result = db.session.execute(
        sa.delete(ScopedSuppression)
        .where(
            ScopedSuppression.address_hash == address_hash(normalised_email),
            ScopedSuppression.topic == topic,
            ScopedSuppression.channel == channel,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def scoped_refusals(hashes: Iterable[str]) -> dict[str, list[ScopedSuppression]]:
    """The scoped entries kept under each of ``hashes`` (only hashes holding some)."""
    wanted = list(dict.fromkeys(hashes))
    found: dict[str, list[ScopedSuppression]] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = db.session.scalars(
            sa.select(ScopedSuppression)
            .where(ScopedSuppression.address_hash.in_(chunk))
            .order_by(ScopedSuppression.created_at)
        )
        for row in rows:
            found.setdefault(row.address_hash, []).append(row)
    return found


def drop_expired(kept_since_before: datetime) -> dict[str, int]:
    """Remove the entries, scoped and of all marketing, created before
    ``kept_since_before`` (no commit): the daily retention run's part for the
    suppression list, when the policy file limits how long it is kept.
    Returns how many of each went."""
    counts = {}
    for name, model in (("suppression", Suppression), ("scoped", ScopedSuppression)):
        result = db.session.execute(
            sa.delete(model)
            .where(model.created_at < kept_since_before)
            .execution_options(synchronize_session=False)
        )
        counts[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return counts
