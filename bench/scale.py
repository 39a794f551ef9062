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
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.__main__ import Context
from bench.http import Request, drive

TITLE = "A full database: millions of contacts (issue 25)"
EVENTS_PER_CONTACT = 10
ACTIVITIES_PER_CONTACT = 5
SORT_MEMORY = "1GB"  # maintenance_work_mem of the index builds
TOPIC = "newsletter"  # 35% consented by email (bench.views.CONSENTS)
AT = "2026-01-01 00:00:00"  # "now" for the audience's decisions, as in bench.views
DAYS = 5 * 365 + 1  # the days the list's creation dates span (bench.views.SPAN_S)
BATCH = 1000  # addresses per batch check, as in bench/http.py
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


def fill(url: str, contacts: int) -> dict[str, float]:
    """Migrate the empty database at ``url`` and generate its data."""
    from flask_migrate import upgrade

    from bench.retention import _app
    from extensions import db

    app = _app(url)
    with app.app_context():
        upgrade(revision="heads")
        db.session.remove()
        steps = generate(db.engine, contacts)
        db.engine.dispose()
    return steps


def prepare(ctx: Context, contacts: int) -> tuple[str, dict[str, float]]:
    """The database's URL and the seconds per step of its generation: now, or
    by an earlier run that kept it (``BENCH_SCALE_KEEP=1``), reused when the size is the same."""
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
        if comment and comment.startswith(_stamp(contacts)):
            _log(f"reusing {name} ({contacts:,} contacts)")
            admin.dispose()
            # The generation's times, as the run that generated it stored them.
            return rendered, json.loads(comment.split(" steps=", 1)[1])
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    steps = fill(rendered, contacts)
    with admin.connect() as conn:
        stamp = f"{_stamp(contacts)} steps={json.dumps(steps)}"
        conn.execute(sa.text(f"COMMENT ON DATABASE \"{name}\" IS '{stamp}'"))
    admin.dispose()
    return rendered, steps


def drop(ctx: Context, contacts: int) -> None:
    admin, _url = _admin(ctx, contacts)
    name = database_name(contacts)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# Measuring -------------------------------------------------------------------------------


def _email(g: int) -> str:
    """The address ``bench.views.generate`` gives contact ``g``."""
    return f"c{g}@d{g % 5000}.example"


# Draws one request (method, path, body) with the client thread's random numbers.
def _checks(ctx: Context, url: str, contacts: int) -> list[str]:
    from bench.retention import _app
    from bench.server import gunicorn
    from extensions import db
    from kernel.access import create_api_token

    app = _app(url)
    with app.app_context():
        _, token = create_api_token(f"bench-scale-{time.time_ns()}", "sales")
        audit_before = db.session.scalar(sa.text("SELECT count(*) FROM audit_entry"))
        db.session.remove()
        db.engine.dispose()
    seconds = 1.0 if ctx.smoke else float(os.environ.get("BENCH_SCALE_SECONDS", 10))
    connections = 2 if ctx.smoke else int(os.environ.get("BENCH_HTTP_CONNECTIONS", 8))
    rounds = ctx.repeat if ctx.smoke else max(ctx.repeat, 3)
    batch = 10 if ctx.smoke else BATCH

    def bare(rng: random.Random) -> tuple[str, str, str | None]:
        return "GET", f"/bench/bare/select/{rng.randint(1, contacts)}", None

    def single(rng: random.Random) -> tuple[str, str, str | None]:
        body = {"emails": [_email(rng.randint(1, contacts))], "topic": TOPIC}
        return "POST", "/api/v1/permissions/check", json.dumps(body)

    def many(rng: random.Random) -> tuple[str, str, str | None]:
        emails = [_email(rng.randint(1, contacts)) for _ in range(batch)]
        return "POST", "/api/v1/permissions/check", json.dumps({"emails": emails, "topic": TOPIC})

    cases = {
        "bare SELECT by primary key": (bare, None),
        "POST /api/v1/permissions/check, 1 address": (single, token),
        f"POST /api/v1/permissions/check, {batch:,} addresses": (many, token),
    }
    workers = os.cpu_count() or 2
    server = gunicorn(url, workers=workers, threads=4)
    try:
        for request, auth in cases.values():  # untimed warm-up
            drive(server.base, request, auth, min(seconds, 2.0), connections, timeout_s=60)
        probe = Context(ctx.smoke, rounds, ctx.database_url, ctx.machine)

        def action(request: Request, auth: str | None) -> Callable[[], dict[str, Any]]:
            return lambda: drive(server.base, request, auth, seconds, connections, timeout_s=60)

        results = probe.measure_in_turns(
            {label: action(request, auth) for label, (request, auth) in cases.items()}
        )
    finally:
        server.stop()
    with app.app_context():
        audit_after = db.session.scalar(sa.text("SELECT count(*) FROM audit_entry"))
        db.session.remove()
        db.engine.dispose()
    base, one, lots = results.values()
    checks = sum(d["requests"] for m in (one, lots) for d in m.details)
    tput = one.detail("rps") / base.detail("rps")
    per_second = lots.detail("rps") * batch
    lines = [
        "### Permission checks over HTTP",
        "",
        f"gunicorn, {workers} gthread workers of 4 threads, {connections} keep-alive "
        f"connections from a threaded Python client, {seconds:.0f} s per run, the three "
        f"endpoints in turns, {rounds} rounds (each after an untimed warm-up); every request "
        f"asks about contacts drawn at random from all {contacts:,}, so most reads miss "
        f"the cache. The baseline is bench/wsgi.py's bare primary-key SELECT in the same "
        f"server. Topic `{TOPIC}`.",
        "",
        "| endpoint | requests/s (median) | p50 | p99 | errors | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, m, ratio in (
        ("bare SELECT by primary key (random contact)", base, "1.00x"),
        (
            "single check (random address)",
            one,
            f"{tput:.2f}x throughput, {one.detail('p99_ms') / base.detail('p99_ms'):.2f}x p99",
        ),
        (
            f"batch check, {batch:,} random addresses",
            lots,
            f"{per_second:,.0f} addresses/s = {per_second / one.detail('rps'):.1f}x the single check",
        ),
    ):
        lines.append(
            f"| {label} | {m.detail('rps'):,.1f} | {m.detail('p50_ms'):.1f} ms "
            f"| {m.detail('p99_ms'):.1f} ms | {m.detail('errors', max)} | {ratio} |"
        )
    lines += [
        "",
        f"The audit trail grew by {audit_after - audit_before:,} rows for "
        f"{checks:,} timed check requests (plus the warm-up's): one row per request, "
        "whatever its number of addresses.",
        "",
    ]
    return lines


def _audience(url: str) -> list[str]:
    from datetime import UTC, datetime

    from bench.audience import BASELINE
    from bench.retention import _app
    from consent.audience import audience_size
    from consent.topics import current_policy
    from extensions import db

    app = _app(url)
    with app.app_context():
        policy = current_policy()
        topic = policy.topic(TOPIC)
        at = datetime.fromisoformat(AT).replace(tzinfo=UTC)

        def service() -> dict[str, Any]:
            size = audience_size(topic, "email", at, policy)
            db.session.remove()
            return {"count": size}

        def raw() -> dict[str, Any]:
            with db.engine.connect() as conn:
                return {"count": conn.execute(sa.text(BASELINE), {"topic": TOPIC}).scalar()}

        raw()  # the same warm cache for both
        probe = Context(False, 3, "", {})
        taken = probe.measure_in_turns({"raw count": raw, "audience_size": service})
        db.engine.dispose()
    base, mine = taken["raw count"], taken["audience_size"]
    return [
        "### Audience of one topic",
        "",
        "| what | median of 3 | rows | ratio |",
        "| --- | --- | --- | --- |",
        f"| raw `SELECT count(*)` of the consented rows (bench/audience.py's baseline) "
        f"| {base.median:.2f} s | {base.detail('count'):,} | 1.00x |",
        f"| `consent.audience.audience_size` ({TOPIC}, email; every rule of the policy) "
        f"| {mine.median:.2f} s | {mine.detail('count'):,} | {mine.ratio_to(base):.2f}x |",
        "",
    ]


def _retention(url: str, contacts: int) -> list[str]:
    from datetime import timedelta

    from bench.retention import _app
    from crm import retention
    from crm.retention.rules import RetentionPolicy, start_of_day
    from extensions import db

    # One rule, one year from the last interaction, not rounded to the year
    # end (the default rule is, and brings a whole year due on one day).
    policy = RetentionPolicy.from_mapping(
        {
            "retention": {
                "rules": [
                    {
                        "name": "crm-contacts",
                        "category": "contact",
                        "years": 1,
                        "counts_from": "last_interaction",
                        "action": "delete",
                    }
                ]
            }
        }
    )
    rule = policy.held_rules[0]
    # A day's worth: the list spans five years, so a daily run in the steady
    # state finds about contacts / 1826 due. The earliest days hold fewer (a
    # list just begun), so the run's anchor day is the one by which that many
    # had their last interaction.
    target = max(contacts // DAYS, 1)
    app = _app(url)
    with app.app_context():
        anchor = db.session.scalar(
            sa.text(
                "SELECT coalesce(last_interaction_at, created_at) FROM contact "
                "ORDER BY coalesce(last_interaction_at, created_at) OFFSET :n LIMIT 1"
            ),
            {"n": target - 1},
        )
        db.session.remove()
        as_of = rule.purge_on(anchor)
        before = start_of_day(rule.latest_due_anchor_day(as_of) + timedelta(days=1))

        def count_rows(conn: Any) -> dict[str, int]:
            return {
                table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("contact", "consent_event", "activity", "permission_state")
            }

        with db.engine.connect() as conn:
            _be_nice(conn)
            conn.execute(sa.text("SELECT 1"))
        # The baseline: one DELETE of the same contacts (the cascade takes
        # their ledger, projection and activities), timed, then rolled back.
        with db.engine.connect() as conn:
            start = time.perf_counter()
            deleted = conn.execute(
                sa.text(
                    "DELETE FROM contact WHERE last_interaction_at < :before "
                    "OR (last_interaction_at IS NULL AND created_at < :before)"
                ),
                {"before": before},
            ).rowcount
            raw_s = time.perf_counter() - start
            conn.rollback()
        with db.engine.connect() as conn:
            rows_before = count_rows(conn)
        start = time.perf_counter()
        record = retention.run(as_of, started_by="bench", policy=policy)
        run_s = time.perf_counter() - start
        purged = record.counts["crm-contacts"]["deleted"]
        batches = record.batches
        db.session.remove()
        with db.engine.connect() as conn:
            rows_after = count_rows(conn)
        db.engine.dispose()
    gone = {t: rows_before[t] - rows_after[t] for t in rows_before}
    return [
        "### A day's retention purge",
        "",
        f"One rule (contacts one year after their last interaction, not rounded to the year "
        f"end) run as on {as_of}: the contacts whose last interaction (or creation) falls "
        f"before {before:%Y-%m-%d}, about one steady-state day's worth ({contacts:,} / {DAYS}). "
        "The baseline is one `DELETE` of the same contacts in one transaction "
        "(timed, then rolled back), the cascade taking their ledger, projection and activities.",
        "",
        "| what | contacts | time | contacts/s | ratio |",
        "| --- | --- | --- | --- | --- |",
        f"| one raw DELETE | {deleted:,} | {raw_s:.2f} s | {deleted / raw_s:,.0f} | 1.00x |",
        f"| `crm.retention.run` ({batches} batches) | {purged:,} | {run_s:.2f} s "
        f"| {purged / run_s:,.0f} | {run_s / raw_s:.2f}x |",
        "",
        "Rows the run removed: " + ", ".join(f"{table} {n:,}" for table, n in gone.items()) + ".",
        "",
    ]


def _import(url: str, rows: int) -> list[str]:
    from bench.imports import _baseline_copy, _run_child, write_csv

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "import.csv"
        write_csv(path, rows)
        setup, copy = _baseline_copy(path, url)
        setup()
        start = time.perf_counter()
        copied = copy()["rows"]
        copy_s = time.perf_counter() - start
        child = _run_child(path, url)
    admin = sa.create_engine(
        sa.make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_baseline"))
    admin.dispose()
    first, again = child["first"], child["again"]
    return [
        "### A CSV import into the full database",
        "",
        f"bench/imports.py's file of {rows:,} rows (20,000 companies, one row in 1,000 broken) "
        "imported as `industry_list` by `consent.imports.import_contacts` in a child process, "
        "into this database; then the same file again (nothing changes). The baseline is "
        "bench/imports.py's: the file's addresses and names `COPY`'d into a bare table "
        "`(id, email UNIQUE, name)` in the same database.",
        "",
        "| what | rows | time | rows/s | ratio to COPY |",
        "| --- | --- | --- | --- | --- |",
        f"| COPY into a bare table | {copied:,} | {copy_s:.1f} s | {copied / copy_s:,.0f} | 1.00 |",
        f"| import, first run | {first['created']:,} created, {first['rejected']:,} rejected "
        f"| {first['seconds']:.1f} s | {rows / first['seconds']:,.0f} "
        f"| {copy_s / first['seconds']:.3f}x |",
        f"| import, the same file again | {again['unchanged']:,} unchanged "
        f"| {again['seconds']:.1f} s | {rows / again['seconds']:,.0f} "
        f"| {copy_s / again['seconds']:.3f}x |",
        "",
        f"Peak memory of the importing process: {child['peak_rss_kib'] / 1024:.0f} MiB.",
        "",
    ]


def _sizes(url: str, contacts: int) -> tuple[list[str], dict[str, int]]:
    engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT c.relname, c.reltuples::bigint, pg_table_size(c.oid), "
                "pg_indexes_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = current_schema() "
                "ORDER BY pg_total_relation_size(c.oid) DESC"
            )
        ).all()
    engine.dispose()
    total_table = sum(r[2] for r in found)
    total_index = sum(r[3] for r in found)
    mib = 1024 * 1024
    lines = [
        "| table | rows (estimate) | table | indexes | per contact |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, rows, table, index in found[:8]:
        lines.append(
            f"| {name} | {max(rows, 0):,} | {table / mib:,.0f} MiB | {index / mib:,.0f} MiB "
            f"| {(table + index) / contacts:,.0f} B |"
        )
    lines.append(
        f"| **all {len(found)} tables** | | {total_table / mib:,.0f} MiB "
        f"| {total_index / mib:,.0f} MiB | **{(total_table + total_index) / contacts:,.0f} B** |"
    )
    return lines, {
        "table": total_table,
        "index": total_index,
        **{name: table + index for name, _rows, table, index in found},
    }


PARTS = ("disk", "checks", "audience", "retention", "import")


def _generate_only(contacts: int) -> None:
    """``python -m bench.scale generate N``: build (and keep) the database alone."""
    from bench.__main__ import DEFAULT_DATABASE

    ctx = Context(False, 1, os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE))
    started = time.perf_counter()
    _url, steps = prepare(ctx, contacts)
    for step, seconds in steps.items():
        _log(f"{step}: {seconds:.0f} s")
    _log(f"total {time.perf_counter() - started:.0f} s")


@contextlib.contextmanager
def _database(ctx: Context, contacts: int) -> Iterator[tuple[str, dict[str, float]]]:
    """The smoke run's scratch database (a fresh name each time, as tests may run
    side by side), or ``bench_scale_<contacts>``: dropped afterwards unless kept."""
    if ctx.smoke:
        with ctx.fresh_database() as url:
            yield url, fill(url, contacts)
        return
    url, steps = prepare(ctx, contacts)
    try:
        yield url, steps
    finally:
        if os.environ.get("BENCH_SCALE_KEEP") != "1":
            drop(ctx, contacts)


def _parts() -> set[str]:
    wanted = os.environ.get("BENCH_SCALE_PARTS", ",".join(PARTS))
    return {p.strip() for p in wanted.split(",") if p.strip()}


def run(ctx: Context) -> list[str]:
    contacts = _contacts(ctx)
    if ctx.database_url.startswith("sqlite"):
        return ["PostgreSQL only (`--database-url postgresql://...`): skipped on SQLite.", ""]
    import_rows = 200 if ctx.smoke else int(os.environ.get("BENCH_SCALE_IMPORT_ROWS", 1_000_000))
    parts = _parts()
    lines = [__doc__.split("\n\n", 1)[1].split("The database is")[0].strip(), ""]
    with _database(ctx, contacts) as (url, steps):
        engine = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
        with engine.connect() as conn:
            counted = conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM contact), (SELECT count(*) FROM consent_event), "
                    "(SELECT count(*) FROM activity), (SELECT count(*) FROM permission_state), "
                    "version()"
                )
            ).one()
        engine.dispose()
        version = str(counted[4]).split(" on ")[0]
        lines += [
            f"{counted[0]:,} contacts, {counted[1]:,} ledger events, {counted[2]:,} activities, "
            f"{counted[3]:,} projection rows on {version}.",
            "",
        ]
        if steps:
            total = sum(steps.values())
            lines += [
                "### Generation",
                "",
                "| step | time | rate |",
                "| --- | --- | --- |",
            ]
            rows = {
                "contacts, projection, ledger (with their indexes)": counted[1],
                "activities (insert)": counted[2],
                "activities (indexes)": counted[2],
            }
            for step, seconds in steps.items():
                unit = "ledger events" if step.startswith("contacts") else "activities"
                rate = (
                    f"{rows[step] / seconds:,.0f} {unit}/s" if step in rows and seconds > 0 else ""
                )
                lines.append(f"| {step} | {seconds:,.0f} s | {rate} |")
            lines += [
                f"| **total** | **{total:,.0f} s** | {counted[0] / total:,.0f} contacts/s |",
                "",
                "Under `nice -n 19` (the script and its server process) on a machine shared "
                "with other work: a quiet machine is faster.",
                "",
            ]
        sizes: dict[str, int] | None = None
        if "disk" in parts:
            table, sizes = _sizes(url, counted[0])
            lines += [
                "### Disk per contact",
                "",
                "`pg_table_size` (heap and TOAST) and `pg_indexes_size` of every table, after "
                "generation and `VACUUM ANALYZE`, divided by the number of contacts "
                "(the largest eight tables shown).",
                "",
                *table,
                "",
            ]
        if "checks" in parts:
            lines += _checks(ctx, url, counted[0])
        if "audience" in parts:
            lines += _audience(url)
        if "retention" in parts:
            lines += _retention(url, counted[0])
        if "import" in parts:
            lines += _import(url, import_rows)
            if sizes is not None:
                _table, after = _sizes(url, counted[0])
                grown = after["table"] + after["index"] - sizes["table"] - sizes["index"]
                lines += [
                    f"Disk after the import: {grown / 1024 / 1024:+,.0f} MiB for "
                    f"{import_rows:,} rows, {grown / import_rows:,.0f} B per imported contact "
                    "(tables and indexes; an imported contact has one ledger event and no "
                    "activities).",
                    "",
                ]
            if not ctx.smoke:
                # No longer the generated data: the next run must not reuse it.
                admin, _url = _admin(ctx, contacts)
                with admin.connect() as conn:
                    conn.execute(
                        sa.text(f'COMMENT ON DATABASE "{database_name(contacts)}" IS NULL')
                    )
                admin.dispose()
    return lines


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if sys.argv[1:2] == ["generate"]:
        _generate_only(int(sys.argv[2]))
