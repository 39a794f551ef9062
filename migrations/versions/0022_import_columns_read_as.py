"""How an import batch read its columns: a CRM preset, the importer's
mapping, or the recognised header names (issue 20 item 5).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 09:15:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0022"
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    # A nullable column: SQLite adds it without copying the table.
    op.add_column("import_batch", sa.Column("columns_read_as", sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table("import_batch", schema=None) as batch_op:
        batch_op.drop_column("columns_read_as")
