"""The change feed a CRM mirrors (crm.changes, consent.feed) and its pruned horizon.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 09:20:00.000000

"""

from alembic import op
import sqlalchemy as sa

import kernel.timestamps


# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'change',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('txid', sa.BigInteger(), nullable=False),
        sa.Column('type', sa.String(length=40), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('occurred_at', kernel.timestamps.UTCDateTime(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_change')),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table('change', schema=None) as batch_op:
        batch_op.create_index('ix_change_txid_id', ['txid', 'id'], unique=False)
        batch_op.create_index('ix_change_occurred_at', ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_change_contact_id'), ['contact_id'], unique=False)

    op.create_table(
        'change_feed_horizon',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('txid', sa.BigInteger(), nullable=False),
        sa.Column('change_id', sa.BigInteger(), nullable=False),
        sa.Column('pruned_at', kernel.timestamps.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_change_feed_horizon')),
    )


def downgrade():
    op.drop_table('change_feed_horizon')
    with op.batch_alter_table('change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_change_contact_id'))
        batch_op.drop_index('ix_change_occurred_at')
        batch_op.drop_index('ix_change_txid_id')
    op.drop_table('change')
