"""After a restore: re-apply the erasures and purges the erasure journal
(``crm.erasure_journal``) holds since the backup, so that a database brought
back from an older dump does not bring the people back with it
(GDPR art. 17; R22). ``flask rights reapply --since DATE``; docs/operations.md,
"Backup and restore".

Per entry, in the order written: an erasure puts the address's keyed hash
back on the suppression list, and the contact with the entry's id is deleted
again as an erasure (its open requests answered, a tombstone in the change
feed so that connected systems delete their copies again); a purge deletes the
contact again with its rule's tombstone. Running it twice changes nothing the
second time.

Two things the database knows better than an old line, so that a ``--since``
earlier than the backup is harmless: a contact with the entry's id created
after the entry is someone else (a restored sequence hands ids out again) and
stays; an address whose suppression was lifted after its erasure (only the
person's own confirmation lifts one) came back, and the database's
suppression list already says whether it is blocked, so the entry does not
re-suppress it. A contact merely created at the address after the erasure (a
CRM sync, a signup not confirmed) does not count: it is suppressed again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from consent import privacy_requests
from consent.models import ConsentEvent, EventKind, Suppression
from consent.suppression import suppressed_hashes
from crm import erasure_journal
from crm import services as crm
from crm.changes import CONTACT_ERASED, CONTACT_PURGED
from crm.erasure_journal import JournalEntry
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.database import id_in, insert_for_dialect
from kernel.signals import decisions_changed
from kernel.signals import sender as signal_sender

# Entries per transaction: a purge of a large list is re-applied in short
# transactions, as the retention run did it.
CHUNK = 500


@dataclass
class ReapplyReport:
    since: datetime
    dry_run: bool = False
    entries: int = 0
    erased: int = 0
    purged: int = 0
    suppressions_restored: int = 0
    # The contact was not in the database any more: applied before, or created after the backup.
    already_gone: int = 0
    # A contact with the entry's id created after the entry: another person, kept.
    kept_newer_contact: int = 0
    # The address came back after its erasure and lifted its suppression by its own
    # confirmation, before the backup was taken: the database's suppression list stands.
    kept_returned_address: int = 0
    unreadable_lines: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "since": self.since.isoformat(),
            "dry_run": self.dry_run,
            "entries": self.entries,
            "erased": self.erased,
            "purged": self.purged,
            "suppressions_restored": self.suppressions_restored,
            "already_gone": self.already_gone,
            "kept_newer_contact": self.kept_newer_contact,
            "kept_returned_address": self.kept_returned_address,
            "unreadable_lines": self.unreadable_lines,
        }


def reapply_journal(actor: Actor, since: datetime, *, dry_run: bool = False) -> ReapplyReport:
    """Re-apply every journal entry written at or after ``since`` to this database.

    Commits per chunk of entries (nothing with ``dry_run``, which only counts).
    Raises FileNotFoundError when there is no journal at ERASURE_JOURNAL_PATH.
    Writes no journal lines itself: the entries are already there.
    """
    read = erasure_journal.read(since)
    report = ReapplyReport(
        since=since,
        dry_run=dry_run,
        entries=len(read.entries),
        unreadable_lines=read.unreadable_lines,
    )
    for start in range(0, len(read.entries), CHUNK):
        erased = _reapply_chunk(actor, read.entries[start : start + CHUNK], report)
        if dry_run:
            db.session.rollback()
            continue
        db.session.commit()
        # As after an erasure: the webhook deliveries of the tombstones go to the broker.
        for contact_id in erased:
            decisions_changed.send(signal_sender(), contact_id=contact_id, kind="erased")
    return report


def _reapply_chunk(actor: Actor, entries: list[JournalEntry], report: ReapplyReport) -> list[int]:
    """Apply ``entries`` in the session (no commit); returns the ids erased."""
    created = dict(
        db.session.execute(
            sa.select(Contact.id, Contact.created_at).where(
                id_in(Contact.id, [e.contact_id for e in entries])
            )
        ).all()
    )
    erasure_hashes = [
        e.address_hash for e in entries if e.kind == erasure_journal.ERASURE and e.address_hash
    ]
    suppressed = set(suppressed_hashes(erasure_hashes))
    # When each address last lifted its own suppression: only the person's own
    # confirmation does (consent.subscriptions), and the database knows it.
    lifted_at: dict[str, datetime] = {
        digest: at
        for digest, at in db.session.execute(
            sa.select(Contact.address_hash, sa.func.max(ConsentEvent.recorded_at))
            .join(ConsentEvent, ConsentEvent.contact_id == Contact.id)
            .where(
                Contact.address_hash.in_(erasure_hashes),
                ConsentEvent.kind == EventKind.UNSUPPRESSED,
            )
            .group_by(Contact.address_hash)
        )
        if digest is not None
    }
    restore: dict[str, datetime] = {}
    to_erase: list[int] = []
    to_purge: dict[str | None, list[int]] = defaultdict(list)
    for entry in entries:
        digest = entry.address_hash
        if entry.kind == erasure_journal.ERASURE and digest and digest not in suppressed:
            if digest in lifted_at and lifted_at[digest] > entry.at:
                report.kept_returned_address += 1
            else:
                restore[digest] = entry.at
                suppressed.add(digest)
        born = created.pop(entry.contact_id, None)
        if born is None:
            report.already_gone += 1
        elif born > entry.at:
            report.kept_newer_contact += 1
        elif entry.kind == erasure_journal.ERASURE:
            to_erase.append(entry.contact_id)
        else:
            to_purge[entry.rule].append(entry.contact_id)
    if restore:
        db.session.execute(
            insert_for_dialect(Suppression.__table__)
            .values(
                [
                    {"address_hash": digest, "reason": "erasure", "created_at": at}
                    for digest, at in restore.items()
                ]
            )
            .on_conflict_do_nothing(index_elements=["address_hash"])
        )
        report.suppressions_restored += len(restore)
    for contact_id in to_erase:
        # The requests answered by the erasure are answered again, not left open.
        contact = crm.get_contact(contact_id)
        for kind in privacy_requests.REQUEST_KINDS:
            privacy_requests.record_answer(actor, contact, kind, "erased")
    report.erased += crm.remove_contacts(to_erase, tombstone=CONTACT_ERASED, journal=False)
    for rule, ids in to_purge.items():
        data = {"rule": rule} if rule is not None else {}
        report.purged += crm.remove_contacts(ids, tombstone=CONTACT_PURGED, journal=False, **data)
    if to_erase or to_purge or restore:
        crm.audit(
            actor,
            "erasure_journal.reapply",
            None,
            detail=f"erased={len(to_erase)} purged={sum(map(len, to_purge.values()))} "
            f"suppressions={len(restore)}",
        )
    return to_erase
