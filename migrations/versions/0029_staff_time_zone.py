"""Staff time zones: the IANA zone each staff user's pages show times in
(default Europe/Stockholm; times stay stored in UTC; docs/i18n.md).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06 15:30:00.000000

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade():
    # staff_user has no foreign key to contact: batch mode reflects it cleanly.
    with op.batch_alter_table("staff_user") as batch:
        batch.add_column(
            sa.Column(
                "time_zone",
                sa.String(length=64),
                nullable=False,
                server_default="Europe/Stockholm",
            )
        )


def downgrade():
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_column("time_zone")
