"""Imports run on the worker: the uploaded file is kept in the database, in
chunks, until its batch has been processed; the batch keeps what the worker
needs to read it (the importer's mapping) and what the request learned from
the header (ignored columns, a suggested preset), plus the rows to expect,
for the progress shown while it runs (docs/imports.md).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 12:30:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("import_batch") as batch:
        batch.add_column(sa.Column("mapping", sa.Text(), nullable=True))
        batch.add_column(sa.Column("ignored_columns", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("suggested_preset", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("rows_total", sa.Integer(), nullable=True))
    op.create_table(
        "import_upload_chunk",
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["import_batch.id"],
            name=op.f("fk_import_upload_chunk_batch_id_import_batch"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("batch_id", "seq", name=op.f("pk_import_upload_chunk")),
    )


def downgrade():
    op.drop_table("import_upload_chunk")
    with op.batch_alter_table("import_batch") as batch:
        batch.drop_column("rows_total")
        batch.drop_column("suggested_preset")
        batch.drop_column("ignored_columns")
        batch.drop_column("mapping")
