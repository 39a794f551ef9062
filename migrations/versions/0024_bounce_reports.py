"""Bounce reports: the evidence of each bounce and complaint that came back
for a message this service sent (issue 21, docs/bounces.md).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 09:30:00.000000

"""

from alembic import op
import sqlalchemy as sa

from kernel.timestamps import UTCDateTime


# revision identifiers, used by Alembic.
revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'bounce_report',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=True),
        sa.Column('diagnostic', sa.String(length=500), nullable=True),
        sa.Column('message_id', sa.String(length=255), nullable=True),
        sa.Column('outbox_id', sa.Integer(), nullable=True),
        sa.Column('campaign_id', sa.Integer(), nullable=True),
        sa.Column('mail_kind', sa.String(length=16), nullable=True),
        sa.Column('matched_by', sa.String(length=16), nullable=True),
        sa.Column('event_id', sa.Integer(), nullable=True),
        sa.Column('occurred_at', UTCDateTime(), nullable=False),
        sa.Column('recorded_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(
        'ix_bounce_report_contact_type_occurred',
        'bounce_report',
        ['contact_id', 'type', 'occurred_at'],
    )
    op.create_index('ix_bounce_report_campaign_id', 'bounce_report', ['campaign_id'])
    # A bounce without a VERP token is matched by the Message-ID it returns.
    op.create_index('ix_outbox_message_message_id', 'outbox_message', ['message_id'])


def downgrade():
    op.drop_index('ix_outbox_message_message_id', table_name='outbox_message')
    op.drop_index('ix_bounce_report_campaign_id', table_name='bounce_report')
    op.drop_index('ix_bounce_report_contact_type_occurred', table_name='bounce_report')
    op.drop_table('bounce_report')
