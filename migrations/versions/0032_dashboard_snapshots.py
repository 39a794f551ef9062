"""The dashboard's sections computed by the scheduler (reports/snapshots.py):
one row per section, its numbers as JSON and when they were computed.

Revision ID: 0032
Revises: 0028
Create Date: 2026-12-06 15:40:00.000000

"""

from alembic import op
import sqlalchemy as sa

from kernel.timestamps import UTCDateTime


# revision identifiers, used by Alembic.
revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "dashboard_snapshot",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dashboard_snapshot")),
    )


def downgrade():
    op.drop_table("dashboard_snapshot")
