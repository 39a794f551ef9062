"""Bounce reports carry the key a repeat is known by (the returned Message-ID
or the report's own), whatever tied them to our mail; the mailbox poller keeps
how far it read each folder (UIDVALIDITY, last UID) and the lease of the
worker reading it (docs/bounces.md).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 10:30:00.000000

"""

import warnings

from alembic import op
import sqlalchemy as sa

from kernel.timestamps import UTCDateTime


# revision identifiers, used by Alembic.
revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table("bounce_report") as batch:
            batch.add_column(sa.Column("report_key", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_bounce_report_contact_type_key",
        "bounce_report",
        ["contact_id", "type", "report_key"],
    )
    op.create_table(
        "bounce_mailbox",
        sa.Column("mailbox", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=True),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=True),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("mailbox"),
    )


def downgrade():
    op.drop_table("bounce_mailbox")
    op.drop_index("ix_bounce_report_contact_type_key", table_name="bounce_report")
    with warnings.catch_warnings():
        # SQLite's batch mode reflects contact (bounce_report's foreign key),
        # whose expression index it cannot read; the warning says only that.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table("bounce_report") as batch:
            batch.drop_column("report_key")
