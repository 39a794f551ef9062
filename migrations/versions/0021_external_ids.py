"""External ids of contacts and companies, and the (updated_at, id) index the
changed-since read walks (issue 20, items 1 and 6).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 09:20:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'external_id',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('owner_type', sa.String(length=16), nullable=False),
        sa.Column('owner_id', sa.Integer(), nullable=False),
        sa.Column('system', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "owner_type IN ('contact', 'company')", name=op.f('ck_external_id_owner_type')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_external_id')),
        sa.UniqueConstraint('owner_type', 'owner_id', 'system', name='uq_external_id_owner'),
        sa.UniqueConstraint('owner_type', 'system', 'value', name='uq_external_id_value'),
    )
    # Not a batch: SQLite would copy the contact table and cannot reflect its
    # expression indexes; a plain CREATE INDEX needs no copy.
    op.create_index('ix_contact_updated_at_id', 'contact', ['updated_at', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_contact_updated_at_id', table_name='contact')
    op.drop_table('external_id')
