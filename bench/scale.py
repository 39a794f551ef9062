"""Ten million contacts on PostgreSQL (issue 25 item 4): the everyday operations
on a full database, each against a same-run baseline.

Data, built in SQL on the server (never through the app): ``CONTACTS``
contacts (``BENCH_SCALE_CONTACTS``, default 10,000,000), ten ledger events and
five activities per contact (100,000,000 and 50,000,000), spread as
``bench.views.generate`` spreads a real list (countries, companies, the
projection's consents, objections and unsubscribes, 1% suppressed, the
ledger in time order over five years), plus the activities, scattered over
each contact's life. Generation loads with the plain indexes dropped and the
foreign keys unchecked, then builds the indexes once (``bench.views``); the
tables stay logged (an UNLOGGED load turned LOGGED afterwards writes the
whole table to the WAL anyway, and logged tables' foreign keys cannot point
at unlogged ones).

The database is ``bench_scale_<contacts>`` on the configured server, dropped at the end
unless ``BENCH_SCALE_KEEP=1``; a kept database of the same size is reused by
the next run (generation is the slow part: see the rates in the section).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.__main__ import Context

TITLE = "Ten million contacts (issue 25)"
EVENTS_PER_CONTACT = 10
ACTIVITIES_PER_CONTACT = 5
SORT_MEMORY = "1GB"  # maintenance_work_mem of the index builds
ACTIVITY_KINDS = ("call", "email", "meeting", "visit", "order")


def _contacts(ctx: Context) -> int:
    if ctx.smoke:
        return 2_000
    return int(os.environ.get("BENCH_SCALE_CONTACTS", 10_000_000))


def _log(message: str) -> None:
    print(f"  scale {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _be_nice(conn: Any) -> None:
    """Lowest CPU priority for this connection's server process, and no parallel
    workers (they would run at normal priority): the machine is shared."""
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    with contextlib.suppress(OSError):  # another machine's server, or not ours to renice
        os.setpriority(os.PRIO_PROCESS, int(pid), 19)
    conn.execute(sa.text("SET max_parallel_maintenance_workers = 0"))
    conn.execute(sa.text("SET max_parallel_workers_per_gather = 0"))


# Generating -------------------------------------------------------------------------


def generate(engine: sa.Engine, contacts: int) -> dict[str, float]:
    """Fill the migrated, empty database; returns seconds per step."""
    from bench.views import _drop_plain_indexes
    from bench.views import generate as generate_views

    steps: dict[str, float] = {}
    with engine.begin() as conn:
        _be_nice(conn)
        started = time.perf_counter()
        _log(f"contacts, projection and {contacts * EVENTS_PER_CONTACT:,} ledger events")
        generate_views(conn, contacts, contacts * EVENTS_PER_CONTACT, sort_memory=SORT_MEMORY)
        steps["contacts, projection, ledger (with their indexes)"] = time.perf_counter() - started
    with engine.begin() as conn:
        _be_nice(conn)
        conn.execute(sa.text("SET LOCAL synchronous_commit = off"))
        conn.execute(sa.text(f"SET LOCAL maintenance_work_mem = '{SORT_MEMORY}'"))
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
        started = time.perf_counter()
        rebuild = _drop_plain_indexes(conn, ("activity",))
        _log(f"{contacts * ACTIVITIES_PER_CONTACT:,} activities")
        kinds = ", ".join(f"'{k}'" for k in ACTIVITY_KINDS)
        # Spread between the contact's creation and its last interaction (or
        # the two years after creation when it never interacted).
        conn.execute(
            sa.text(
                "INSERT INTO activity (contact_id, kind, occurred_at, author, note, created_at) "
                f"SELECT c.id, (ARRAY[{kinds}])[1 + (c.id + k) % {len(ACTIVITY_KINDS)}], "
                "c.created_at + (coalesce(c.last_interaction_at, c.created_at + interval '2 years') "
                f"- c.created_at) * k / {ACTIVITIES_PER_CONTACT}, "
                "'user:bench', 'Bench note ' || k, c.created_at "
                f"FROM contact AS c CROSS JOIN generate_series(1, {ACTIVITIES_PER_CONTACT}) AS k"
            )
        )
        steps["activities (insert)"] = time.perf_counter() - started
        started = time.perf_counter()
        for ddl in rebuild:
            conn.execute(sa.text(ddl))
        steps["activities (indexes)"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        _be_nice(conn)
        _log("vacuum analyze")
        # Sets the visibility map, as autovacuum would in time: index-only
        # scans and counts on a freshly loaded table otherwise visit every heap page.
        conn.execute(sa.text("VACUUM (ANALYZE)"))
    steps["vacuum analyze"] = time.perf_counter() - started
    return steps


def database_name(contacts: int) -> str:
    return f"bench_scale_{contacts}"


def _admin(ctx: Context, contacts: int) -> tuple[sa.Engine, sa.URL]:
    url = sa.make_url(ctx.database_url).set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    return admin, url.set(database=database_name(contacts))


def _stamp(contacts: int) -> str:
    return f"bench.scale contacts={contacts} complete"


def prepare(ctx: Context, contacts: int) -> tuple[str, dict[str, float] | None]:
    """The database's URL, generated now (with the seconds per step) or reused
    when a kept one of this size is there (``None``)."""
    from flask_migrate import upgrade

    from bench.retention import _app
    from extensions import db

    admin, url = _admin(ctx, contacts)
    name = database_name(contacts)
    rendered = url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        comment = conn.execute(
            sa.text(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"
            ),
            {"n": name},
        ).scalar()
        if comment == _stamp(contacts):
            _log(f"reusing {name} ({contacts:,} contacts)")
            admin.dispose()
            return rendered, None
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    app = _app(rendered)
    with app.app_context():
        upgrade(revision="heads")
        db.session.remove()
        steps = generate(db.engine, contacts)
        db.engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f"COMMENT ON DATABASE \"{name}\" IS '{_stamp(contacts)}'"))
    admin.dispose()
    return rendered, steps


def drop(ctx: Context, contacts: int) -> None:
    admin, _url = _admin(ctx, contacts)
    name = database_name(contacts)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _generate_only(contacts: int) -> None:
    """``python -m bench.scale generate N``: build (and keep) the database alone."""
    from bench.__main__ import DEFAULT_DATABASE

    ctx = Context(False, 1, os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE))
    started = time.perf_counter()
    _url, steps = prepare(ctx, contacts)
    for step, seconds in (steps or {}).items():
        _log(f"{step}: {seconds:.0f} s")
    _log(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if sys.argv[1:2] == ["generate"]:
        _generate_only(int(sys.argv[2]))
