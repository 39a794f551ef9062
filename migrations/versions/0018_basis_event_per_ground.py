"""One basis event column per ground: the customer's grant and the industry
list's, so that a decision on the list names the list's import even after the
contact was a customer (docs/rules.md R5).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 07:30:00.000000

"""

import warnings

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

# (interest kind, the ground's date column, its new event column)
_GROUNDS = (
    ('customer', 'customer_since', 'customer_event_id'),
    ('industry_list', 'industry_list_since', 'industry_list_event_id'),
)

_state = sa.table(
    'permission_state',
    sa.column('contact_id', sa.Integer),
    sa.column('topic', sa.String),
    sa.column('channel', sa.String),
    sa.column('customer_since', sa.DateTime),
    sa.column('industry_list_since', sa.DateTime),
    sa.column('customer_event_id', sa.Integer),
    sa.column('industry_list_event_id', sa.Integer),
    sa.column('basis_event_id', sa.Integer),
)
_event = sa.table(
    'consent_event',
    sa.column('id', sa.Integer),
    sa.column('contact_id', sa.Integer),
    sa.column('kind', sa.String),
    sa.column('interest_kind', sa.String),
    sa.column('occurred_at', sa.DateTime),
)


def upgrade():
    with op.batch_alter_table('permission_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer_event_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('industry_list_event_id', sa.Integer(), nullable=True))
    # Each ground from the ledger: the latest grant of that kind up to the
    # ground's date (the grant the date comes from; a later re-grant of a
    # ground the contact still held kept the first one), else its latest grant.
    for interest_kind, since, event_column in _GROUNDS:
        grants = sa.and_(
            _event.c.contact_id == _state.c.contact_id,
            _event.c.kind == 'basis_granted',
            _event.c.interest_kind == interest_kind,
        )
        up_to_since = (
            sa.select(sa.func.max(_event.c.id))
            .where(grants, _event.c.occurred_at <= _state.c[since])
            .scalar_subquery()
        )
        latest = sa.select(sa.func.max(_event.c.id)).where(grants).scalar_subquery()
        op.execute(
            _state.update()
            .where(_state.c[since].is_not(None))
            .values({event_column: sa.func.coalesce(up_to_since, latest)})
        )
    _batch_drop('basis_event_id')


def downgrade():
    with op.batch_alter_table('permission_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('basis_event_id', sa.Integer(), nullable=True))
    # One column again: the customer's grant where there is one, as the fold wrote it last.
    op.execute(
        _state.update().values(
            basis_event_id=sa.func.coalesce(
                _state.c.customer_event_id, _state.c.industry_list_event_id
            )
        )
    )
    _batch_drop('industry_list_event_id', 'customer_event_id')


def _batch_drop(*columns):
    # On SQLite the table is copied; reflecting the contact table its foreign
    # key refers to skips the expression-based search indexes, which stay as
    # they are (the copy does not touch that table).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table('permission_state', schema=None) as batch_op:
            for column in columns:
                batch_op.drop_column(column)
