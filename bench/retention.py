"""Retention purge at scale: the batched run against one raw DELETE of the same rows,
while a web server answers permission requests.

Data: ``CONTACTS`` due contacts with ``ACTIVITIES_PER_CONTACT`` activities each
(5,000,000 activity rows for 500,000 contacts), plus ``KEPT`` recent contacts
that the permission API is asked about during the purge. The purge is
``crm.retention.run`` with the default rules and batch size; the baseline is a
single ``DELETE FROM contact WHERE ...`` (the cascade takes the activities) in
one transaction. Both are timed after the same untimed reload, on PostgreSQL and
then on SQLite.
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.__main__ import Context, database_version
from bench.server import SECRET, SUPPRESSION_KEY, WebServer, werkzeug

TITLE = "Retention purge (issues 5 and 7)"
ACTIVITIES_PER_CONTACT = 10
AS_OF = date(2025, 1, 1)


def _sizes(ctx: Context) -> tuple[int, int]:
    """(due contacts, kept contacts); BENCH_RETENTION_CONTACTS scales a trial run."""
    if ctx.smoke:
        return 200, 20
    return int(os.environ.get("BENCH_RETENTION_CONTACTS", 500_000)), 1_000


def _app(url: str) -> Any:
    os.environ.setdefault("CONSENT_ENV", "testing")
    from app import create_app

    # Each purged contact is journaled (crm.erasure_journal), part of the timed
    # work; a scratch file, so that repeated runs do not grow instance/.
    journal = Path(tempfile.gettempdir()) / "bench-erasure-journal.jsonl"
    journal.unlink(missing_ok=True)
    return create_app(
        {
            "CONSENT_ENV": "testing",
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": SECRET,
            "SUPPRESSION_KEY": SUPPRESSION_KEY,
            "ERASURE_JOURNAL_PATH": str(journal),
        }
    )


def _load(app: Any, due: int, kept: int) -> None:
    """Empty the tables, then ``due`` contacts last seen in 2015-2016 and ``kept``
    seen in 2024, ``ACTIVITIES_PER_CONTACT`` activities each."""
    from extensions import db

    with app.app_context(), db.engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(
                sa.text(
                    "TRUNCATE activity, contact, retention_run, audit_entry RESTART IDENTITY CASCADE"
                )
            )
        else:
            for table in ("activity", "contact", "retention_run"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
        if postgres:
            conn.execute(
                sa.text(
                    """
                    INSERT INTO contact (email, name, language, last_interaction_at, created_at, updated_at)
                    SELECT 'c' || g || '@bench.example', 'Contact ' || g, 'en',
                           CASE WHEN g <= :due
                                THEN timestamptz '2015-06-01 10:00+00' + (g % 500) * interval '1 day'
                                ELSE timestamptz '2024-06-01 10:00+00' END,
                           timestamptz '2014-01-01 00:00+00', now()
                    FROM generate_series(1, :total) AS g
                    """
                ),
                {"due": due, "total": due + kept},
            )
            conn.execute(
                sa.text(
                    """
                    INSERT INTO activity (contact_id, kind, occurred_at, author, note, created_at)
                    SELECT c.id, (ARRAY['call','email','meeting','visit','order'])[1 + k % 5],
                           c.last_interaction_at - k * interval '3 days', 'user:bench',
                           'Bench note ' || k, now()
                    FROM contact AS c CROSS JOIN generate_series(1, :per) AS k
                    """
                ),
                {"per": ACTIVITIES_PER_CONTACT},
            )
        else:
            numbers = (
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :total) "
            )
            conn.execute(
                sa.text(
                    numbers
                    + """
                    INSERT INTO contact (id, email, name, language, last_interaction_at, created_at, updated_at)
                    SELECT g, 'c' || g || '@bench.example', 'Contact ' || g, 'en',
                           CASE WHEN g <= :due
                                THEN strftime('%Y-%m-%d %H:%M:%S', '2015-06-01 10:00:00', '+' || (g % 500) || ' days') || '.000000'
                                ELSE '2024-06-01 10:00:00.000000' END,
                           '2014-01-01 00:00:00.000000', '2014-01-01 00:00:00.000000'
                    FROM s
                    """
                ),
                {"due": due, "total": due + kept},
            )
            conn.execute(
                sa.text(
                    "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < :per) "
                    """
                    INSERT INTO activity (contact_id, kind, occurred_at, author, note, created_at)
                    SELECT c.id, 'call', c.last_interaction_at, 'user:bench', 'Bench note ' || k.n,
                           c.created_at
                    FROM contact AS c CROSS JOIN k
                    """
                ),
                {"per": ACTIVITIES_PER_CONTACT},
            )
    if postgres:
        with app.app_context():
            autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
            with autocommit.connect() as conn:
                conn.execute(sa.text("VACUUM ANALYZE contact"))
                conn.execute(sa.text("VACUUM ANALYZE activity"))


def _count_activities(app: Any) -> int:
    from extensions import db

    with app.app_context():
        return int(db.session.scalar(sa.text("SELECT count(*) FROM activity")))


class Prober(threading.Thread):
    """Asks the permission API about kept contacts, one request after another."""

    def __init__(self, server: WebServer, token: str, contact_ids: list[int]) -> None:
        super().__init__(daemon=True)
        self.server, self.token, self.contact_ids = server, token, contact_ids
        self.latencies: list[float] = []
        self.errors = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            contact_id = self.contact_ids[n % len(self.contact_ids)]
            n += 1
            request = urllib.request.Request(
                f"{self.server.base}/api/v1/contacts/{contact_id}/permissions",
                headers={"Authorization": f"Bearer {self.token}"},
            )
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    ok = response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                ok = False
            self.latencies.append(time.perf_counter() - start)
            self.errors += 0 if ok else 1

    def stop(self) -> dict[str, Any]:
        self.stopping.set()
        self.join()
        return latency_summary(self.latencies, self.errors)


def latency_summary(latencies: list[float], errors: int) -> dict[str, Any]:
    ordered = sorted(latencies) or [0.0]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def run(ctx: Context) -> list[str]:
    lines: list[str] = []
    for root in ctx.databases():
        probe = ctx.on(root)
        lines += _run_on(probe)
    return lines


def _run_on(ctx: Context) -> list[str]:
    due, kept = _sizes(ctx)
    with ctx.fresh_database() as url:
        app = _app(url)
        from flask_migrate import upgrade

        from crm import retention
        from extensions import db
        from kernel.access import create_api_token

        with app.app_context():
            upgrade(revision="heads")
            _, token = create_api_token("bench", "sales")
            server_version = database_version()
            db.session.remove()
        kept_ids = list(range(due + 1, due + kept + 1))
        server = werkzeug(url)
        try:
            _load(app, due, kept)
            idle = Prober(server, token, kept_ids)
            idle.start()
            time.sleep(1 if ctx.smoke else 5)
            idle_stats = idle.stop()

            def purge() -> dict[str, Any]:
                marks = [time.perf_counter()]
                prober = Prober(server, token, kept_ids)
                prober.start()
                with app.app_context():
                    record = retention.run(
                        AS_OF,
                        started_by="bench",
                        after_batch=lambda _run: marks.append(time.perf_counter()),
                    )
                    deleted = record.counts["crm-contacts"]["deleted"]
                    db.session.remove()
                api = prober.stop()
                longest = max(b - a for a, b in itertools.pairwise(marks))
                return {
                    "contacts": deleted,
                    "batches": len(marks) - 1,
                    "longest_tx": longest,
                    **api,
                }

            def raw_delete() -> dict[str, Any]:
                prober = Prober(server, token, kept_ids)
                prober.start()
                start = time.perf_counter()
                with app.app_context(), db.engine.begin() as conn:
                    deleted = conn.execute(
                        sa.text("DELETE FROM contact WHERE last_interaction_at < :cutoff"),
                        {
                            "cutoff": "2017-01-01T00:00:00+00:00"
                            if db.engine.dialect.name == "postgresql"
                            else "2017-01-01 00:00:00"
                        },
                    ).rowcount
                longest = time.perf_counter() - start
                api = prober.stop()
                return {"contacts": deleted, "longest_tx": longest, **api}

            loaded: list[int] = []

            def reload() -> None:
                _load(app, due, kept)
                loaded.append(_count_activities(app) - kept * ACTIVITIES_PER_CONTACT)

            baseline = ctx.measure("one raw DELETE", raw_delete, setup=reload)
            batched = ctx.measure("batched retention run", purge, setup=reload)
        finally:
            server.stop()

    rows = loaded[0]
    assert all(d["contacts"] == due for d in batched.details + baseline.details), "not all purged"
    ratio = batched.ratio_to(baseline)
    longest = batched.detail("longest_tx", max)
    met = ratio <= 2 and longest <= 1
    lines = [
        f"### {server_version.split(' on ')[0].split(' (')[0]}",
        "",
        f"{due:,} due contacts with {rows:,} activity rows ({ACTIVITIES_PER_CONTACT} each), "
        f"plus {kept:,} kept contacts; {server_version.split(' on ')[0]}. "
        "The run uses the default rules and batch size "
        f"({app.config['RETENTION_BATCH_SIZE']} contacts per transaction). "
        "While each one runs, a thread asks the permission API "
        "(`GET /api/v1/contacts/<id>/permissions`, a werkzeug server in its own process) "
        "about kept contacts, one request after another.",
        "",
        "| | time (median) | activity rows/s | ratio to raw DELETE | longest transaction | API requests | API errors | API p50 | API p99 | API max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for measurement in (batched, baseline):
        lines.append(
            f"| {measurement.label} | {measurement.median:.1f} s "
            f"| {rows / measurement.median:,.0f} "
            f"| {measurement.ratio_to(baseline):.2f} "
            f"| {measurement.detail('longest_tx', max):.2f} s "
            f"| {measurement.detail('requests'):,.0f} "
            f"| {measurement.detail('errors', max)} "
            f"| {measurement.detail('p50_ms'):.1f} ms "
            f"| {measurement.detail('p99_ms', max):.1f} ms "
            f"| {measurement.detail('max_ms', max):.1f} ms |"
        )
    lines += [
        f"| API alone, before any purge | | | | | {idle_stats['requests']:,} | {idle_stats['errors']} "
        f"| {idle_stats['p50_ms']:.1f} ms | {idle_stats['p99_ms']:.1f} ms | {idle_stats['max_ms']:.1f} ms |",
        "",
        f"Batched run: {batched.detail('batches', max)} batches; per repetition: "
        + ", ".join(f"{s:.1f} s" for s in batched.seconds)
        + ". Raw DELETE per repetition: "
        + ", ".join(f"{s:.1f} s" for s in baseline.seconds)
        + '. "Longest transaction" for the batched run is the longest time between two '
        "batch commits (select, delete, count, commit); for the raw DELETE it is the whole statement.",
        "",
        f"Bar (at most 2x the raw DELETE, no transaction over 1 s): {ratio:.2f}x, longest "
        f"transaction {longest:.2f} s: {'met' if met else '**not met**'}.",
        "",
    ]
    return lines
