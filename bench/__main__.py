"""``python -m bench``: run the benchmarks and write their figures to docs/benchmarks.md.

A tiny framework, on purpose:

- a benchmark is a module listed in ``BENCHMARKS`` with ``TITLE`` and a
  function ``run(ctx: Context) -> list[str]`` returning its section of
  Markdown; it measures with ``ctx.measure(...)``, which runs an action
  ``ctx.repeat`` times (a fresh untimed ``setup`` before each) and keeps
  every time, so the section reports medians;
- every figure that matters is a ratio to a baseline measured in the same
  run on the same machine (``Measurement.ratio_to``), so numbers from
  different machines stay comparable;
- the output file keeps one section per benchmark between
  ``<!-- bench:NAME -->`` markers: running one benchmark replaces only its
  own section, with the machine and the date at its top.

``--smoke`` runs every benchmark on tiny data (seconds; the test suite does
this so the benchmarks never rot) and writes to bench/results/ instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# name -> module; add a benchmark by adding a line here.
BENCHMARKS = {
    "retention": "bench.retention",
    "http": "bench.http",
    "audience": "bench.audience",
    "imports": "bench.imports",
    "sending": "bench.sending",
    "bounces": "bench.bounces",
    "feed": "bench.feed",
    "views": "bench.views",
    "connectors": "bench.connector_sync",
    "scale": "bench.scale",
}
# Left out of a full run unless named (``python -m bench scale``): an hour and
# more of generation. ``--smoke`` runs every benchmark, these too.
NOT_BY_DEFAULT = {"scale"}
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Measurement:
    label: str
    seconds: list[float] = field(default_factory=list)
    # Whatever the action returned, once per repetition (row counts, latencies...).
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def ratio_to(self, baseline: Measurement) -> float:
        return self.median / baseline.median

    def take(self, action: Callable[[], dict[str, Any] | None]) -> None:
        """Time one run of ``action`` and keep its time and what it returned."""
        start = time.perf_counter()
        details = action() or {}
        self.seconds.append(time.perf_counter() - start)
        self.details.append(details)
        print(f"  {self.label} #{len(self.seconds)}: {self.seconds[-1]:.2f} s", file=sys.stderr)

    def detail(self, key: str, pick: Callable[[list[Any]], Any] = statistics.median) -> Any:
        return pick([d[key] for d in self.details if key in d])


@dataclass
class Context:
    smoke: bool
    repeat: int
    database_url: str
    machine: dict[str, str] = field(default_factory=dict)

    def measure(
        self,
        label: str,
        action: Callable[[], dict[str, Any] | None],
        setup: Callable[[], None] | None = None,
    ) -> Measurement:
        """Time ``action`` ``repeat`` times, each after an untimed ``setup``."""
        result = Measurement(label)
        for _ in range(self.repeat):
            if setup is not None:
                setup()
            result.take(action)
        return result

    def measure_in_turns(
        self, actions: dict[str, Callable[[], dict[str, Any] | None]]
    ) -> dict[str, Measurement]:
        """Time each action ``repeat`` times, taking turns (A B C, A B C...), so that
        a slow spell of a shared machine falls on every action alike instead of on
        the one that happened to run then."""
        results = {label: Measurement(label) for label in actions}
        for _ in range(self.repeat):
            for label, action in actions.items():
                results[label].take(action)
        return results

    def databases(self) -> list[str]:
        """The configured server, and SQLite too when that is PostgreSQL (not in smoke runs)."""
        if self.smoke or self.database_url.startswith("sqlite"):
            return [self.database_url]
        return [self.database_url, "sqlite:///"]

    def on(self, database_url: str, repeat: int | None = None) -> Context:
        """This context for one of ``databases()``."""
        return Context(self.smoke, repeat or self.repeat, database_url, self.machine)

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new, empty database on the configured server (dropped afterwards), or
        a SQLite file for a ``sqlite:`` URL."""
        import tempfile
        import uuid

        import sqlalchemy as sa

        url = sa.make_url(self.database_url)
        if url.drivername.startswith("sqlite"):
            with tempfile.TemporaryDirectory() as folder:
                yield f"sqlite:///{folder}/bench.db"
            return
        url = url.set(drivername="postgresql+psycopg")
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        name = f"consent_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def database_version() -> str:
    """The current app's database server and version, as it reports itself."""
    import sqlalchemy as sa

    from extensions import db

    return str(
        db.session.scalar(
            sa.text(
                "SELECT version()"
                if db.engine.dialect.name == "postgresql"
                else "SELECT 'SQLite ' || sqlite_version()"
            )
        )
    )


def describe_machine() -> dict[str, str]:
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{total_kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "os": platform.platform(),
        "cpu": f"{cpu} ({os.cpu_count()} logical CPUs)",
        "memory": memory,
        "python": platform.python_version(),
    }


def write_sections(path: Path, sections: dict[str, list[str]]) -> None:
    """Replace (or append) each benchmark's section, keeping the others."""
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nWritten by `python -m bench` (`make bench`); see bench/__main__.py.\n"
    )
    for name, lines in sections.items():
        block = f"<!-- bench:{name} -->\n" + "\n".join(lines).rstrip() + f"\n<!-- /bench:{name} -->"
        pattern = re.compile(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _match, block=block: block, text)
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names",
        nargs="*",
        help=f"benchmarks to run (default all but {', '.join(sorted(NOT_BY_DEFAULT))}: "
        f"{', '.join(n for n in BENCHMARKS if n not in NOT_BY_DEFAULT)})",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, seconds; for the test suite"
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions (default 3; 1 with --smoke)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE),
        help="server to create a scratch database on (BENCH_DATABASE_URL), or sqlite:///",
    )
    parser.add_argument("--output", type=Path, default=None, help="Markdown file to update")
    args = parser.parse_args(argv)
    names = args.names or [n for n in BENCHMARKS if args.smoke or n not in NOT_BY_DEFAULT]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    output = args.output or (
        ROOT / "bench" / "results" / "benchmarks-smoke.md"
        if args.smoke
        else ROOT / "docs" / "benchmarks.md"
    )
    ctx = Context(
        smoke=args.smoke,
        repeat=args.repeat or (1 if args.smoke else 3),
        database_url=args.database_url,
        machine=describe_machine(),
    )
    sections = {}
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        print(f"== {name}: {module.TITLE}", file=sys.stderr)
        started = datetime.now(UTC)
        body = module.run(ctx)
        header = [
            f"## {module.TITLE}",
            "",
            f"Run {started:%Y-%m-%d %H:%M} UTC{' (smoke: tiny data, not a result)' if ctx.smoke else ''}"
            f", median of {ctx.repeat}; machine: {ctx.machine['cpu']}, {ctx.machine['memory']}, "
            f"{ctx.machine['os']}, Python {ctx.machine['python']}.",
            "",
        ]
        sections[name] = header + body
    write_sections(output, sections)
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
