"""Companies, contacts, activities, the audit log and the retention run's records."""

from __future__ import annotations

import enum
import re
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from extensions import db
from kernel.addresses import keyed_hash
from kernel.i18n import N_
from kernel.timestamps import UTCDateTime, utcnow

# When an activity may have occurred (the API, the staff page and the service
# check the same bounds). Before 1970 no interaction is real: such a date is a
# typo or an attempt to make retention count from long ago. A day ahead is
# allowed for clocks and zones: the staff page takes the time typed as UTC.
EARLIEST_ACTIVITY = datetime(1970, 1, 1, tzinfo=UTC)
ACTIVITY_AHEAD = timedelta(days=1)
# A contact at a sub-address (anna+x@): the predicate of the partial index
# ix_contact_sub_address, and the condition that reads it, word for word
# (a database uses a partial index only for a query naming its predicate).
SUB_ADDRESS = sa.text("email LIKE '%+%'")
RESTRICTED = sa.text("restricted_at IS NOT NULL")
HARD_BOUNCED = sa.text("hard_bounced_at IS NOT NULL")


def activity_time_problem(moment: datetime, now: datetime) -> str | None:
    """Why ``moment`` (timezone-aware) cannot be when an activity occurred, or None."""
    if moment < EARLIEST_ACTIVITY:
        return f"An activity cannot have occurred before {EARLIEST_ACTIVITY:%Y-%m-%d}."
    if moment > now + ACTIVITY_AHEAD:
        return "An activity cannot have occurred in the future (more than a day from now)."
    return None


# General support information (R15) is kept as short identifiers that staff
# choose from the company's own lists (a product, a problem category, a
# resolution): lower-case letters, digits, ".", "_" and "-", not only digits.
# The format keeps out sentences and names with spaces (no space), email
# addresses (no "@") and numbers such as "+46..." or "0701234567"; it cannot
# tell a code from a name or number written like one ("anna.svensson",
# "070-123456"): that the values are codes from the lists is the staff's
# part. The anonymisation keeps only these three fields; notes, authors and
# free text never survive it.
SUPPORT_CODE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SUPPORT_FIELDS = ("product", "problem_category", "resolution_code")


def support_code_problem(value: str) -> str | None:
    """Why ``value`` cannot be a support code, or None."""
    if SUPPORT_CODE.fullmatch(value) is None or value.isdigit():
        return (
            "Use a code from your own list: 1-64 lower-case letters, digits, '.', '_' or '-' "
            "(not only digits), e.g. 'ab7000' or 'connection-lost'; never names or free text."
        )
    return None


class ActivityKind(enum.StrEnum):
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    VISIT = "visit"
    ORDER = "order"
    SUPPORT_CASE = "support_case"
    FORM_SUBMISSION = "form_submission"
    EVENT_ATTENDANCE = "event_attendance"
    # Outbound marketing: logged for the record but never an interaction, or
    # marketing would keep a contact's data alive forever (R13, R14).
    MARKETING_EMAIL = "marketing_email"

    @property
    def is_interaction(self) -> bool:
        """Whether the contact took part, so that it moves ``last_interaction_at``."""
        return self is not ActivityKind.MARKETING_EMAIL


# The labels pages show for these codes ("activity." ~ code), declared for extraction.
ACTIVITY_LABELS = (
    N_("activity.call"),
    N_("activity.email"),
    N_("activity.meeting"),
    N_("activity.visit"),
    N_("activity.order"),
    N_("activity.support_case"),
    N_("activity.form_submission"),
    N_("activity.event_attendance"),
    N_("activity.marketing_email"),
)


class Company(db.Model):
    __tablename__ = "company"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    org_number: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
    country: Mapped[str | None] = mapped_column(sa.String(2))
    customer_since: Mapped[date | None] = mapped_column(sa.Date)
    relationship_ended_at: Mapped[date | None] = mapped_column(sa.Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(back_populates="company")

    # Staff search by the start of the company name (crm.services.search_contacts).
    # text_pattern_ops lets PostgreSQL use the index for LIKE 'prefix%' whatever
    # the database's collation; SQLite compares bytes and needs no option.
    __table_args__ = (
        sa.Index(
            "ix_company_name_search",
            sa.func.lower(name).label("name_lower"),
            postgresql_ops={"name_lower": "text_pattern_ops"},
        ),
    )

    @property
    def is_customer(self) -> bool:
        return self.customer_since is not None and self.relationship_ended_at is None


class Contact(db.Model):
    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Normalised and lower-cased (kernel.addresses.normalise_email); the only form stored.
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    # kernel.addresses.keyed_hash(email), kept in step by ``_hash_email`` below so
    # that set-based queries (campaign audiences) can join the suppression list.
    address_hash: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(40))
    company_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("company.id", ondelete="SET NULL"), index=True
    )
    country: Mapped[str | None] = mapped_column(sa.String(2))
    language: Mapped[str] = mapped_column(sa.String(8), default="en")
    last_interaction_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # GDPR art. 18: while set, no marketing and no edits.
    restricted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A legal obligation to keep the data: erasure and retention skip the contact.
    legal_hold_reason: Mapped[str | None] = mapped_column(sa.String(500))
    hard_bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # GDPR art. 14: the data came from someone else (an industry list, or the
    # employer of a customer contact), so the person must be told who we are and
    # where we got it: within a month (art. 14(3)(a), mailing.art14_notices) or
    # with the first email if that is earlier. Set when such a contact is
    # created; cleared by crm.services.note_art14_notice_given once a notice
    # has gone, which sets ``art14_notice_given_at`` (shown on the staff page).
    art14_notice_owed_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    art14_notice_given_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # Ids are never reused after a deletion (SQLite would), so nothing can
    # attach an erased contact's history to a new person.
    # Staff search by the start of the address or of the name
    # (crm.services.search_contacts); see Company for text_pattern_ops.
    __table_args__ = (
        sa.Index("ix_contact_email_search", email, postgresql_ops={"email": "text_pattern_ops"}),
        sa.Index(
            "ix_contact_name_search",
            sa.func.lower(name).label("name_lower"),
            postgresql_ops={"name_lower": "text_pattern_ops"},
        ),
        # The changed-since read (GET /api/v1/contacts?updated_after=) walks
        # this index in keyset order: (updated_at, id) > (cursor).
        sa.Index("ix_contact_updated_at_id", "updated_at", "id"),
        # The contact list (/staff/contacts, consent.contact_filters) pages by id:
        # an equality filter then walks (value, id) in keyset order; the created
        # range reads its index and sorts only what matched (migration 0030).
        sa.Index("ix_contact_country_id", "country", "id"),
        sa.Index("ix_contact_language_id", "language", "id"),
        sa.Index("ix_contact_created_at_id", "created_at", "id"),
        # The few contacts at a sub-address (anna+x@): the audience and the
        # decision filters look them up on every query (migration 0035).
        sa.Index(
            "ix_contact_sub_address",
            "id",
            postgresql_where=SUB_ADDRESS,
            sqlite_where=SUB_ADDRESS,
        ),
        # The few restricted and bounced contacts, in id order: two blocks of
        # the audience's merged shape on SQLite (migration 0040). The restricted
        # one on SQLite only (migration 0044: no plan on PostgreSQL reads it);
        # PostgreSQL reads the bounced one for the contact list's "bounced" filter.
        sa.Index("ix_contact_restricted", "id", sqlite_where=RESTRICTED).ddl_if(dialect="sqlite"),
        sa.Index(
            "ix_contact_hard_bounced",
            "id",
            postgresql_where=HARD_BOUNCED,
            sqlite_where=HARD_BOUNCED,
        ),
        {"sqlite_autoincrement": True},
    )

    company: Mapped[Company | None] = relationship(back_populates="contacts")
    activities: Mapped[list[Activity]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def is_restricted(self) -> bool:
        return self.restricted_at is not None

    @validates("email")
    def _hash_email(self, key: str, value: str) -> str:
        self.address_hash = keyed_hash(value)
        return value


# External ids (docs/integration.md, "External ids"): the ids other systems
# (a CRM, a ticket system) give a contact or a company. A system's name is a
# short lower-case slug; a value is what that system shows, 1-200 characters,
# no control characters and no space at either end ("1234 " and "1234" would
# otherwise be two ids of one record). The API schemas declare the same patterns.
EXTERNAL_SYSTEM_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
EXTERNAL_VALUE_PATTERN = r"^[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{0,198}[^\x00-\x20\x7f])?$"
_EXTERNAL_SYSTEM = re.compile(EXTERNAL_SYSTEM_PATTERN)
_EXTERNAL_VALUE = re.compile(EXTERNAL_VALUE_PATTERN)


def external_system_problem(system: str) -> str | None:
    """Why ``system`` cannot name an external system, or None."""
    if not isinstance(system, str) or _EXTERNAL_SYSTEM.fullmatch(system) is None:
        return N_(
            "A system name is 1-32 lower-case letters, digits, '_' or '-', "
            "starting with a letter, e.g. 'hubspot'."
        )
    return None


def external_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be an external id, or None."""
    if not isinstance(value, str) or _EXTERNAL_VALUE.fullmatch(value) is None:
        return (
            "An external id is 1-200 characters, no control characters "
            "and no space at the start or end."
        )
    return None


class ExternalId(db.Model):
    """An id another system gives a contact or a company (``crm.external_ids``).

    One id per (owner, system), and an id names one owner per system. No
    foreign key (the owner is a contact or a company): the rows of a contact
    are deleted with it by ``crm.services.remove_contacts``, so an erased
    person leaves no id behind that links back to them.
    """

    __tablename__ = "external_id"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_type: Mapped[str] = mapped_column(sa.String(16))  # 'contact' | 'company'
    owner_id: Mapped[int] = mapped_column()
    system: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[str] = mapped_column(sa.String(200))

    __table_args__ = (
        # Finding an owner by (system, value), and an id used once per system.
        sa.UniqueConstraint("owner_type", "system", "value", name="uq_external_id_value"),
        # Reading the ids of many owners at once, and one id per system each.
        sa.UniqueConstraint("owner_type", "owner_id", "system", name="uq_external_id_owner"),
        sa.CheckConstraint("owner_type IN ('contact', 'company')", name="owner_type"),
    )


class Activity(db.Model):
    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        sa.ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    author: Mapped[str] = mapped_column(sa.String(200))
    note: Mapped[str | None] = mapped_column(sa.Text)
    # General support information (R15): codes from the company's own lists,
    # never free text, so that they can outlive the case's anonymisation.
    product: Mapped[str | None] = mapped_column(sa.String(64))
    problem_category: Mapped[str | None] = mapped_column(sa.String(64))
    resolution_code: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # Retention rules select activities by kind in id order, batch after batch.
    __table_args__ = (sa.Index("ix_activity_kind_id", "kind", "id"),)

    contact: Mapped[Contact] = relationship(back_populates="activities")


class AuditEntry(db.Model):
    """Who did what to which contact's data (R25). Holds ids, never the data."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(64))
    # No foreign key: the entry outlives the contact, and an erasure clears
    # the id (crm.services.forget_contact_in_audit) so nothing links back.
    contact_id: Mapped[int | None] = mapped_column(index=True)
    detail: Mapped[str | None] = mapped_column(sa.String(500))


class Change(db.Model):
    """One item of the change feed a CRM mirrors (``crm.changes``, docs/integration.md).

    Holds no personal data: the type, the contact's id, when, and small data
    (the fields' names of an update, a tombstone's external ids, a rule and a
    count). What a contact looks like is rendered when the feed is read, from
    the contact as it is then (``consent.feed``). No foreign key to the
    contact: the item of an erasure or a purge outlives the contact it names.
    """

    __tablename__ = "change"

    # 64-bit on PostgreSQL: a busy feed writes many more items than contacts.
    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
    )
    # PostgreSQL: the writing transaction's id (pg_current_xact_id()). The feed
    # is read in (txid, id) order and serves only transactions older than every
    # one still running, so that an item whose transaction commits late is
    # never skipped by a reader that already passed its id. SQLite serialises
    # writers, so commit order is id order there and txid stays 0.
    txid: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    type: Mapped[str] = mapped_column(sa.String(40))
    contact_id: Mapped[int] = mapped_column(index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    data: Mapped[dict | None] = mapped_column(sa.JSON)

    __table_args__ = (
        sa.Index("ix_change_txid_id", "txid", "id"),
        sa.Index("ix_change_occurred_at", "occurred_at"),
        # Ids never come back after a prune (SQLite would reuse the highest).
        {"sqlite_autoincrement": True},
    )


class ChangeFeedHorizon(db.Model):
    """How far the feed has been pruned (one row): a cursor at or before it may
    have missed items, so the reader is told to resync (410)."""

    __tablename__ = "change_feed_horizon"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    # The newest pruned item's position in the feed's order.
    txid: Mapped[int] = mapped_column(sa.BigInteger)
    change_id: Mapped[int] = mapped_column(sa.BigInteger)
    pruned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnonymisedActivity(db.Model):
    """What is left of an activity after a retention rule anonymised it (R15).

    General support information may stay (the product, the problem category and
    the resolution, as codes), nothing linkable to a person: no contact, no
    author, no note, and the time only to the month.
    """

    __tablename__ = "anonymised_activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    occurred_month: Mapped[date] = mapped_column(sa.Date)
    product: Mapped[str | None] = mapped_column(sa.String(64))
    problem_category: Mapped[str | None] = mapped_column(sa.String(64))
    resolution_code: Mapped[str | None] = mapped_column(sa.String(64))
    rule: Mapped[str] = mapped_column(sa.String(64))
    anonymised_on: Mapped[date] = mapped_column(sa.Date)


class RetentionRun(db.Model):
    """One retention run: when, on whose behalf, how many per rule (R13-R18).

    Holds counts only, never ids, addresses or anything that was removed.
    """

    __tablename__ = "retention_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[date] = mapped_column(sa.Date, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_by: Mapped[str] = mapped_column(sa.String(200))
    # running, completed, failed, interrupted (its process died; a later run resumed)
    status: Mapped[str] = mapped_column(sa.String(16), default="running")
    # {rule name: {"deleted": n, "anonymised": n, "excluded": n}}
    counts: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    batches: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.String(500))


class RetentionChecklistMark(db.Model):
    """An admin's word that data held in another system was purged (R16-R18).

    A rule whose data lives elsewhere (``held_in``) is purged by someone else
    (``purged_by``); the retention preview lists what is due there, and the
    admin marks it done through a day: everything counting from that day or
    earlier was removed. Who and when is kept here and in the audit log.
    """

    __tablename__ = "retention_checklist_mark"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(sa.String(64), index=True)
    # The rule's cut-off: records counting from this day or earlier are purged.
    done_through: Mapped[date] = mapped_column(sa.Date)
    done_by: Mapped[str] = mapped_column(sa.String(200))
    done_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("rule", "done_through"),)


class RetentionLock(db.Model):
    """The one row that lets a single retention run proceed across all hosts.

    Taken with a conditional UPDATE (or the first INSERT); a holder that
    stopped beating for ``RETENTION_LOCK_STALE_SECONDS``, or whose process is
    gone on this host, can be taken over, so a killed run never blocks the next.
    """

    __tablename__ = "retention_lock"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    run_id: Mapped[int | None] = mapped_column()
    holder_host: Mapped[str | None] = mapped_column(sa.String(255))
    holder_pid: Mapped[int | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebVisit(db.Model):
    """One page view on the company's website, under a pseudonymous visitor id
    (a cookie's value), never a contact id: R19 keeps web activity apart from contacts
    unless the contact consented (``WebVisitorLink``). Deleted by
    ``crm.web_visits.purge_visits`` after the policy's web-analytics period (R18)."""

    __tablename__ = "web_visit"

    id: Mapped[int] = mapped_column(primary_key=True)
    visitor_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    page: Mapped[str] = mapped_column(sa.String(500))
    visited_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebVisitorLink(db.Model):
    """A pseudonymous visitor id tied to a contact, which exists only while the
    contact's explicit consent to web tracking holds (R19; written by
    ``consent.web_tracking.link_visitor``). Deleting the row makes every visit
    of that id anonymous again; it goes with its contact on erasure."""

    __tablename__ = "web_visitor_link"

    visitor_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        sa.ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    linked_by: Mapped[str] = mapped_column(sa.String(200))
