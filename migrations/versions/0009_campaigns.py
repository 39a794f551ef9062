"""Campaigns, and the outbox rows that belong to one (unique per campaign and contact by idempotency_key).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 20:33:56.742138

"""
import warnings

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('campaign',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('subject_sv', sa.String(length=200), nullable=False),
    sa.Column('body_sv', sa.Text(), nullable=False),
    sa.Column('subject_en', sa.String(length=200), nullable=False),
    sa.Column('body_en', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_by', sa.String(length=200), nullable=True),
    sa.Column('send_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('queued_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign'))
    )
    # On SQLite the batch copies the outbox table; reflecting the tables it
    # refers to warns about the contact table's expression index, which the
    # copy does not touch.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table('outbox_message', schema=None) as batch_op:
            batch_op.add_column(sa.Column('campaign_id', sa.Integer(), nullable=True))
            batch_op.create_foreign_key(
                batch_op.f('fk_outbox_message_campaign_id_campaign'),
                'campaign', ['campaign_id'], ['id'], ondelete='RESTRICT',
            )
    op.create_index(op.f('ix_outbox_message_campaign_id'), 'outbox_message', ['campaign_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_outbox_message_campaign_id'), table_name='outbox_message')
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table('outbox_message', schema=None) as batch_op:
            batch_op.drop_constraint(
                batch_op.f('fk_outbox_message_campaign_id_campaign'), type_='foreignkey'
            )
            batch_op.drop_column('campaign_id')

    op.drop_table('campaign')
