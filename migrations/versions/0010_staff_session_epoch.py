"""Staff users' session epoch: raised by sign-out, deactivation and a new role or
password, it ends every session cookie issued before (kernel.access.end_every_session).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    # Existing users start at 0; cookies issued before this migration carry no
    # epoch at all, so everyone signs in once more after the upgrade.
    with op.batch_alter_table('staff_user', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('session_epoch', sa.Integer(), server_default=sa.text('0'), nullable=False)
        )


def downgrade():
    with op.batch_alter_table('staff_user', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
