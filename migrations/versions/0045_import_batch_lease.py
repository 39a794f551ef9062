"""An import batch's lease, as a bulk action has one (0034): when its worker
last claimed it or committed a chunk, or when the sweeper last handed a
queued batch over again. A second delivery of its job leaves the batch alone
while that worker lives, and the sweeper finds a batch whose job was lost.

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-07 03:00:00.000000

"""

import sqlalchemy as sa

from kernel.timestamps import UTCDateTime
from alembic import op

# revision identifiers, used by Alembic.
revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: a plain ADD COLUMN on SQLite and PostgreSQL alike. A
    # batch running at the upgrade has none: the next delivery may take it.
    op.add_column("import_batch", sa.Column("claimed_at", UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("import_batch", recreate="never") as batch:
        batch.drop_column("claimed_at")
