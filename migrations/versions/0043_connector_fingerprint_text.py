"""A connector record's fingerprint as text of any length (issue 24).

The subscription-status record keeps the JSON map of what was last written
per topic; cut at 200 characters it stopped being JSON once an installation
mapped enough topics, and every later decision write for that contact failed.

Revision ID: 0043
Revises: 0040
Create Date: 2026-12-06 19:55:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0043"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A status record already cut is no JSON: empty, it is written again whole.
    op.execute(
        "UPDATE connector_record SET fingerprint = '' "
        "WHERE object_type = 'status' AND length(fingerprint) >= 200"
    )
    with op.batch_alter_table("connector_record") as batch:
        batch.alter_column(
            "fingerprint",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Longer fingerprints are dropped, not cut: a cut one is not JSON, and an
    # empty one only makes the next sync write that record again.
    op.execute("UPDATE connector_record SET fingerprint = '' WHERE length(fingerprint) > 200")
    with op.batch_alter_table("connector_record") as batch:
        batch.alter_column(
            "fingerprint",
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
