"""Staff accounts: the people and API tokens that may reach the service, with their roles."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from kernel.errors import N_
from kernel.timestamps import DEFAULT_ZONE, UTCDateTime, utcnow


class Role(enum.StrEnum):
    SALES = "sales"
    MARKETING = "marketing"
    ADMIN = "admin"
    # The data protection officer: reads what a rights request or a complaint
    # needs (the consent evidence, the privacy-request inbox, the audit log),
    # takes no marketing action (R25).
    DPO = "dpo"


# The labels pages show for these codes (the code itself), declared for extraction.
ROLE_LABELS = (N_("sales"), N_("marketing"), N_("admin"), N_("dpo"))


class StaffUser(db.Model):
    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(300))
    role: Mapped[str] = mapped_column(sa.String(16))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Copied into every session cookie at sign-in and compared on every request:
    # raising it (sign-out, deactivation, a new role or password) ends every
    # session of the user at once, including copies of the cookie
    # (kernel.access.end_every_session).
    session_epoch: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))
    # The TOTP second factor (RFC 6238, base32), set once the user proved with
    # a code that their authenticator holds it; None: no second factor.
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    # The last time step whose code was accepted: a code seen once (read over a
    # shoulder, replayed by a proxy) is refused for the rest of its window.
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    # The IANA zone the user's pages show times in; times are stored in UTC.
    time_zone: Mapped[str] = mapped_column(
        sa.String(64), default=DEFAULT_ZONE, server_default=DEFAULT_ZONE
    )

    @property
    def has_second_factor(self) -> bool:
        return self.totp_secret is not None


class ApiToken(db.Model):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    # SHA-256 of the token; the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Refused from this moment on; None: valid until revoked.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IdempotencyKey(db.Model):
    """A write an API caller may repeat: its ``Idempotency-Key``, what was asked
    and, once answered, the answer (kernel.idempotency).

    Scoped per token: two callers' keys never meet. Kept ``IDEMPOTENCY_KEEP_HOURS``
    (24 by default), then pruned. The stored answer may hold personal data (a
    contact as the API returns it), and names the contact its request or
    answer names (``contact_id``). An erasure or a purge
    (``crm.services.remove_contacts``) first turns such an answer into a 410
    tombstone without personal data and unlinks it, so the key still answers
    and a repeat writes nothing; ON DELETE CASCADE is the backstop, should a
    contact ever be deleted by another path. An answer carrying a secret is kept
    without it (``withholds_in_replay``).
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (sa.UniqueConstraint("token_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(sa.ForeignKey("api_token.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255))
    # SHA-256 of method, path, query and body: the same key with another
    # request is refused (422), never answered with the first one's answer.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # None while the first request is in flight (a repeat then gets 409).
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column()
    # JSON object of the answer's headers worth repeating (Content-Type, Location).
    response_headers: Mapped[str | None] = mapped_column(sa.Text)
    response_body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    # The contact the request or its answer names; a string reference, since
    # the kernel imports no package above it.
    contact_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("contact.id", ondelete="CASCADE"), index=True
    )


class ScheduledJob(db.Model):
    """A periodic job and the last turn of it a scheduler handed to the broker
    (``kernel.scheduling``).

    One row per job. A scheduler takes a turn with a conditional UPDATE (the
    row's turn must be older than the one it takes), so two scheduler
    processes never both send the same turn: a second host for availability
    never doubles the daily retention run.
    """

    __tablename__ = "scheduled_job"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # The turn (the moment it was due), not when it was sent: the same for every scheduler.
    last_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_sent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # host:pid of the scheduler that sent it, for the operator reading the table.
    last_sent_by: Mapped[str] = mapped_column(sa.String(255))
    # The first time any scheduler ran this job: "never ran" is measured from here.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
