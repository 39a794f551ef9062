"""Small things every package needs from the database session.

A transaction that retries when a concurrent request won a race, an ``IN``
that stays one parameter on PostgreSQL, ``INSERT ... ON CONFLICT`` for either
database, and the choice of statements that commit one by one, made by the
route that wants it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from extensions import db

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def commit_retrying(work: Callable[[], T], attempts: int = 4) -> T:
    """Run ``work`` and commit; start again when a concurrent request won a race
    on a unique key (the same address posted by two forms at once)."""
    for attempt in range(attempts):
        try:
            result = work()
            db.session.commit()
            return result
        except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
            db.session.rollback()
            retriable = isinstance(exc, sa.exc.IntegrityError) or "locked" in str(exc)
            if not retriable or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def take_turns(name: str, table: sa.Table) -> None:
    """Make the transactions that call this with the same ``name`` go on one at a
    time from here until each commits or rolls back. Call it before reading
    what the rest of the transaction decides on (a count of emails sent).

    PostgreSQL: a transaction-level advisory lock on a number made from the
    name, so that others (other names, other tables) are not held up. SQLite
    has one write lock for the whole database: a write to ``table`` that
    changes nothing takes it now rather than at the transaction's first real
    write, so every read that follows sees what the previous holder committed.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(name.encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        return
    key_column = next(iter(table.primary_key.columns))
    db.session.execute(sa.update(table).where(sa.false()).values({key_column: key_column}))


def id_in(column: Any, ids: Sequence[int]) -> sa.ColumnElement[bool]:
    """``column IN ids`` for a batch of ids. On PostgreSQL it is ``= ANY(array)``: one
    parameter whatever the batch size, where a thousand placeholders would be
    compiled and parsed again for every batch."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, list(ids), type_=postgresql.ARRAY(sa.Integer)))
    return column.in_(list(ids))


def insert_for_dialect(table: sa.Table) -> Any:
    """INSERT with ON CONFLICT, which PostgreSQL and SQLite spell alike."""
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def autocommit_statements(view: F) -> F:
    """A route whose statements each commit on their own: for routes that read
    and then write only their audit entry (the permission check). It spares
    the transaction's BEGIN and COMMIT round trips, two of five per check on
    PostgreSQL. Put it above the route's access guard, so that the guard's
    own token lookup runs this way too. The connection gets its isolation
    level back when it returns to the pool."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def one_of(column: Any, values: list[str]) -> Any:
    """``column IN values`` as one parameter (a PostgreSQL array, a JSON array on
    SQLite), so a lookup of thousands of values costs no per-value binding."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(sa.String)))
    each = sa.func.json_each(sa.bindparam(None, json.dumps(values))).table_valued("value")
    return column.in_(sa.select(each.c.value))
