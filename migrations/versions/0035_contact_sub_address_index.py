"""The contact list's speed (issue 23): a partial index of the contacts whose
address holds a "+" (a sub-address such as anna+news@).

Every decision filter and campaign audience first asks which contacts sit at
a sub-address whose mailbox is suppressed
(``consent.suppression.suppressed_sub_addresses``); without this index that
question read the whole contact table (200 ms at 1,000,000 contacts, most of
a list page). The index holds only the few such contacts, so the read is as
long as they are few (docs/staff-pages.md).

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-06 16:20:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

# The same text as crm.models.SUB_ADDRESS: a query uses a partial index only
# when its condition names the index's own predicate.
WHERE = sa.text("email LIKE '%+%'")


def upgrade():
    op.create_index(
        "ix_contact_sub_address", "contact", ["id"], postgresql_where=WHERE, sqlite_where=WHERE
    )


def downgrade():
    op.drop_index("ix_contact_sub_address", table_name="contact")
