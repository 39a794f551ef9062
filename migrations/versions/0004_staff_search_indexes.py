"""staff search indexes: the start of an address, a name or a company name

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 19:19:35.496917

Staff search (crm.services.search_contacts) matches the beginning of the
email, of the contact's name or of the company's name, case-insensitively.
On PostgreSQL the indexes use text_pattern_ops so that ``LIKE 'prefix%'`` can
use them whatever the database collation; SQLite compares bytes (BINARY) and
answers the same prefix with a range on a plain index.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def _pattern(expression):
    if op.get_bind().dialect.name == "postgresql":
        return sa.text(f"{expression} text_pattern_ops")
    return sa.text(expression)


def upgrade():
    op.create_index("ix_contact_email_search", "contact", [_pattern("email")], unique=False)
    op.create_index("ix_contact_name_search", "contact", [_pattern("lower(name)")], unique=False)
    op.create_index("ix_company_name_search", "company", [_pattern("lower(name)")], unique=False)


def downgrade():
    op.drop_index("ix_company_name_search", table_name="company")
    op.drop_index("ix_contact_name_search", table_name="contact")
    op.drop_index("ix_contact_email_search", table_name="contact")
