"""``python -m bench --smoke`` keeps working, so the real benchmark never rots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# Reads TEST_DATABASE_URL itself: it runs on every database pass (docs/testing.md).
@pytest.mark.database
def test_the_benchmarks_run_on_tiny_data_and_write_their_section(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text(
        "# Benchmarks\n\n<!-- bench:other -->\nkept as it was\n<!-- /bench:other -->\n"
    )
    database = os.environ.get("TEST_DATABASE_URL") or "sqlite:///"
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--database-url",
            database,
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env={**os.environ, "BENCH_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = output.read_text()
    assert "kept as it was" in text, "other benchmarks' sections survive"
    assert "<!-- bench:retention -->" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "batched retention run" in rows and "one raw DELETE" in rows
    errors_column = rows["batched retention run"].split("|")[7].strip()
    assert errors_column == "0", "the permission API answered during the purge"

    # HTTP: every endpoint answered under gunicorn, each with its ratio.
    assert "<!-- bench:http -->" in text
    for label in (
        "bare SELECT by primary key",
        "POST /api/v1/permissions/check, 1 address",
        "POST /api/v1/permissions/check, 1,000 addresses",
        "bare single-row UPDATE",
        "POST /api/v1/contacts/<id>/objection",
    ):
        cells = [cell.strip() for cell in rows[label].split("|")]
        assert float(cells[2].replace(",", "")) > 0, f"{label}: no requests served"
        assert cells[5] == "0", f"{label}: errors under load"
    assert "addresses/s" in rows["POST /api/v1/permissions/check, 1,000 addresses"]

    # Audience: the service's query counts exactly the contacts the policy allows.
    assert "<!-- bench:audience -->" in text
    audience = next(
        line
        for line in text.splitlines()
        if line.startswith("| SQLite") or line.startswith("| PostgreSQL")
    )
    cells = [cell.strip() for cell in audience.split("|")]
    assert cells[3] == "790", "60% consented + 20% industry list, minus the suppressed 1%"
    assert cells[5] == "700", "the raw count over the consented rows"

    # Imports: every valid row created, the broken ones rejected, the re-run measured.
    assert "<!-- bench:imports -->" in text
    imported = next(
        line
        for line in text.split("<!-- bench:imports -->")[1].splitlines()
        if line.startswith("| SQLite") or line.startswith("| PostgreSQL")
    )
    cells = [cell.strip() for cell in imported.split("|")]
    assert cells[9] == "1,998 / 2", "2,000 rows, one in 1,000 with a broken address"
    assert cells[7].endswith("MiB") and cells[8].endswith(" s"), "peak RSS and the re-run"

    # Sending: the campaign reached the sink through Redis and two worker processes.
    assert "<!-- bench:sending -->" in text
    if _redis_answers(redis_url):
        sending = text.split("<!-- bench:sending -->")[1].split("<!-- /bench:sending -->")[0]
        row = next(
            line
            for line in sending.splitlines()
            if line.startswith("| SQLite") or line.startswith("| PostgreSQL")
        )
        cells = [cell.strip() for cell in row.split("|")]
        assert float(cells[3].replace(",", "")) > 0, "no campaign messages per second"
        assert float(cells[5].replace(",", "")) > 0, "no baseline messages per second"
        assert "every outbox row `sent`" in sending

    # Bounces: both ways in recorded every DSN (the benchmark asserts it) and say their rate.
    assert "<!-- bench:bounces -->" in text
    for label in (
        "flask bounces ingest, one process, vs parsing",
        "POST /api/v1/bounces vs GET /healthz",
    ):
        assert "DSNs/s" in rows[label] or "bounces/s" in rows[label], label
    # Change feed: the reader read every item once, rendered, and has its ratio.
    assert "<!-- bench:feed -->" in text
    fed = text.split("<!-- bench:feed -->")[1].split("<!-- /bench:feed -->")[0]
    row = next(line for line in fed.splitlines() if line.startswith(("| SQLite", "| PostgreSQL")))
    cells = [cell.strip() for cell in row.split("|")]
    assert float(cells[3].replace(",", "")) > 0, "no feed items per second"
    assert cells[6].endswith("x"), "the ratio to the bare keyset scan"

    # Views (issue 23): every filter's first page, the export and the dashboard
    # were served and measured beside their bare SQL.
    assert "<!-- bench:views -->" in text
    views = text.split("<!-- bench:views -->")[1].split("<!-- /bench:views -->")[0]
    assert "Generated 1,000 contacts and 10,000 ledger events" in views
    for label in ("country: NO", "decision: objection", "import batch", "external system: hubspot"):
        cells = [cell.strip() for cell in rows[label].split("|")]
        assert cells[3].endswith(" ms") and cells[7].endswith("x"), f"{label}: not measured"
    assert "| CSV export, country: NO | 98 |" in views
    assert "GET /staff/dashboard, full render (over the stored counts)" in views

    # The CRM connector (issue 24): a whole sync against the stand-in, with its
    # baseline, calls per contact, a second sync that changed nothing, and memory.
    assert "<!-- bench:connectors -->" in text
    synced = text.split("<!-- bench:connectors -->")[1].split("<!-- /bench:connectors -->")[0]
    row = next(
        line for line in synced.splitlines() if line.startswith(("| SQLite", "| PostgreSQL"))
    )
    cells = [cell.strip() for cell in row.split("|")]
    assert "(600 in, 300 out, done)" in cells[3], "every contact and call in, decisions out"
    assert float(cells[5]) > 0 and float(cells[6]) > 0, "ratio and calls per contact"
    assert "(0 in, 0 out)" in cells[7], "the second sync changed nothing"
    assert cells[9].endswith(" MiB")
    assert "`POST /crm/v3/objects/companies/batch/read`" in synced

    # Scale (issue 25): PostgreSQL only; every part measured on the generated data.
    assert "<!-- bench:scale -->" in text
    scale = text.split("<!-- bench:scale -->")[1].split("<!-- /bench:scale -->")[0]
    if not database.startswith("postgresql"):
        assert "skipped on SQLite" in scale
        return
    assert "2,000 contacts, 20,000 ledger events, 10,000 activities" in scale
    for label in (
        "bare SELECT by primary key (random contact)",
        "single check (random address)",
        "batch check, 10 random addresses",
    ):
        cells = [cell.strip() for cell in rows[label].split("|")]
        assert float(cells[2].replace(",", "")) > 0, f"{label}: no requests served"
        assert cells[5] == "0", f"{label}: errors under load"
    raw = [cell.strip() for cell in rows["one raw DELETE"].split("|")]
    purge = next(cells for key, cells in rows.items() if key.startswith("`crm.retention.run`"))
    assert int(raw[2]) > 0 and purge.split("|")[2].strip() == raw[2], "the day's rows purged"
    assert "| import, first run | 200 created, 0 rejected |" in scale
    assert "**all " in scale and " B** |" in scale, "disk per contact"


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False
