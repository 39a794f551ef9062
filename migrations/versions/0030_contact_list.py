"""The contact list (/staff/contacts): indexes for its filters under keyset
paging, and the bulk actions' runs (docs/staff-pages.md).

Each index and the query it serves:
- ix_contact_country_id, ix_contact_language_id: the country and language
  filters walk (value, id) in id order, so a page is a range scan from the
  cursor, however rare the value;
- ix_contact_created_at_id: the created range finds its contacts without
  reading the table;
- ix_consent_event_source_contact, ix_consent_event_source_ref_contact: the
  source and import-batch filters (an EXISTS over the ledger) find the
  contacts from the value.

Revision ID: 0030
Revises: 0028
Create Date: 2026-12-06 15:30:00.000000

"""

from alembic import op
import sqlalchemy as sa

from kernel.timestamps import UTCDateTime


# revision identifiers, used by Alembic.
revision = "0030"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_contact_country_id", "contact", ["country", "id"])
    op.create_index("ix_contact_language_id", "contact", ["language", "id"])
    op.create_index("ix_contact_created_at_id", "contact", ["created_at", "id"])
    op.create_index("ix_consent_event_source_contact", "consent_event", ["source", "contact_id"])
    op.create_index(
        "ix_consent_event_source_ref_contact", "consent_event", ["source_ref", "contact_id"]
    )
    op.create_table(
        "bulk_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("after_id", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("bulk_action")
    op.drop_index("ix_consent_event_source_ref_contact", table_name="consent_event")
    op.drop_index("ix_consent_event_source_contact", table_name="consent_event")
    op.drop_index("ix_contact_created_at_id", table_name="contact")
    op.drop_index("ix_contact_language_id", table_name="contact")
    op.drop_index("ix_contact_country_id", table_name="contact")
