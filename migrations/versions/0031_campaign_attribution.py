"""Campaign attribution and segments (docs/campaigns.md).

A consent event remembers the email (outbox row) whose link caused it and
that email's campaign, so that a campaign's report counts the unsubscribes
and objections it caused. A segment is a saved contact filter; a campaign
may target one, and keeps a copy of it from its first send.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-06 15:30:00.000000

"""

import sqlalchemy as sa

from kernel.timestamps import UTCDateTime
from alembic import op

# revision identifiers, used by Alembic.
revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

WHERE = sa.text("campaign_id IS NOT NULL")


def upgrade():
    op.create_table(
        "segment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("filter_args", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment")),
        sa.UniqueConstraint("name", name=op.f("uq_segment_name")),
    )
    # A plain number, no foreign key: SQLite adds a key only by copying and
    # dropping campaign, which outbox_message's rows refer to (foreign keys are
    # on). mailing.segments.delete_segment keeps it true instead.
    op.add_column("campaign", sa.Column("segment_id", sa.Integer(), nullable=True))
    op.add_column("campaign", sa.Column("segment_name", sa.String(length=100), nullable=True))
    op.add_column("campaign", sa.Column("segment_args", sa.JSON(), nullable=True))
    op.create_index(op.f("ix_campaign_segment_id"), "campaign", ["segment_id"])
    # Plain ADD COLUMN (nullable, no default): no table rebuild on SQLite, and
    # only a catalogue change on PostgreSQL however long the ledger is.
    op.add_column("consent_event", sa.Column("outbox_id", sa.Integer(), nullable=True))
    op.add_column("consent_event", sa.Column("campaign_id", sa.Integer(), nullable=True))
    # Partial: existing events have no campaign and are not in it.
    op.create_index(
        "ix_consent_event_campaign_kind",
        "consent_event",
        ["campaign_id", "kind"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade():
    # Native ALTER TABLE ... DROP COLUMN (SQLite 3.35+), never a copy: copying
    # campaign means dropping it, which the foreign key from outbox_message's
    # rows refuses, and a batch stopped there leaves the schema half undone.
    # if_exists: a downgrade that stopped earlier can be run again.
    op.drop_index(op.f("ix_campaign_segment_id"), table_name="campaign", if_exists=True)
    with op.batch_alter_table("campaign", recreate="never") as batch:
        batch.drop_column("segment_args")
        batch.drop_column("segment_name")
        batch.drop_column("segment_id")
    op.drop_table("segment", if_exists=True)
    op.drop_index("ix_consent_event_campaign_kind", table_name="consent_event", if_exists=True)
    with op.batch_alter_table("consent_event", recreate="never") as batch:
        batch.drop_column("campaign_id")
        batch.drop_column("outbox_id")
