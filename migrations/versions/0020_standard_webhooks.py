"""Standard Webhooks: endpoints subscribe to event types and can be deactivated
by a 410 Gone; a delivery names a change feed item instead of a contact, so
that tombstone deliveries outlive the contact (issue 20 item 3).

Existing rows: delivered and failed deliveries stay as the log's history
(``event_type`` "decisions.changed", no change: they cannot be replayed).
Pending ones are dropped: they would post the old format, and the change feed
items they would now carry did not exist when they were written; the
contact's current decisions reach the receiver with its next change, and an
admin can replay the feed from any change (docs/webhooks.md, "Upgrading").

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 09:30:00.000000

"""

import warnings

from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    with warnings.catch_warnings():
        # SQLite's batch mode reflects contact, whose expression index it cannot read.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        _upgrade()


def downgrade():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        _downgrade()


def _upgrade():
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_types', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deactivation_reason', sa.String(length=200), nullable=True))

    op.execute("DELETE FROM webhook_delivery WHERE status = 'pending'")
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_constraint('fk_webhook_delivery_contact_id_contact', type_='foreignkey')
        batch_op.drop_index('ix_webhook_delivery_contact_id')
        batch_op.alter_column('contact_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(
            sa.Column('change_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                      nullable=True)
        )
        batch_op.create_foreign_key(
            'fk_webhook_delivery_change_id_change', 'change', ['change_id'], ['id'],
            ondelete='CASCADE',
        )
        batch_op.add_column(
            sa.Column('event_type', sa.String(length=40), nullable=False,
                      server_default='decisions.changed')
        )
        batch_op.add_column(sa.Column('first_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('replay_of', sa.Integer(), nullable=True))
        batch_op.create_index('ix_webhook_delivery_change_id', ['change_id'], unique=False)
        batch_op.create_index(
            'ix_webhook_delivery_queue', ['endpoint_id', 'contact_id', 'status'], unique=False
        )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.alter_column('event_type', server_default=None)


def _downgrade():
    # The tombstones' deliveries have no contact to point to: they go.
    op.execute(
        "DELETE FROM webhook_delivery WHERE contact_id IS NULL"
        " OR contact_id NOT IN (SELECT id FROM contact)"
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_delivery_queue')
        batch_op.drop_index('ix_webhook_delivery_change_id')
        batch_op.drop_constraint('fk_webhook_delivery_change_id_change', type_='foreignkey')
        batch_op.drop_column('replay_of')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('first_attempt_at')
        batch_op.drop_column('event_type')
        batch_op.drop_column('change_id')
        batch_op.alter_column('contact_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index('ix_webhook_delivery_contact_id', ['contact_id'], unique=False)
        batch_op.create_foreign_key(
            'fk_webhook_delivery_contact_id_contact', 'contact', ['contact_id'], ['id'],
            ondelete='CASCADE',
        )
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.drop_column('deactivation_reason')
        batch_op.drop_column('deactivated_at')
        batch_op.drop_column('event_types')
