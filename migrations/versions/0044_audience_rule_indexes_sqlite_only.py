"""The audience's rule indexes of migration 0040 on SQLite only.

They serve ``consent.audience.audience_merged``, the audience's shape on
SQLite. PostgreSQL answers the audience with hash joins and none of its
plans reads them (docs/benchmarks.md, campaign audience), while every write
of a projection row or a restriction or bounce kept them up to date: this
drops them there. SQLite keeps them; the models create them on SQLite only
(``Index.ddl_if``), and migrations/env.py leaves them out of PostgreSQL's
comparison with the models (``flask db check``).

Revision ID: 0044
Revises: 0043
Create Date: 2026-12-06 23:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None

# As migration 0040 made them.
RULES = (
    ("consent", "consent_since"),
    ("unsubscribed", "unsubscribed_since"),
    ("objected", "objected_since"),
    ("customer", "customer_since"),
    ("industry_list", "industry_list_since"),
)
CONTACT = (("restricted", "restricted_at"), ("hard_bounced", "hard_bounced_at"))


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade():
    if not _on_postgresql():
        return
    for name, _column in CONTACT:
        op.drop_index(f"ix_contact_{name}", table_name="contact")
    for name, _column in RULES:
        op.drop_index(f"ix_permission_state_{name}", table_name="permission_state")


def downgrade():
    if not _on_postgresql():
        return
    for name, column in RULES:
        op.create_index(
            f"ix_permission_state_{name}",
            "permission_state",
            ["topic", "contact_id", "channel", column],
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )
    for name, column in CONTACT:
        op.create_index(
            f"ix_contact_{name}",
            "contact",
            ["id"],
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )
