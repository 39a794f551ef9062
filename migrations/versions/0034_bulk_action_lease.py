"""A bulk action's lease: when its worker last claimed it or recorded a chunk,
so that a second delivery of its job leaves it alone while that worker lives.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-06 16:30:00.000000

"""

import sqlalchemy as sa

from kernel.timestamps import UTCDateTime
from alembic import op

# revision identifiers, used by Alembic.
revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: a plain ADD COLUMN on SQLite and PostgreSQL alike.
    op.add_column("bulk_action", sa.Column("claimed_at", UTCDateTime(), nullable=True))


def downgrade():
    # SQLite's own DROP COLUMN (3.35+): no copy of the table.
    with op.batch_alter_table("bulk_action", recreate="never") as batch:
        batch.drop_column("claimed_at")
