"""General support information that survives anonymisation (R15) and the
checklist of purges done in other systems (R16-R18).

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-06 06:30:00.000000

"""

import warnings

from alembic import op
import sqlalchemy as sa

import kernel.timestamps


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0015'
branch_labels = None
depends_on = None

_SUPPORT_COLUMNS = ('product', 'problem_category', 'resolution_code')


def upgrade():
    for table in ('activity', 'anonymised_activity'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _SUPPORT_COLUMNS:
                batch_op.add_column(sa.Column(column, sa.String(length=64), nullable=True))
    op.create_table(
        'retention_checklist_mark',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('rule', sa.String(length=64), nullable=False),
        sa.Column('done_through', sa.Date(), nullable=False),
        sa.Column('done_by', sa.String(length=200), nullable=False),
        sa.Column('done_at', kernel.timestamps.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_retention_checklist_mark')),
        sa.UniqueConstraint(
            'rule', 'done_through', name=op.f('uq_retention_checklist_mark_rule')
        ),
    )
    with op.batch_alter_table('retention_checklist_mark', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_retention_checklist_mark_rule'), ['rule'], unique=False
        )


def downgrade():
    with op.batch_alter_table('retention_checklist_mark', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retention_checklist_mark_rule'))
    op.drop_table('retention_checklist_mark')
    # On SQLite the batch copies the activity table; reflecting the contact table
    # it refers to skips the expression-based search indexes, which stay as
    # they are (the copy does not touch that table).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        for table in ('anonymised_activity', 'activity'):
            with op.batch_alter_table(table, schema=None) as batch_op:
                for column in reversed(_SUPPORT_COLUMNS):
                    batch_op.drop_column(column)
