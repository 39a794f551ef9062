"""Idempotency keys: an API write an integrator can repeat (issue 20 item 8).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 09:30:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'idempotency_key',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('response_headers', sa.Text(), nullable=True),
        sa.Column('response_body', sa.LargeBinary(), nullable=True),
        sa.Column('contact_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ['token_id'], ['api_token.id'],
            name=op.f('fk_idempotency_key_token_id_api_token'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['contact_id'], ['contact.id'],
            name=op.f('fk_idempotency_key_contact_id_contact'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_key')),
        sa.UniqueConstraint('token_id', 'key', name=op.f('uq_idempotency_key_token_id')),
    )
    with op.batch_alter_table('idempotency_key', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_idempotency_key_created_at'), ['created_at'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_idempotency_key_contact_id'), ['contact_id'], unique=False
        )


def downgrade():
    with op.batch_alter_table('idempotency_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_key_contact_id'))
        batch_op.drop_index(batch_op.f('ix_idempotency_key_created_at'))
    op.drop_table('idempotency_key')
