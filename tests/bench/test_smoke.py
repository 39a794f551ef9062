"""``python -m bench --smoke`` keeps working, so the real benchmark never rots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmarks_run_on_tiny_data_and_write_their_section(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text(
        "# Benchmarks\n\n<!-- bench:other -->\nkept as it was\n<!-- /bench:other -->\n"
    )
    database = os.environ.get("TEST_DATABASE_URL") or "sqlite:///"
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
