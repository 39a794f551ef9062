"""Connectors' erasure mode and CRM history (issue 24): how each deletion owed
to a CRM was carried out (``connector_deletion.erasure``: ``delete`` or
``anonymise``, the connector's ``<NAME>_ERASURE`` at the last attempt), and
whether a connector's sync created the contact here
(``connector_record.created_contact``), so that the CRM's interactions date
that contact's retention clock at their own dates (docs/retention.md).

Rows from before are left as they were: a deletion done before is shown
without a mode, and a contact synced before counts as one that was here
first (its clock is not moved back).

Revision ID: 0038
Revises: 0035
Create Date: 2026-12-06 19:20:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0038"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connector_deletion") as batch:
        batch.add_column(sa.Column("erasure", sa.String(length=16), nullable=True))
    with op.batch_alter_table("connector_record") as batch:
        batch.add_column(
            sa.Column("created_contact", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("connector_record") as batch:
        batch.drop_column("created_contact")
    with op.batch_alter_table("connector_deletion") as batch:
        batch.drop_column("erasure")
