"""The connectors' own tables: each connector's state, the records it mirrors
(so that a second sync changes nothing), and the deletions it still owes a CRM."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from kernel.timestamps import UTCDateTime, utcnow


class ConnectorState(db.Model):
    """One row per connector: where each of its reads stands and how it went.

    ``cursors`` holds one opaque position per read (the CRM's paging token per
    object, the change feed's cursor); a cursor is saved only in the
    transaction that wrote the items before it, so a sync that stops halfway
    resumes where it stopped and loses nothing."""

    __tablename__ = "connector_state"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    cursors: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    items_in: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    items_out: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    errors: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    # Set when the CRM refused the credentials (a revoked token): the connector
    # does nothing until an admin resumes it, rather than retrying forever.
    stopped_because: Mapped[str | None] = mapped_column(sa.String(500))
    # The records skipped by the last runs, with the reason, newest last (at
    # most ``sync.REPORT_KEEP``): what an admin fixes in the CRM.
    report: Mapped[list] = mapped_column(sa.JSON, default=list)
    # A run holds the connector until then, so that two workers never sync it at once.
    running_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConnectorRecord(db.Model):
    """A CRM record this connector mirrored: a contact, an activity, a
    subscription status written. ``fingerprint`` is what the record held when
    last applied, so that an unchanged record is passed over."""

    __tablename__ = "connector_record"

    connector: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    object_type: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    remote_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    # Ours; no foreign key: the record must outlive the contact until the
    # CRM's copy is deleted.
    contact_id: Mapped[int | None] = mapped_column(sa.Integer, index=True)
    # Ours, for an activity: a retention rule's purge names the contact and a
    # count, and the activities whose rows are gone are the ones to delete.
    activity_id: Mapped[int | None] = mapped_column(sa.Integer)
    # A hash for records read; for the subscription-status record the JSON
    # map of what was last written per topic, as long as the mapping makes it.
    fingerprint: Mapped[str] = mapped_column(sa.Text, default="")
    # For a contact: this connector's sync created the contact here, so its
    # history is the CRM's and the CRM's interactions date its retention clock
    # at their own dates, also before its creation here (docs/retention.md,
    # "History from a CRM"). False for a contact that was here first.
    created_contact: Mapped[bool] = mapped_column(
        sa.Boolean, default=False, server_default=sa.false()
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConnectorDeletion(db.Model):
    """A deletion a CRM owes us after an erasure or a purge (GDPR art. 17,
    the retention promise): retried until done, shown until done."""

    __tablename__ = "connector_deletion"
    __table_args__ = (
        sa.UniqueConstraint("connector", "object_type", "remote_id", name="uq_connector_deletion"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(sa.String(32), index=True)
    object_type: Mapped[str] = mapped_column(sa.String(64))
    remote_id: Mapped[str] = mapped_column(sa.String(200))
    # The change feed item that asked for it: contact.erased, contact.purged, activities.purged.
    reason: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How it was (or is being) carried out: ``delete`` or ``anonymise``, the
    # connector's ``<NAME>_ERASURE`` at the last attempt (None before the first).
    erasure: Mapped[str | None] = mapped_column(sa.String(16))
