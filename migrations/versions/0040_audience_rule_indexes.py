"""The campaign audience on SQLite (issue 25): one partial index per rule of
the decision, so that the audience can walk each rule's contacts in id order
and merge them (``consent.audience.audience_merged``; SQLite has no hash join).

- permission_state (topic, channel, contact_id, date) for the rows holding
  a consent, an unsubscribe, an objection, a customer or an industry-list
  ground (the date too, so that SQLite reads the index alone: it checks a
  partial index's condition again on the row unless the column is in it);
- contact (id) for the restricted and for the hard-bounced contacts.

Each holds only the rows whose column is set, so a row is written to an index
only while it holds that rule's date. The queries each one serves are listed
in docs/benchmarks.md (campaign audience).

Revision ID: 0040
Revises: 0038
Create Date: 2026-12-06 19:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0040"
down_revision = "0038"
branch_labels = None
depends_on = None

RULES = (
    ("consent", "consent_since", ("consent_since",)),
    ("unsubscribed", "unsubscribed_since", ("unsubscribed_since",)),
    ("objected", "objected_since", ("objected_since",)),
    ("customer", "customer_since", ("customer_since",)),
    ("industry_list", "industry_list_since", ("industry_list_since",)),
)
CONTACT = (("restricted", "restricted_at"), ("hard_bounced", "hard_bounced_at"))


def upgrade():
    for name, column, extra in RULES:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_permission_state_{name}",
            "permission_state",
            ["topic", "contact_id", "channel", *extra],
            postgresql_where=where,
            sqlite_where=where,
        )
    for name, column in CONTACT:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_contact_{name}", "contact", ["id"], postgresql_where=where, sqlite_where=where
        )


def downgrade():
    for name, _column in CONTACT:
        op.drop_index(f"ix_contact_{name}", table_name="contact")
    for name, _column, _extra in RULES:
        op.drop_index(f"ix_permission_state_{name}", table_name="permission_state")
