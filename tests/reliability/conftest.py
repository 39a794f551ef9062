"""The reliability suite: each test reports its figure for a row of issue 8's table.

``RELIABILITY_LONG=1`` runs the long variants (full counts and durations);
the default run uses smaller counts that fit in the normal suite. The figures
are printed at the end of the run (pytest's terminal summary).
"""

from __future__ import annotations

import os
from typing import Any

# The mail tests' real parts: aiosmtpd in this process and a dramatiq worker.
from tests.mailing.conftest import (  # noqa: F401
    _drop_jobs_nobody_ran,
    _mail_folder,
    mail_worker,
    smtp,
)

LONG = os.environ.get("RELIABILITY_LONG", "") == "1"

_FIGURES: dict[str, dict[str, Any]] = {}


def scale(default: int, long: int) -> int:
    """The count for this run: ``long`` under RELIABILITY_LONG=1."""
    return long if LONG else default


def figure(row: str, **values: Any) -> None:
    """Record the figure a test measured for one row of the table."""
    _FIGURES.setdefault(row, {}).update(values)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section(f"reliability figures ({'long' if LONG else 'default'} run)")
    for row, values in sorted(_FIGURES.items()):
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{row}: {shown}")
