"""Scoped "do not contact" entries: the keyed hash of an address that refused one
topic or one channel, kept through erasure and purges (docs/rules.md R22).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 06:30:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'scoped_suppression',
        sa.Column('address_hash', sa.String(length=64), nullable=False),
        sa.Column('topic', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            'address_hash', 'topic', 'channel', name=op.f('pk_scoped_suppression')
        ),
    )
    with op.batch_alter_table('scoped_suppression', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_scoped_suppression_created_at'), ['created_at'], unique=False
        )


def downgrade():
    with op.batch_alter_table('scoped_suppression', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scoped_suppression_created_at'))
    op.drop_table('scoped_suppression')
