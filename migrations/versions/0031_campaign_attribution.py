"""Campaign attribution: a consent event remembers the email (outbox row) whose
link caused it and that email's campaign, so that a campaign's report counts
the unsubscribes and objections it caused (docs/campaigns.md).

Revision ID: 0031
Revises: 0028
Create Date: 2026-12-06 15:30:00.000000

"""

import warnings

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0031"
down_revision = "0028"
branch_labels = None
depends_on = None

WHERE = sa.text("campaign_id IS NOT NULL")


def upgrade():
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
    op.drop_index("ix_consent_event_campaign_kind", table_name="consent_event")
    with warnings.catch_warnings():
        # SQLite's batch mode reflects contact, whose expression index it cannot read.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table("consent_event") as batch:
            batch.drop_column("campaign_id")
            batch.drop_column("outbox_id")
