"""The per-test cleanup of tests/conftest.py (``_clean_database``).

On PostgreSQL it truncates only the tables a test wrote, found by their heap
files and sequences (docs/testing.md). These two tests run in this order: the
first writes two rows and deletes them again, leaving a table that is
empty but written, and draws an id of another table without a row; the second checks that the next test starts
as from a fresh database: no rows anywhere, ids from 1 again, and on
PostgreSQL every table's file empty (so rows come back in insertion order).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from extensions import db
from kernel.access import create_api_token
from kernel.models import ApiToken
from tests.conftest import count_rows


def test_a_test_writes_rows_deletes_some_and_draws_ids(app: Any) -> None:
    with app.app_context():
        first, _ = create_api_token("first", "admin")
        second, _ = create_api_token("second", "admin")
        assert second.id == first.id + 1
        db.session.execute(sa.delete(ApiToken))
        if db.engine.dialect.name == "postgresql":
            # An id drawn from another table's sequence, no row written.
            db.session.execute(sa.text("SELECT nextval(pg_get_serial_sequence('contact', 'id'))"))
        db.session.commit()
        db.session.remove()
    assert count_rows(app)["api_token"] == 0


def test_the_next_test_starts_from_empty_tables_and_fresh_ids(app: Any) -> None:
    assert set(count_rows(app).values()) == {0}
    with app.app_context():
        token, _ = create_api_token("again", "admin")
        assert token.id == 1
        if db.engine.dialect.name == "postgresql":
            db.session.rollback()
            sizes = db.session.execute(
                sa.text(
                    "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname = ANY(:names)"
                    " AND pg_relation_size(oid) > 0"
                ),
                {"names": [t.name for t in db.metadata.sorted_tables if t.name != "api_token"]},
            ).scalars()
            assert list(sizes) == []
            called = db.session.execute(
                sa.text("SELECT sequencename FROM pg_sequences WHERE last_value IS NOT NULL")
            ).scalars()
            assert list(called) == ["api_token_id_seq"]
        db.session.remove()
