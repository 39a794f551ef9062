"""The outbox: every email is a row first, written with the change that caused it."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from kernel.timestamps import UTCDateTime, utcnow


class MailKind(enum.StrEnum):
    # Confirmations, verification links, policy notices: no unsubscribe (R6).
    TRANSACTIONAL = "transactional"
    # Anything commercial: the policy is asked right before it leaves (R6, R10, R11).
    MARKETING = "marketing"


class MailStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"  # claimed by a worker; back to queued on a temporary failure
    SENT = "sent"
    BLOCKED = "blocked"  # the policy said no right before sending
    FAILED = "failed"  # permanent SMTP refusal; never retried


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SENDING = "sending"  # its outbox rows are queued; some may still wait for a worker
    SENT = "sent"  # every outbox row of it is sent, blocked or failed


class Campaign(db.Model):
    """A marketing email on one topic, in Swedish and English.

    The audience is not stored: it is computed when the campaign is sent
    (``mailing.campaigns.send_campaign``), and every recipient is checked
    again by the policy right before their message leaves.
    """

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(16), default="email")
    subject_sv: Mapped[str] = mapped_column(sa.String(200))
    body_sv: Mapped[str] = mapped_column(sa.Text)
    subject_en: Mapped[str] = mapped_column(sa.String(200))
    body_en: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default=CampaignStatus.DRAFT.value)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_by: Mapped[str | None] = mapped_column(sa.String(200))
    # When the audience was last expanded, and how many outbox rows that made in all.
    send_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    queued_count: Mapped[int] = mapped_column(default=0)
    # The segment that narrows the topic's audience (mailing.segments), while
    # the campaign is a draft. The first send copies the segment's name and
    # filter into ``segment_name`` and ``segment_args``, and from then on the
    # copy is what narrows it: a later send, an edited or deleted segment can
    # never widen or change what the campaign went to, and its record stays whole.
    # A plain number (migration 0031 says why); ``mailing.segments.delete_segment``
    # refuses while a draft targets the segment and clears it on sent campaigns.
    segment_id: Mapped[int | None] = mapped_column(index=True)
    segment_name: Mapped[str | None] = mapped_column(sa.String(100))
    segment_args: Mapped[dict[str, str] | None] = mapped_column(sa.JSON)

    @property
    def is_narrowed(self) -> bool:
        """Whether a segment narrows the audience (live while a draft, its copy once sent)."""
        return self.segment_id is not None or self.segment_args is not None


class Segment(db.Model):
    """A saved contact filter (``consent.contact_filters``) a campaign can target.

    ``filter_args`` is the filter as ``filter_args`` writes it (strings only),
    read back with ``parse_filter``, so a segment means what the contact list
    with the same filter shows. Members are found when asked, never stored.
    """

    __tablename__ = "segment"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    filter_args: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(sa.String(200))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(db.Model):
    """One email to send, written in the same transaction as its cause.

    ``idempotency_key`` makes queuing the same message twice a no-op; the
    deterministic ``message_id`` lets a receiving server discard a duplicate.
    Rows go with their contact (erasure, retention) through the cascade.
    """

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    contact_id: Mapped[int] = mapped_column(
        sa.ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    template: Mapped[str] = mapped_column(sa.String(64))
    language: Mapped[str] = mapped_column(sa.String(8))
    # The marketing topic, for the policy check and the unsubscribe link.
    topic: Mapped[str | None] = mapped_column(sa.String(64))
    # The campaign this row is one recipient of; with ``idempotency_key``
    # "campaign:<id>:contact:<id>" a campaign reaches a contact at most once.
    # A campaign with messages cannot be deleted (its report would lose them).
    campaign_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("campaign.id", ondelete="RESTRICT"), index=True
    )
    # Ids and small values the template needs; never the address.
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), default=MailStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    block_reason: Mapped[str | None] = mapped_column(sa.String(32))
    # Found again in returned mail's original headers (mailing.bounces).
    message_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the job was handed to the broker; NULL means the sweeper must do it.
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Indexed for the health check's "was anything sent lately" (mailing.health).
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    __table_args__ = (sa.Index("ix_outbox_message_status_created_at", "status", "created_at"),)

    @property
    def is_marketing(self) -> bool:
        return self.kind == MailKind.MARKETING


class BounceMailbox(db.Model):
    """How far the mailbox poller read one returned-mail folder, and who reads it now.

    ``last_uid``: the highest IMAP UID processed (recorded, moved aside or
    left for a person), valid while the folder's ``uidvalidity`` stays the
    same (RFC 3501 2.3.1.1); the next poll searches ``UID last+1:*`` only.
    ``holder``/``locked_until``: the lease of the worker polling it now, so
    two workers never read the same folder at once; a lease that ran out
    (a worker that died) is taken over.
    """

    __tablename__ = "bounce_mailbox"

    # user@host:port/folder
    mailbox: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_uid: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    holder: Mapped[str | None] = mapped_column(sa.String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
