"""CSV import of ``ROWS`` contacts against a bare bulk load of the same file.

The file has ``ROWS`` rows (``BENCH_IMPORT_ROWS``, default 1,000,000; 2,000 with
``--smoke``), 20,000 companies, one row in a thousand with a broken address.
Each repetition imports it as ``industry_list`` into a fresh database in a
child process (``python -m bench.imports child``), which reports the time of
``consent.imports.import_contacts`` alone and its own peak RSS (``VmHWM``);
then the same child imports the file a second time (the idempotent re-run).

The baseline is the same file's addresses and names written into a bare
table ``(id, email UNIQUE, name)``: PostgreSQL ``COPY`` from the file,
SQLite one ``executemany`` of the rows read beforehand. The bars (issue 25,
which lowered issue 7's 0.1x and 0.3x after the floor measurement): the
import takes at most ~14x the COPY (ratio >= 0.07) on PostgreSQL and at most
10x the executemany (ratio >= 0.1) on SQLite, in under 300 MB.

When a bar is not met, the section shows what stands in the way: the
import's statements by time and the top functions by cumulative time under
cProfile, from one more run on ``min(ROWS, BENCH_IMPORT_PROFILE_ROWS)`` rows
(default 200,000).
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.__main__ import ROOT, Context, Measurement, database_version

TITLE = "CSV import (issues 7 and 25)"
# No last interaction date: an industry list cannot carry one (docs/rules.md X16).
HEADER = "email,name,company,organisation number,country,language\n"
BARS = {"postgresql": 0.07, "sqlite": 0.1}
MEMORY_BAR_MIB = 300


def _rows(ctx: Context) -> int:
    if ctx.smoke:
        return 2_000
    return int(os.environ.get("BENCH_IMPORT_ROWS", 1_000_000))


def _profile_rows(ctx: Context, rows: int) -> int:
    return min(rows, int(os.environ.get("BENCH_IMPORT_PROFILE_ROWS", 200_000)))


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(rows):
            if i % 1000 == 999:
                out.write(f"broken-{i},Broken {i},,,SE,\n")
                continue
            company = i % 20_000
            out.write(
                f"person{i}@company{company}.se,Person {i},Company {company} AB,"
                f"556{company:07d},SE,sv\n"
            )


# The child: one import, timed from inside ---------------------------------------------


def _child(path: str, url: str, profile: bool) -> None:
    from bench.retention import _app
    from consent.imports import import_contacts
    from kernel.access import cli_actor

    app = _app(url)
    out: dict[str, Any] = {}
    with app.app_context():
        for run in ("first", "again"):
            statements: dict[str, list[float]] = {}
            profiler = None
            if profile:
                import cProfile

                from extensions import db

                profiler = cProfile.Profile()
                _time_statements(db.engine, statements)
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            with open(path, "rb") as stream:
                report = import_contacts(cli_actor(), stream, basis="industry_list", source="bench")
            if profiler is not None:
                profiler.disable()
            out[run] = {
                "seconds": time.perf_counter() - started,
                "created": report.created,
                "unchanged": report.unchanged,
                "rejected": report.rejected,
                "status": report.status,
            }
            if profiler is not None:
                out["profile"] = _top_functions(profiler)
                out["statements"] = sorted(
                    ((sum(t), len(t), sql) for sql, t in statements.items()), reverse=True
                )[:8]
                break  # one profiled run is enough
    out["peak_rss_kib"] = _peak_rss_kib()
    print(json.dumps(out))


def _peak_rss_kib() -> int:
    """This process's peak resident memory.

    Linux's ``ru_maxrss`` is no good here: a child started from a large parent
    inherits the parent's high-water mark across exec (the bench process held
    the SQLite baseline's million rows, so the import child reported 308 MiB
    while it never used more than 120). ``VmHWM`` belongs to the child's own
    address space.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _time_statements(engine: Any, statements: dict[str, list[float]]) -> None:
    import sqlalchemy as sa

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        key = " ".join(statement.split())[:90]
        statements.setdefault(key, []).append(time.perf_counter() - conn.info["bench_started"])


def _top_functions(profiler: Any, count: int = 15) -> list[tuple[float, float, int, str]]:
    import pstats

    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.items():
        where = filename.replace(str(ROOT) + "/", "")
        where = where.split("site-packages/")[-1]
        rows.append((cumulative, own, calls, f"{where}:{line}({name})"))
    rows.sort(reverse=True)
    return rows[:count]


def _run_child(path: Path, url: str, *, profile: bool = False) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.imports", "child", str(path), url]
        + (["--profile"] if profile else []),
        cwd=ROOT,
        env={**os.environ, "INPROCESS_WORKER": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the import child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# Baselines ---------------------------------------------------------------------------------


def _baseline_sqlite(path: Path, folder: Path) -> tuple[Any, Any]:
    state: dict[str, Any] = {}

    def setup() -> None:
        with path.open(encoding="utf-8") as handle:
            next(handle)
            state["rows"] = [tuple(line.split(",", 2)[:2]) for line in handle]
        target = folder / "baseline.db"
        target.unlink(missing_ok=True)
        state["conn"] = sqlite3.connect(target)
        state["conn"].execute(
            "CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT)"
        )

    def action() -> dict[str, Any]:
        conn = state["conn"]
        conn.executemany("INSERT INTO contact (email, name) VALUES (?, ?)", state["rows"])
        conn.commit()
        conn.close()
        return {"rows": len(state.pop("rows"))}

    return setup, action


def _baseline_copy(path: Path, url: str) -> tuple[Any, Any]:
    import psycopg
    import sqlalchemy as sa

    dsn = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    state: dict[str, Any] = {}

    def setup() -> None:
        conn = psycopg.connect(dsn, autocommit=True)
        conn.execute("DROP TABLE IF EXISTS bench_baseline")
        conn.execute(
            "CREATE TABLE bench_baseline (id serial PRIMARY KEY, email text UNIQUE, name text)"
        )
        state["conn"] = conn

    def action() -> dict[str, Any]:
        conn = state.pop("conn")
        rows = 0
        with (
            conn.cursor().copy("COPY bench_baseline (email, name) FROM STDIN") as copy,
            path.open(encoding="utf-8") as handle,
        ):
            next(handle)
            for line in handle:
                copy.write_row(line.split(",", 2)[:2])
                rows += 1
        conn.close()
        return {"rows": rows}

    return setup, action


# The section ---------------------------------------------------------------------------------


def _prepare(url: str) -> str:
    """Build the schema with the real migrations; the server's version string."""
    from flask_migrate import upgrade

    from bench.retention import _app
    from extensions import db

    app = _app(url)
    with app.app_context():
        upgrade(revision="heads")
        version = database_version()
        db.session.remove()
        db.engine.dispose()
    return str(version).split(" on ")[0].split(" (")[0]


def run(ctx: Context) -> list[str]:
    rows = _rows(ctx)
    lines = [
        f"A CSV file of {rows:,} contacts (20,000 companies, one row in 1,000 with a broken "
        "address) imported as `industry_list` into a fresh database, in a child process: "
        "the time of `consent.imports.import_contacts` alone (every row validated and "
        "normalised, suppression checked, contacts, companies, ledger events and "
        "projection written, 10,000 rows per transaction). Baseline: the same file's "
        "addresses and names into a bare table `(id, email UNIQUE, name)`, PostgreSQL "
        "`COPY` / SQLite one `executemany`. Ratio = baseline time / import time. "
        "Re-run: the same file imported again (every row unchanged, nothing written). "
        "Peak RSS: the child's own high-water mark (`VmHWM`).",
        "",
        "| database | import (median) | rows/s | baseline (median) | ratio | bar | peak RSS "
        "| re-run | created / rejected |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    obstacles: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "contacts.csv"
        write_csv(path, rows)
        sample = folder / "sample.csv"
        write_csv(sample, _profile_rows(ctx, rows))
        for root in ctx.databases():
            probe = ctx.on(root, repeat=1)
            mine = Measurement("import")
            base = Measurement("baseline")
            version = ""
            for _ in range(ctx.repeat):
                with probe.fresh_database() as url:
                    version = _prepare(url)
                    run_once = probe.measure(
                        "import (child)", lambda url=url: _run_child(path, url)
                    )
                    result = run_once.details[0]
                    mine.seconds.append(result["first"]["seconds"])
                    mine.details.append(result)
                    postgres = url.startswith("postgresql")
                    setup, action = (
                        _baseline_copy(path, url) if postgres else _baseline_sqlite(path, folder)
                    )
                    measured = probe.measure("baseline", action, setup)
                    base.seconds += measured.seconds
                    base.details += measured.details
            dialect = "postgresql" if postgres else "sqlite"
            ratio = base.median / mine.median
            peak = max(d["peak_rss_kib"] for d in mine.details) / 1024
            bar = BARS[dialect]
            met = ratio >= bar and peak < MEMORY_BAR_MIB
            first = mine.details[0]["first"]
            again = statistics.median([d["again"]["seconds"] for d in mine.details])
            lines.append(
                f"| {version} | {mine.median:.1f} s | {rows / mine.median:,.0f} "
                f"| {base.median:.2f} s | {ratio:.3f}x | >= {bar}x, < {MEMORY_BAR_MIB} MB: "
                f"{'met' if met else '**not met**'} | {peak:.0f} MiB | {again:.1f} s "
                f"| {first['created']:,} / {first['rejected']:,} |"
            )
            if not met and not ctx.smoke:
                obstacles += _obstacle(probe, sample, version, ratio, bar, peak)
    lines += [
        "",
        "Expected: 999 rows in 1,000 created, 1 in 1,000 rejected with its row number; "
        "the re-run reports every row unchanged.",
    ]
    return lines + obstacles


def _obstacle(
    probe: Context, sample: Path, version: str, ratio: float, bar: float, peak: float
) -> list[str]:
    """What stands in the way, from one profiled import of the sample."""
    with probe.fresh_database() as url:
        _prepare(url)
        result = _run_child(sample, url, profile=True)
    rows = sum(1 for _ in sample.open(encoding="utf-8")) - 1
    seconds = result["first"]["seconds"]
    lines = [
        "",
        f"### What stands in the way on {version} (ratio {ratio:.3f}x, bar {bar}x; "
        f"peak {peak:.0f} MiB)",
        "",
        f"One more import of {rows:,} rows under cProfile (which slows Python code more "
        f"than the database): {seconds:.1f} s. Statements by total time:",
        "",
        "| total | executions | statement |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {total:.2f} s | {n} | `{sql}` |" for total, n, sql in result["statements"]]
    lines += [
        "",
        "Top functions by cumulative time:",
        "",
        "| cumulative | own | calls | function |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {cumulative:.2f} s | {own:.2f} s | {calls:,} | `{name}` |"
        for cumulative, own, calls, name in result["profile"]
    ]
    return lines


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "child":
        sys.path.insert(0, str(ROOT))
        _child(sys.argv[2], sys.argv[3], "--profile" in sys.argv[4:])
    else:
        sys.exit("usage: python -m bench imports  (this module's own entry is for its child)")
