"""Three of migration 0040's audience indexes on SQLite only.

Migration 0040 made seven partial indexes for ``consent.audience.audience_merged``,
the audience's shape on SQLite, on both databases. On PostgreSQL the audience
is hash joins and reads none of them; four are read there by other plans (the
objection one by retention's rules counting from an objection, the
industry-list one by the bulk action that ends it, the consent one by the
contact list's consent filter, the bounced one by its "bounced" filter), so
they stay. The other three no PostgreSQL plan reads, while every write of a
projection row or a restriction kept them up to date: dropped there.

- ``ix_permission_state_unsubscribed``, ``ix_permission_state_customer``,
  ``ix_contact_restricted``.

The models declare these three for SQLite only (``Index.ddl_if``), and
migrations/env.py leaves such an index out of PostgreSQL's comparison with the
models (``flask db check``), which alembic does not do by itself.

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

# (table, index, its columns, its condition), as migration 0040 made them.
SQLITE_ONLY = (
    (
        "permission_state",
        "ix_permission_state_unsubscribed",
        ["topic", "contact_id", "channel", "unsubscribed_since"],
        "unsubscribed_since IS NOT NULL",
    ),
    (
        "permission_state",
        "ix_permission_state_customer",
        ["topic", "contact_id", "channel", "customer_since"],
        "customer_since IS NOT NULL",
    ),
    ("contact", "ix_contact_restricted", ["id"], "restricted_at IS NOT NULL"),
)


def _on_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade():
    if not _on_postgresql():
        return
    for table, name, _columns, _where in SQLITE_ONLY:
        op.drop_index(name, table_name=table)


def downgrade():
    if not _on_postgresql():
        return
    for table, name, columns, where in SQLITE_ONLY:
        op.create_index(name, table, columns, postgresql_where=sa.text(where))
