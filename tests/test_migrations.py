"""The migrations build the schema on an empty database and carry data forward."""

from __future__ import annotations

import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from app import create_app
from tests.conftest import TEST_CONFIG


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
