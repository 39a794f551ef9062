"""The scheduler's turns (one row per periodic job) replace the daily chain of
delayed messages and its row; the outbox's send time is indexed for the
health check's "is anything being sent" (docs/operations.md, Scheduling).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 12:30:00.000000

"""

from alembic import op
import sqlalchemy as sa

from kernel.timestamps import UTCDateTime


# revision identifiers, used by Alembic.
revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "scheduled_job",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("last_due_at", UTCDateTime(), nullable=False),
        sa.Column("last_sent_at", UTCDateTime(), nullable=False),
        sa.Column("last_sent_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduled_job")),
    )
    op.drop_table("retention_schedule")
    op.create_index("ix_outbox_message_sent_at", "outbox_message", ["sent_at"])


def downgrade():
    op.drop_index("ix_outbox_message_sent_at", table_name="outbox_message")
    # The chain restarts by itself: every worker that boots sends its first link.
    op.create_table(
        "retention_schedule",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("chain_id", sa.String(length=64), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_retention_schedule")),
    )
    op.drop_table("scheduled_job")
