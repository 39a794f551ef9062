"""The dashboard's stored sections: numbers only, never a contact."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from kernel.timestamps import UTCDateTime


class DashboardSnapshot(db.Model):
    """One section of the dashboard as the scheduled job last computed it
    (``reports.snapshots``): too slow to count live on every view."""

    __tablename__ = "dashboard_snapshot"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[Any] = mapped_column(sa.JSON)
