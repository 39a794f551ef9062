"""Staff accounts: a TOTP second factor per staff user (its secret and the last
time step accepted, so that a code is not taken twice) and an expiry per API
token (docs/accounts.md).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 12:30:00.000000

"""

from alembic import op
import sqlalchemy as sa

from kernel.timestamps import UTCDateTime


# revision identifiers, used by Alembic.
revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade():
    # Neither table has a foreign key to contact: batch mode reflects them cleanly.
    with op.batch_alter_table("staff_user") as batch:
        batch.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("api_token") as batch:
        # Existing tokens keep working until revoked, as they were created to.
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("api_token") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
