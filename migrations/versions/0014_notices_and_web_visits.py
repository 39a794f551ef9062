"""The GDPR art. 14 notice's date on the contact, and web visits (R19).

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-06 06:40:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('contact', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('art14_notice_given_at', sa.DateTime(timezone=True), nullable=True)
        )
    op.create_table(
        'web_visit',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('visitor_id', sa.String(length=64), nullable=False),
        sa.Column('page', sa.String(length=500), nullable=False),
        sa.Column('visited_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('web_visit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_visit_visitor_id'), ['visitor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_web_visit_visited_at'), ['visited_at'], unique=False)
    op.create_table(
        'web_visitor_link',
        sa.Column('visitor_id', sa.String(length=64), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('linked_by', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('visitor_id'),
    )
    with op.batch_alter_table('web_visitor_link', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_web_visitor_link_contact_id'), ['contact_id'], unique=False
        )


def downgrade():
    op.drop_table('web_visitor_link')
    op.drop_table('web_visit')
    # Not a batch: SQLite would copy the table and cannot reflect its expression indexes.
    op.execute('ALTER TABLE contact DROP COLUMN art14_notice_given_at')
