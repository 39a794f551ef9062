"""The consent ledger, its projection, and the suppression list."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.changes import TYPES as CHANGE_TYPES
from extensions import db
from kernel.i18n import N_
from kernel.timestamps import UTCDateTime, utcnow

ALL = "*"  # topic or channel meaning "every topic" / "every channel"

# How staff received an objection they record on the person's behalf.
OBJECTION_CHANNELS = ("phone", "letter", "email", "meeting", "web", "other")

# The labels pages show for these codes (the code itself), declared for extraction.
OBJECTION_CHANNEL_LABELS = (
    N_("phone"),
    N_("letter"),
    N_("email"),
    N_("meeting"),
    N_("web"),
    N_("other"),
)


class EventKind(enum.StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    WITHDRAWN = "withdrawn"
    UNSUBSCRIBED = "unsubscribed"
    OBJECTED = "objected"
    OBJECTION_LIFTED = "objection_lifted"
    BASIS_GRANTED = "basis_granted"
    BASIS_ENDED = "basis_ended"
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    RESTRICTED = "restricted"
    UNRESTRICTED = "unrestricted"
    UNDELIVERABLE = "undeliverable"
    # A soft bounce (4.x.x): documents it; ``undeliverable`` follows when enough
    # came within the policy's window (consent.deliverability).
    BOUNCED = "bounced"
    # The address works again: its owner confirmed a link mailed to it, or
    # staff fixed it. Clears ``undeliverable`` and restarts the soft count.
    DELIVERABLE = "deliverable"
    CREATED_WHILE_SUPPRESSED = "created_while_suppressed"


# The labels pages show for these codes ("event." ~ code), declared for extraction.
EVENT_LABELS = (
    N_("event.requested"),
    N_("event.confirmed"),
    N_("event.withdrawn"),
    N_("event.unsubscribed"),
    N_("event.objected"),
    N_("event.objection_lifted"),
    N_("event.basis_granted"),
    N_("event.basis_ended"),
    N_("event.suppressed"),
    N_("event.unsuppressed"),
    N_("event.restricted"),
    N_("event.unrestricted"),
    N_("event.undeliverable"),
    N_("event.bounced"),
    N_("event.deliverable"),
    N_("event.created_while_suppressed"),
)


class Basis(enum.StrEnum):
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"


# The labels pages show for these codes (the code itself), declared for extraction.
BASIS_LABELS = (
    N_("consent"),
    N_("legitimate_interest"),
)


class InterestKind(enum.StrEnum):
    """Why legitimate interest applies (R1, R3)."""

    CUSTOMER = "customer"
    INDUSTRY_LIST = "industry_list"


class ConsentEvent(db.Model):
    """One entry of the append-only ledger (R5, R9): never updated.

    Rows go only with their contact (erasure, retention), never one by one.
    """

    __tablename__ = "consent_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        sa.ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(32))
    topic: Mapped[str] = mapped_column(sa.String(64), default=ALL)
    channel: Mapped[str] = mapped_column(sa.String(16), default=ALL)
    basis: Mapped[str | None] = mapped_column(sa.String(32))
    interest_kind: Mapped[str | None] = mapped_column(sa.String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Where it came from: form, import, api, staff, email_link, one_click, cli, system.
    source: Mapped[str] = mapped_column(sa.String(32))
    source_ref: Mapped[str | None] = mapped_column(sa.String(200))
    recorded_by: Mapped[str] = mapped_column(sa.String(200))
    # How staff received it on the person's behalf: phone, letter, email, meeting.
    received_via: Mapped[str | None] = mapped_column(sa.String(32))
    # Evidence (R5, R23).
    ip_address: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(400))
    policy_version: Mapped[str | None] = mapped_column(sa.String(40))
    wording_hash: Mapped[str | None] = mapped_column(sa.String(64))
    form_id: Mapped[str | None] = mapped_column(sa.String(100))
    page_url: Mapped[str | None] = mapped_column(sa.String(500))
    language: Mapped[str | None] = mapped_column(sa.String(8))
    note: Mapped[str | None] = mapped_column(sa.String(1000))
    # The email whose link the person used (an unsubscribe or preferences link
    # carries its outbox row's id), and that email's campaign: which campaign
    # caused an unsubscribe or objection (mailing.campaign_report). Plain
    # numbers, not keys, as in ``BounceReport``: the message and the campaign
    # belong to mailing, above this package; the campaign row is never deleted
    # once it has messages, and the event keeps the number when the outbox row
    # goes (retention of sent mail).
    outbox_id: Mapped[int | None] = mapped_column()
    campaign_id: Mapped[int | None] = mapped_column()

    __table_args__ = (
        # Only the few events a campaign's links caused are in it; the report
        # counts them per campaign and kind.
        sa.Index(
            "ix_consent_event_campaign_kind",
            "campaign_id",
            "kind",
            postgresql_where=sa.text("campaign_id IS NOT NULL"),
            sqlite_where=sa.text("campaign_id IS NOT NULL"),
        ),
        # The contact list's filters by source and by import batch
        # (consent.contact_filters): the contacts a source or a batch wrote
        # events for, found from the value rather than by reading every
        # contact's ledger (migration 0030).
        sa.Index("ix_consent_event_source_contact", "source", "contact_id"),
        sa.Index("ix_consent_event_source_ref_contact", "source_ref", "contact_id"),
    )

    def as_json(self) -> dict[str, Any]:
        """What ``ConsentEventSchema`` dumps, built directly: marshmallow was a
        tenth of an objection's time over HTTP (a test holds the two equal)."""
        return {
            column.key: value.isoformat() if isinstance(value, datetime) else value
            for column in _EVENT_COLUMNS
            for value in (getattr(self, column.key),)
        }


_EVENT_COLUMNS = tuple(ConsentEvent.__table__.columns)


@sa.event.listens_for(ConsentEvent, "before_update")
def _refuse_ledger_edits(mapper: object, connection: object, target: ConsentEvent) -> None:
    raise RuntimeError("The consent ledger is append-only; record a new event instead.")


def _rule_index(name: str, column: str, *, sqlite_only: bool = False) -> sa.Index:
    """A projection row index of one rule (below). ``sqlite_only``: no plan on
    PostgreSQL reads it, so it is not kept up to date there (migration 0044);
    PostgreSQL reads the others elsewhere (the consent and industry-list ones
    in the contact list and the bulk actions, the objection one in retention's
    rules counting from an objection)."""
    where = sa.text(f"{column} IS NOT NULL")
    index = sa.Index(
        f"ix_permission_state_{name}",
        "topic",
        "contact_id",
        "channel",
        column,
        postgresql_where=where,
        sqlite_where=where,
    )
    return index.ddl_if(dialect="sqlite") if sqlite_only else index


class PermissionState(db.Model):
    """The ledger folded per contact, topic and channel, so a decision is one read.

    Written only by ``consent.ledger.record`` in the same transaction as the
    event it folds in. ``topic == "*"`` rows hold what applies to every topic:
    unsubscribe from all, objection, legitimate-interest bases.
    """

    __tablename__ = "permission_state"

    contact_id: Mapped[int] = mapped_column(
        sa.ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True
    )
    topic: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consent_event_id: Mapped[int | None] = mapped_column()
    unsubscribed_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    objected_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    objection_event_id: Mapped[int | None] = mapped_column()
    customer_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    industry_list_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # One per ground: the grant each ground's date comes from, so that the
    # decision names the list's import when the customer ground has gone.
    customer_event_id: Mapped[int | None] = mapped_column()
    industry_list_event_id: Mapped[int | None] = mapped_column()

    # One partial index per rule of the decision (migration 0040): the rows of
    # one topic and channel that hold a consent, an unsubscribe, an objection
    # or a ground, in contact order, with the date (so that the index alone
    # answers). The audience's merged shape on SQLite
    # (``consent.audience.audience_merged``) walks one of them per rule and
    # merges the contact ids in order, as SQLite has no hash join.
    __table_args__ = (
        _rule_index("consent", "consent_since"),
        _rule_index("unsubscribed", "unsubscribed_since", sqlite_only=True),
        _rule_index("objected", "objected_since"),
        _rule_index("customer", "customer_since", sqlite_only=True),
        _rule_index("industry_list", "industry_list_since"),
    )


class Suppression(db.Model):
    """A keyed hash of an address that must never be marketed to again (R22).

    Outlives erasure and retention: it holds no address, only
    HMAC-SHA256(SUPPRESSION_KEY, normalised address).
    """

    __tablename__ = "suppression"

    address_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScopedSuppression(db.Model):
    """A "do not contact" entry narrower than the suppression list: the keyed hash
    of an address that refused one topic (an unsubscribe or a withdrawal) or
    one channel (an objection to phone marketing, say). The refusal of all
    marketing is a ``Suppression``.

    Like the suppression list it outlives erasure and retention purges (R22)
    and holds no address, only HMAC-SHA256(SUPPRESSION_KEY, normalised
    address); ``consent.refusals`` restates it in the ledger of a contact that
    appears at the address again, so the person's "no" holds on every way in.
    Kept for as long as the policy file's ``[do_not_contact]`` says.
    """

    __tablename__ = "scoped_suppression"

    address_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # The topic refused, or "*" for every topic (a channel's objection).
    topic: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # The channel refused, or "*" for every channel.
    channel: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    # The ledger event kind of the refusal: unsubscribed, withdrawn or objected.
    kind: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class BounceReport(db.Model):
    """One bounce or complaint that came back for a message this service sent:
    the evidence behind the ledger event it caused (``event_id``).

    Rows go with their contact. ``outbox_id`` and ``campaign_id`` are plain
    numbers, not keys: the message and campaign they name belong to mailing,
    above this package, and the report outlives neither the contact nor
    needs them to stay.
    """

    __tablename__ = "bounce_report"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contact.id", ondelete="CASCADE"))
    # hard, soft or complaint
    type: Mapped[str] = mapped_column(sa.String(16))
    # Where it came in: dsn, arf, bounce (a non-standard bounce), smtp, api, ses, ...
    source: Mapped[str] = mapped_column(sa.String(32))
    # The enhanced status code (RFC 3463), e.g. 5.1.1, when the report gave one.
    status: Mapped[str | None] = mapped_column(sa.String(16))
    diagnostic: Mapped[str | None] = mapped_column(sa.String(500))
    # The Message-ID of the returned message.
    message_id: Mapped[str | None] = mapped_column(sa.String(255))
    outbox_id: Mapped[int | None] = mapped_column()
    campaign_id: Mapped[int | None] = mapped_column(index=True)
    # marketing or transactional: the kind of the message that came back.
    mail_kind: Mapped[str | None] = mapped_column(sa.String(16))
    # How it was tied to our message: verp, message_id or recent_mail.
    matched_by: Mapped[str | None] = mapped_column(sa.String(16))
    # What a repeat of this report is known by, whatever tied it to our mail:
    # the returned Message-ID, else the report's own Message-ID.
    report_key: Mapped[str | None] = mapped_column(sa.String(255))
    event_id: Mapped[int | None] = mapped_column()
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.Index("ix_bounce_report_contact_type_occurred", "contact_id", "type", "occurred_at"),
        sa.Index("ix_bounce_report_contact_type_key", "contact_id", "type", "report_key"),
    )


class ImportBatch(db.Model):
    """One run of a CSV import: who, what file, on which basis, and its report.

    Ledger events it caused carry ``source="import"`` and
    ``source_ref="import-batch:<id>"``, so the evidence points back here.
    """

    __tablename__ = "import_batch"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(sa.String(200))
    # The legitimate-interest kind the rows are registered with (InterestKind).
    interest_kind: Mapped[str] = mapped_column(sa.String(32))
    # Where the list came from, as the importer named it (e.g. "Branschregistret 2026").
    source: Mapped[str] = mapped_column(sa.String(200))
    filename: Mapped[str | None] = mapped_column(sa.String(200))
    file_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    # How the columns were read: a CRM preset ("hubspot"), "mapping" for the
    # importer's own, None for the recognised header names (docs/imports.md).
    columns_read_as: Mapped[str | None] = mapped_column(sa.String(32))
    # queued (uploaded, waiting for a worker), running, done, failed
    status: Mapped[str] = mapped_column(sa.String(16), default="running")
    error: Mapped[str | None] = mapped_column(sa.String(500))
    rows: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    skipped_suppressed: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    # The importer's own mapping (header to field), which the worker reads the
    # file with; header names only, no personal data.
    mapping: Mapped[str | None] = mapped_column(sa.Text)
    # What the upload's header told the request, for the report the worker ends.
    ignored_columns: Mapped[list[str] | None] = mapped_column(sa.JSON)
    suggested_preset: Mapped[str | None] = mapped_column(sa.String(32))
    # Non-blank lines after the header, counted at upload: the progress bar's
    # end while the worker runs (blank lines are no rows; ``rows`` when done).
    rows_total: Mapped[int | None] = mapped_column()
    # The lease of the worker running it: set at its claim and at each chunk
    # committed, and when the sweeper hands a queued batch over again. A second
    # delivery of the job leaves a running batch alone until it has run out
    # (consent.imports.batches.LEASE).
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BulkAction(db.Model):
    """One change to every contact of a filtered list (``consent.bulk_actions``):
    what, to whom (the filter, as ``consent.contact_filters.filter_args``), who
    asked, and how far the worker got. Each contact's change is audited on its
    own, as the single-contact action is; this row is the run's progress."""

    __tablename__ = "bulk_action"

    id: Mapped[int] = mapped_column(primary_key=True)
    # end_industry_list, set_legal_hold, lift_legal_hold (consent.bulk_actions.ACTIONS)
    action: Mapped[str] = mapped_column(sa.String(32))
    filter: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    # The moment the filter was read at, so that the worker changes the set the
    # confirmation counted, not one that time has moved.
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    actor: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # queued, running, done, failed
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    # Contacts the confirmation page counted, contacts walked, contacts changed.
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    changed: Mapped[int] = mapped_column(default=0)
    # The last contact id walked: a run cut off resumes after it.
    after_id: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.String(500))
    # The lease of the worker running it: set at its claim and at each chunk;
    # a second delivery of the job leaves a run alone until it has run out
    # (consent.bulk_actions.LEASE).
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ImportUploadChunk(db.Model):
    """One piece (``UPLOAD_CHUNK_BYTES``) of an uploaded CSV file waiting for the worker.

    Kept in the database rather than on a disk so that a worker on another
    host reads what the web process received; deleted once its batch has run,
    so no copy of the file (personal data) outlives the import.
    """

    __tablename__ = "import_upload_chunk"

    batch_id: Mapped[int] = mapped_column(
        sa.ForeignKey("import_batch.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(sa.LargeBinary)


class ImportRejection(db.Model):
    """A row an import refused, by its spreadsheet row number (the header is row 1).

    Holds the reason only, never the row's content, so it keeps no personal data.
    """

    __tablename__ = "import_rejection"

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(
        sa.ForeignKey("import_batch.id", ondelete="CASCADE"), index=True
    )
    row: Mapped[int] = mapped_column()
    reason: Mapped[str] = mapped_column(sa.String(300))


class PolicyVersion(db.Model):
    """A published privacy-policy version (R23), e.g. "1.3" of April 2020.

    Never edited once published; a change is a new version.
    """

    __tablename__ = "policy_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(sa.String(40), unique=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    published_by: Mapped[str] = mapped_column(sa.String(200))
    # A major change is announced to every registered address (R24).
    is_major: Mapped[bool] = mapped_column(default=False)
    url: Mapped[str | None] = mapped_column(sa.String(500))
    text: Mapped[str | None] = mapped_column(sa.Text)
    summary: Mapped[str | None] = mapped_column(sa.String(1000))

    wordings: Mapped[list[PolicyWording]] = relationship(
        order_by="(PolicyWording.key, PolicyWording.language)",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class PolicyWording(db.Model):
    """The exact consent wording shown under a policy version, with its SHA-256.

    A consent event's ``wording_hash`` names one of these (R23).
    """

    __tablename__ = "policy_wording"
    __table_args__ = (sa.UniqueConstraint("policy_version_id", "key", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("policy_version.id", ondelete="CASCADE"), index=True
    )
    # What the wording is for, e.g. "signup" or "newsletter".
    key: Mapped[str] = mapped_column(sa.String(64))
    language: Mapped[str] = mapped_column(sa.String(8))
    text: Mapped[str] = mapped_column(sa.Text)
    sha256: Mapped[str] = mapped_column(sa.String(64), index=True)


# What a webhook endpoint may subscribe to: the item types of the change feed
# (crm.changes; docs/webhooks.md). An endpoint that chose none gets them all.
WEBHOOK_EVENT_TYPES = CHANGE_TYPES

# A delivery's states: pending (owed, maybe retrying or waiting for an earlier
# delivery about the same contact), delivered (2xx), failed (for good: refused,
# or retried until WEBHOOK_RETRY_HOURS ran out), cancelled (the endpoint was
# deactivated, by an admin or by a 410 Gone, before it was posted).
DELIVERY_STATUSES = ("pending", "delivered", "failed", "cancelled")

# The labels pages show for these codes ("delivery." ~ code), declared for extraction.
DELIVERY_LABELS = (
    N_("delivery.pending"),
    N_("delivery.delivered"),
    N_("delivery.failed"),
    N_("delivery.cancelled"),
)


class WebhookEndpoint(db.Model):
    """A URL told about the changes a CRM mirrors (the change feed's items)."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str | None] = mapped_column(sa.String(200))
    # Standard Webhooks signing secret ("whsec_" + base64 of the key); shown once.
    secret: Mapped[str] = mapped_column(sa.String(100))
    # The event types chosen, comma-separated; NULL: every type, also types
    # added later.
    event_types: Mapped[str | None] = mapped_column(sa.String(300))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why posting stopped: an admin's deactivation, or the receiver's 410 Gone.
    deactivation_reason: Mapped[str | None] = mapped_column(sa.String(200))

    @property
    def events(self) -> list[str]:
        """The event types this endpoint is posted (all of them when none were chosen)."""
        if not self.event_types:
            return list(WEBHOOK_EVENT_TYPES)
        return self.event_types.split(",")

    @property
    def all_events(self) -> bool:
        """Subscribed to every event type, also types added later."""
        return not self.event_types


class WebhookDelivery(db.Model):
    """One change feed item owed to one endpoint, written in the transaction of
    the change (or by a replay).

    It names the change and the contact by id without a foreign key to the
    contact: a tombstone's delivery (contact.erased, contact.purged) must
    outlive the contact's rows. The change's row goes when the feed is pruned
    (CHANGE_FEED_KEEP_DAYS), and its deliveries' log with it. Rows from before
    the Standard Webhooks format have no change (``change_id`` NULL,
    ``event_type`` "decisions.changed") and cannot be replayed.
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        # The order per receiver and contact: is an earlier one still pending?
        sa.Index("ix_webhook_delivery_queue", "endpoint_id", "contact_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True
    )
    change_id: Mapped[int | None] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("change.id", ondelete="CASCADE"),
        index=True,
    )
    event_type: Mapped[str] = mapped_column(sa.String(40))
    contact_id: Mapped[int | None] = mapped_column()
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    handed_over_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the next try is due after a failed one (NULL when none is planned).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The delivery this one re-sends (an admin's replay), if any.
    replay_of: Mapped[int | None] = mapped_column()

    @property
    def webhook_id(self) -> str | None:
        """The ``webhook-id`` it is posted with: the change feed item's id."""
        return None if self.change_id is None else f"chg_{self.change_id}"


class SubscriptionRequest(db.Model):
    """A double opt-in sent to an address and waiting for the person's confirmation (R7).

    The confirmation link carries only this row's id. While the request is
    open, ``open_for_contact`` holds the contact id: the unique constraint lets
    one contact hold one open request however many forms post at the same
    moment; a second signup merges its topics into the open one.
    """

    __tablename__ = "subscription_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        sa.ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    open_for_contact: Mapped[int | None] = mapped_column(unique=True)
    # Topic keys, comma-separated, in the order they were asked for.
    topics: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Confirmation emails queued for this request, and when the last one was.
    emails_queued: Mapped[int] = mapped_column(default=0)
    last_email_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def topic_keys(self) -> list[str]:
        return [t for t in self.topics.split(",") if t]

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None


class PrivacyRequest(db.Model):
    """A person's rights request (R20, R21): a copy of their data, erasure,
    rectification or restriction, and how and when it was answered.

    From the public form, only requests for known addresses are stored (the
    public answer is the same either way) and nothing is done until the
    address proves itself through the emailed link. Staff record the requests
    they receive themselves (phone, letter) when they act on them.

    The row outlives the contact without personal data: on erasure or a purge
    ``contact_id`` becomes null (``ON DELETE SET NULL``) and the keyed hash of
    the address, the dates, the kind, what was done and by whom remain, the
    proof that the one-month deadline was met (GDPR art. 5(2), 12(3)).
    """

    __tablename__ = "privacy_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("contact.id", ondelete="SET NULL"), index=True
    )
    # kernel.addresses.keyed_hash of the address the request came from.
    address_hash: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # access, erasure, rectification, restriction
    # pending_verification -> awaiting_admin (open) -> completed | refused
    status: Mapped[str] = mapped_column(sa.String(24), default="pending_verification")
    # How it reached us: web (the public form, verified by its link) or how staff got it.
    received_via: Mapped[str] = mapped_column(
        sa.String(16), default="web", server_default=sa.text("'web'")
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # GDPR art. 12(3): answered within one month of the verified request ...
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # ... or, where necessary, two further months, with the reason recorded.
    extended_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_reason: Mapped[str | None] = mapped_column(sa.String(500))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # erased, exported, restricted, rectified, refused
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    # Why it was refused, or which fields were rectified (names, never values).
    outcome_note: Mapped[str | None] = mapped_column(sa.String(500))
    # The actor label of whoever answered it (a staff member, the service).
    handled_by: Mapped[str | None] = mapped_column(sa.String(200))

    @property
    def deadline(self) -> datetime | None:
        return self.extended_until or self.due_at

    @property
    def is_open(self) -> bool:
        return self.completed_at is None
