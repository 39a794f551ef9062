"""Import throughput and peak memory against same-run baselines.

    .venv/bin/python -m bench.imports --rows 1000000 [--database-url postgresql://...]

Generates a CSV of ROWS contacts (one row in a thousand broken), runs
``flask contacts import`` on a fresh database in a child process, and prints
its wall time and peak RSS (ru_maxrss of the child), then the baseline on the
same machine: the same addresses and names written with SQLite
``executemany`` (or PostgreSQL ``COPY``) into a bare table, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HEADER = "email,name,company,organisation number,country,language,last interaction date\n"


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(rows):
            if i % 1000 == 999:
                out.write(f"broken-{i},Broken {i},,,SE,,\n")
                continue
            company = i % 20_000
            out.write(
                f"person{i}@company{company}.se,Person {i},Company {company} AB,"
                f"556{company:07d},SE,sv,2025-0{1 + i % 9}-1{i % 9}\n"
            )


def run_import(path: Path, database_url: str) -> tuple[float, int, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CONSENT_ENV": "development",
        "INPROCESS_WORKER": "0",
    }
    root = Path(__file__).resolve().parent.parent
    flask = [sys.executable, "-m", "flask", "--app", "app"]
    subprocess.run([*flask, "db", "upgrade"], env=env, cwd=root, check=True, capture_output=True)
    started = time.perf_counter()
    result = subprocess.run(
        [*flask, "contacts", "import", str(path), "--basis", "industry_list", "--source", "bench"],
        env=env,
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = "\n".join(line for line in result.stdout.splitlines() if not line.startswith("  row"))
    return elapsed, peak_kib, summary


def baseline_sqlite(path: Path, work: Path) -> float:
    rows = []
    with path.open(encoding="utf-8") as handle:
        next(handle)
        rows = [tuple(line.split(",", 2)[:2]) for line in handle]
    conn = sqlite3.connect(work / "baseline.db")
    conn.execute("CREATE TABLE contact (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT)")
    started = time.perf_counter()
    conn.executemany("INSERT INTO contact (email, name) VALUES (?, ?)", rows)
    conn.commit()
    return time.perf_counter() - started


def baseline_copy(path: Path, url: str) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE contact (id serial PRIMARY KEY, email text UNIQUE, name text)"
        )
        started = time.perf_counter()
        with (
            conn.cursor().copy("COPY contact (email, name) FROM STDIN") as copy,
            path.open(encoding="utf-8") as handle,
        ):
            next(handle)
            for line in handle:
                copy.write_row(line.split(",", 2)[:2])
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="postgresql://... (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "contacts.csv"
        write_csv(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        if args.database_url:
            import psycopg

            name = f"bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(args.database_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            base = args.database_url.rsplit("/", 1)[0]
            url = f"{base}/{name}"
            try:
                elapsed, peak, summary = run_import(path, url)
                baseline = baseline_copy(path, url)
            finally:
                with psycopg.connect(args.database_url, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            label = "PostgreSQL COPY"
        else:
            elapsed, peak, summary = run_import(path, f"sqlite:///{work / 'bench.db'}")
            baseline = baseline_sqlite(path, work)
            label = "SQLite executemany"
    print(summary)
    print(f"file: {args.rows} rows, {size_mb:.0f} MB")
    print(
        f"import: {elapsed:.1f} s ({args.rows / elapsed:,.0f} rows/s), peak RSS {peak / 1024:.0f} MiB"
    )
    print(f"baseline ({label}, email and name only): {baseline:.1f} s")
    print(f"ratio (baseline time / import time): {baseline / elapsed:.3f}")


if __name__ == "__main__":
    main()
