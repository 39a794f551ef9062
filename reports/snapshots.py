"""The slow sections of the dashboard, counted by a scheduled job and stored.

Three sections read a whole large table: the reachable audience (one grouped
pass over every contact per topic and channel, about 1 s each on 1,000,000
contacts, docs/benchmarks.md), the ledger per week (the events of twelve
weeks among 10,000,000) and the purge forecast (every contact and activity
per retention rule). Counted on each view they would take many seconds; the
scheduler counts them every ``DASHBOARD_REFRESH_INTERVAL_S`` instead
(``REFRESH_JOB``), and the page shows when (docs/dashboard.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent.topics import current_policy
from extensions import db
from reports import sections
from reports.models import DashboardSnapshot

REFRESH_JOB = "refresh_dashboard"

_COUNTERS: dict[str, Callable[[datetime], list[Any]]] = {
    "reach": lambda at: sections.reachability(at, current_policy()),
    "weekly": sections.weekly_ledger,
    "retention": sections.purge_forecast,
}
SECTIONS = tuple(_COUNTERS)


@dataclass(frozen=True)
class Stored:
    rows: list[dict[str, Any]]
    computed_at: datetime | None  # None: never counted yet


def refresh(at: datetime, names: tuple[str, ...] = SECTIONS) -> None:
    """Count the slow sections at ``at`` and store them, replacing the last
    count; one transaction, committed. Safe to run twice."""
    for name in names:
        rows = sections.to_json(_COUNTERS[name](at))
        row = db.session.get(DashboardSnapshot, name)
        if row is None:
            db.session.add(DashboardSnapshot(name=name, computed_at=at, data=rows))
        else:
            row.computed_at, row.data = at, rows
    db.session.commit()


def stored(name: str) -> Stored:
    row = db.session.execute(
        sa.select(DashboardSnapshot.data, DashboardSnapshot.computed_at).where(
            DashboardSnapshot.name == name
        )
    ).first()
    if row is None:
        return Stored([], None)
    return Stored(list(row.data), row.computed_at)
