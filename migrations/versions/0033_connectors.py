"""The CRM connectors' state, mirrored records and owed deletions (docs/connectors.md).

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-06 16:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

from kernel.timestamps import UTCDateTime

# revision identifiers, used by Alembic.
revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "connector_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("cursors", sa.JSON(), nullable=False),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
        sa.Column("items_in", sa.BigInteger(), nullable=False),
        sa.Column("items_out", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("stopped_because", sa.String(length=500), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("running_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_connector_state")),
    )
    op.create_table(
        "connector_record",
        sa.Column("connector", sa.String(length=32), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("remote_id", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("activity_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(length=200), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "connector", "object_type", "remote_id", name=op.f("pk_connector_record")
        ),
    )
    op.create_index(op.f("ix_connector_record_contact_id"), "connector_record", ["contact_id"])
    op.create_table(
        "connector_deletion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connector", sa.String(length=32), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("remote_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connector_deletion")),
        sa.UniqueConstraint("connector", "object_type", "remote_id", name="uq_connector_deletion"),
    )
    op.create_index(op.f("ix_connector_deletion_connector"), "connector_deletion", ["connector"])


def downgrade():
    op.drop_index(op.f("ix_connector_deletion_connector"), table_name="connector_deletion")
    op.drop_table("connector_deletion")
    op.drop_index(op.f("ix_connector_record_contact_id"), table_name="connector_record")
    op.drop_table("connector_record")
    op.drop_table("connector_state")
