"""privacy requests outlive the contact: keyed hash, deadline extension, answer

The request row keeps no personal data and is the proof that a rights request
was answered in time (GDPR art. 5(2), 12(3)): its contact id becomes null when
the contact is erased or purged (ON DELETE SET NULL instead of CASCADE), and
it holds the keyed hash of the address, how it was received, the extension
and its reason, when and how it was answered and by whom
(consent.models.PrivacyRequest).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 06:30:00.000000

"""

import warnings

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

_FK = 'fk_privacy_request_contact_id_contact'


def upgrade():
    # On SQLite the batch copies the table; reflecting the contact table it
    # refers to warns about that table's expression index, which is not touched.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table('privacy_request', schema=None) as batch_op:
            batch_op.add_column(sa.Column('address_hash', sa.String(length=64), nullable=True))
            batch_op.add_column(
                sa.Column(
                    'received_via', sa.String(length=16), server_default=sa.text("'web'"), nullable=False
                )
            )
            batch_op.add_column(sa.Column('extended_until', sa.DateTime(timezone=True), nullable=True))
            batch_op.add_column(sa.Column('extension_reason', sa.String(length=500), nullable=True))
            batch_op.add_column(sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True))
            batch_op.add_column(sa.Column('outcome', sa.String(length=16), nullable=True))
            batch_op.add_column(sa.Column('outcome_note', sa.String(length=500), nullable=True))
            batch_op.add_column(sa.Column('handled_by', sa.String(length=200), nullable=True))
            batch_op.alter_column('contact_id', existing_type=sa.Integer(), nullable=True)
            batch_op.drop_constraint(_FK, type_='foreignkey')
            batch_op.create_foreign_key(_FK, 'contact', ['contact_id'], ['id'], ondelete='SET NULL')
            batch_op.create_index(
                batch_op.f('ix_privacy_request_address_hash'), ['address_hash'], unique=False
            )

    # Existing rows: the address's keyed hash from the contact (the same value,
    # contact.address_hash), and a copy request already emailed is answered.
    op.execute(
        "UPDATE privacy_request SET address_hash = "
        "(SELECT contact.address_hash FROM contact WHERE contact.id = privacy_request.contact_id)"
    )
    op.execute(
        "UPDATE privacy_request SET status = 'completed', outcome = 'exported', "
        "completed_at = verified_at, handled_by = 'system:consent-service' "
        "WHERE kind = 'access' AND status = 'verified'"
    )


def downgrade():
    # Requests whose contact is gone cannot go back under a NOT NULL, CASCADE key.
    op.execute("DELETE FROM privacy_request WHERE contact_id IS NULL")
    op.execute(
        "UPDATE privacy_request SET status = 'verified' "
        "WHERE kind = 'access' AND status = 'completed'"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        with op.batch_alter_table('privacy_request', schema=None) as batch_op:
            batch_op.drop_index(batch_op.f('ix_privacy_request_address_hash'))
            batch_op.drop_constraint(_FK, type_='foreignkey')
            batch_op.create_foreign_key(_FK, 'contact', ['contact_id'], ['id'], ondelete='CASCADE')
            batch_op.alter_column('contact_id', existing_type=sa.Integer(), nullable=False)
            batch_op.drop_column('handled_by')
            batch_op.drop_column('outcome_note')
            batch_op.drop_column('outcome')
            batch_op.drop_column('completed_at')
            batch_op.drop_column('extension_reason')
            batch_op.drop_column('extended_until')
            batch_op.drop_column('received_via')
            batch_op.drop_column('address_hash')
