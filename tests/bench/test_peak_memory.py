"""The import benchmark's memory bar is judged on the import's own memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_child_does_not_report_its_parents_memory_as_its_own() -> None:
    # About 250 MB in this process, as the bench holds the SQLite baseline's rows
    # when it starts the import child.
    ballast = [str(i) * 10 for i in range(2_000_000)]
    done = subprocess.run(
        [sys.executable, "-c", "from bench.imports import _peak_rss_kib; print(_peak_rss_kib())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    child_mib = int(done.stdout.strip()) / 1024
    assert len(ballast) == 2_000_000
    assert child_mib < 100, f"the child reported {child_mib:.0f} MiB"
