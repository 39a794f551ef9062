"""The migrations build the schema on an empty database and carry data forward."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from flask_migrate import downgrade, upgrade

from app import create_app
from tests.conftest import TEST_CONFIG, _postgres_database


def test_contact_address_hash_is_backfilled_by_its_migration(tmp_path) -> None:
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/m.db"})
    with app.app_context():
        from extensions import db
        from kernel.addresses import keyed_hash

        upgrade(revision="0001")
        db.session.execute(
            sa.text(
                "INSERT INTO contact (email, language, created_at, updated_at) VALUES ('old@kund.se', 'sv', '2020-01-01', '2020-01-01')"
            )
        )
        db.session.commit()
        upgrade(revision="heads")
        stored = db.session.execute(sa.text("SELECT address_hash FROM contact")).scalar_one()
        assert stored == keyed_hash("old@kund.se")
        downgrade(revision="0001")
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("contact")}
        assert "address_hash" not in columns


def test_privacy_requests_carry_forward_and_outlive_their_contact(tmp_path) -> None:
    """Migration 0015: existing requests get the address's keyed hash, an emailed
    copy request is answered, and the row survives its contact's deletion."""
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/p.db"})
    with app.app_context():
        from extensions import db
        from kernel.addresses import keyed_hash

        upgrade(revision="0010")
        db.session.execute(
            sa.text(
                "INSERT INTO contact (id, email, address_hash, language, created_at, updated_at) "
                "VALUES (7, 'old@kund.se', :hash, 'sv', '2020-01-01', '2020-01-01')"
            ),
            {"hash": keyed_hash("old@kund.se")},
        )
        db.session.execute(
            sa.text(
                "INSERT INTO privacy_request (contact_id, kind, status, requested_at, verified_at, "
                "due_at) VALUES (7, 'access', 'verified', '2026-01-01', '2026-01-02', '2026-02-01'),"
                " (7, 'erasure', 'awaiting_admin', '2026-01-01', '2026-01-02', '2026-02-01')"
            )
        )
        db.session.commit()
        upgrade(revision="heads")
        rows = db.session.execute(
            sa.text("SELECT kind, status, outcome, address_hash FROM privacy_request ORDER BY id")
        ).all()
        assert [tuple(r) for r in rows] == [
            ("access", "completed", "exported", keyed_hash("old@kund.se")),
            ("erasure", "awaiting_admin", None, keyed_hash("old@kund.se")),
        ]
        db.session.execute(sa.text("DELETE FROM contact WHERE id = 7"))
        db.session.commit()
        left = db.session.execute(sa.text("SELECT contact_id FROM privacy_request")).scalars()
        assert list(left) == [None, None]


def test_each_grounds_basis_event_is_backfilled_from_the_ledger(tmp_path) -> None:
    """Migration 0018: the one shared column (which named the customer's grant
    last) becomes one per ground, each the grant its ground's date comes from."""
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/b.db"})
    with app.app_context():
        from extensions import db

        upgrade(revision="0017")
        db.session.execute(
            sa.text(
                "INSERT INTO contact (id, email, language, created_at, updated_at) "
                "VALUES (7, 'lista@bransch.se', 'sv', '2026-01-01', '2026-01-01')"
            )
        )
        # The list's import, the customer's grant and end, a later import of the
        # list while the contact still held it (the fold kept the first).
        for event_id, kind, interest_kind, at in [
            (1, "basis_granted", "industry_list", "2026-01-01 00:00:00"),
            (2, "basis_granted", "customer", "2026-02-01 00:00:00"),
            (3, "basis_ended", "customer", "2026-03-01 00:00:00"),
            (4, "basis_granted", "industry_list", "2026-04-01 00:00:00"),
        ]:
            db.session.execute(
                sa.text(
                    "INSERT INTO consent_event (id, contact_id, kind, topic, channel, "
                    "occurred_at, recorded_at, source, recorded_by, interest_kind) VALUES "
                    "(:id, 7, :kind, '*', '*', :at, :at, 'import', 'system', :interest)"
                ),
                {"id": event_id, "kind": kind, "at": at, "interest": interest_kind},
            )
        db.session.execute(
            sa.text(
                "INSERT INTO permission_state (contact_id, topic, channel, "
                "industry_list_since, basis_event_id) "
                "VALUES (7, '*', '*', '2026-01-01 00:00:00', 2)"
            )
        )
        db.session.commit()
        upgrade(revision="0018")
        row = db.session.execute(
            sa.text("SELECT customer_event_id, industry_list_event_id FROM permission_state")
        ).one()
        assert tuple(row) == (None, 1)
        downgrade(revision="0017")
        back = db.session.execute(sa.text("SELECT basis_event_id FROM permission_state"))
        assert back.scalar_one() == 1


def test_webhook_deliveries_move_to_changes_and_outlive_their_contact(tmp_path) -> None:
    """Migration 0020: delivered and failed deliveries stay as the log's
    history (old format, no change), pending ones are dropped (they would
    post the old format), and no delivery goes with its contact any more."""
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/w.db"})
    with app.app_context():
        from extensions import db

        upgrade(revision="0019")
        db.session.execute(
            sa.text(
                "INSERT INTO contact (id, email, language, created_at, updated_at) "
                "VALUES (7, 'old@kund.se', 'sv', '2020-01-01', '2020-01-01')"
            )
        )
        db.session.execute(
            sa.text(
                "INSERT INTO webhook_endpoint (id, url, secret, is_active, created_at) "
                "VALUES (1, 'https://crm.example.com/hooks', 'whsec_x', 1, '2026-01-01')"
            )
        )
        db.session.execute(
            sa.text(
                "INSERT INTO webhook_delivery (endpoint_id, contact_id, status, attempts, "
                "created_at) VALUES (1, 7, 'delivered', 1, '2026-01-01'), "
                "(1, 7, 'pending', 0, '2026-01-02'), (1, 7, 'failed', 3, '2026-01-03')"
            )
        )
        db.session.commit()
        upgrade(revision="heads")
        rows = db.session.execute(
            sa.text(
                "SELECT status, event_type, change_id, contact_id FROM webhook_delivery ORDER BY id"
            )
        ).all()
        assert [tuple(r) for r in rows] == [
            ("delivered", "decisions.changed", None, 7),
            ("failed", "decisions.changed", None, 7),
        ]
        events = db.session.execute(sa.text("SELECT event_types FROM webhook_endpoint")).scalar()
        assert events is None  # every event type
        db.session.execute(sa.text("DELETE FROM contact WHERE id = 7"))
        db.session.commit()
        left = db.session.execute(sa.text("SELECT count(*) FROM webhook_delivery")).scalar()
        assert left == 2
        downgrade(revision="0019")
        # Going back, the deliveries of contacts that are gone cannot point to them.
        assert db.session.execute(sa.text("SELECT count(*) FROM webhook_delivery")).scalar() == 0


def test_campaign_attribution_goes_down_and_up_with_a_campaigns_outbox_rows(tmp_path) -> None:
    """Migration 0031's downgrade drops its columns in place: rebuilding
    campaign would drop a table outbox_message's rows refer to (foreign keys
    are on) and stop half done."""
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/c.db"})
    with app.app_context():
        from extensions import db

        upgrade(revision="heads")
        db.session.execute(
            sa.text(
                "INSERT INTO contact (id, email, language, created_at, updated_at) "
                "VALUES (7, 'reader@kund.se', 'sv', '2020-01-01', '2020-01-01')"
            )
        )
        db.session.execute(
            sa.text(
                "INSERT INTO campaign (id, topic, channel, subject_sv, body_sv, subject_en, "
                "body_en, status, created_by, created_at, queued_count, segment_name) VALUES "
                "(3, 'newsletter', 'email', 'Hej', 'Hej!', 'Hi', 'Hi!', 'sent', 'cli:test', "
                "'2026-01-01', 1, 'Sweden')"
            )
        )
        db.session.execute(
            sa.text(
                "INSERT INTO outbox_message (id, idempotency_key, kind, contact_id, template, "
                "language, params, status, attempts, message_id, created_at, campaign_id) VALUES "
                "(11, 'campaign:3:7', 'marketing', 7, 'campaign', 'sv', '{}', 'sent', 1, "
                "'<m@kund.se>', '2026-01-01', 3)"
            )
        )
        db.session.commit()
        downgrade(revision="0030")
        inspector = sa.inspect(db.engine)
        assert "segment" not in inspector.get_table_names()
        assert "segment_name" not in {c["name"] for c in inspector.get_columns("campaign")}
        assert "campaign_id" not in {c["name"] for c in inspector.get_columns("consent_event")}
        kept = db.session.execute(sa.text("SELECT id, campaign_id FROM outbox_message")).all()
        assert [tuple(r) for r in kept] == [(11, 3)]
        upgrade(revision="heads")
        columns = {c["name"] for c in sa.inspect(db.engine).get_columns("campaign")}
        assert {"segment_id", "segment_name", "segment_args"} <= columns
        db.session.remove()


# Migration 0040's indexes for the audience's merged shape on SQLite: three
# that PostgreSQL never reads (dropped there by 0044), four it reads elsewhere.
SQLITE_ONLY = {
    "ix_permission_state_unsubscribed",
    "ix_permission_state_customer",
    "ix_contact_restricted",
}
ON_BOTH = {
    "ix_permission_state_consent",
    "ix_permission_state_objected",
    "ix_permission_state_industry_list",
    "ix_contact_hard_bounced",
}


@pytest.fixture
def fresh_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of the suite's kind, for a test that migrates it up and down."""
    if not database_url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path}/fresh.db"
        return
    url, drop = _postgres_database(database_url)
    yield url
    drop()


def _audience_rule_indexes(engine: sa.Engine) -> set[str]:
    inspector = sa.inspect(engine)
    found = {
        i["name"] for table in ("permission_state", "contact") for i in inspector.get_indexes(table)
    }
    return found & (SQLITE_ONLY | ON_BOTH)


# SQLAlchemy cannot reflect SQLite's expression indexes (lower(name)); the
# comparison leaves them out, as `flask db check` does, with this warning.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_three_audience_rule_indexes_are_kept_on_sqlite_only(fresh_database: str) -> None:
    """Migration 0044: PostgreSQL drops the three it never reads and gets them
    back going down; SQLite keeps all seven throughout. On both, the models
    agree with the migrated schema (what ``flask db check`` asks)."""
    app = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": fresh_database})
    with app.app_context():
        from extensions import db

        config = app.extensions["migrate"].migrate.get_config()
        upgrade(revision="heads")
        kept = SQLITE_ONLY | ON_BOTH if db.engine.dialect.name == "sqlite" else ON_BOTH
        assert _audience_rule_indexes(db.engine) == kept
        command.check(config)  # raises when the models and the schema differ
        downgrade(revision="0043")
        assert _audience_rule_indexes(db.engine) == SQLITE_ONLY | ON_BOTH
        upgrade(revision="heads")
        assert _audience_rule_indexes(db.engine) == kept
        command.check(config)
        db.engine.dispose()
