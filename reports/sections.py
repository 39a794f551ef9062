"""The numbers of each dashboard section, each counted by aggregate SQL.

Every section is read from the package that owns its rules: the reasons from
``consent.audience`` (the SQL copy of ``consent.policy.decide`` its tests hold
equal), the purges from ``crm.retention`` (the run's own selection), the
requests from ``consent.privacy_requests``, the campaigns from
``mailing.campaign_report``. Nothing here is counted per contact in Python.
Each section is a frozen dataclass that survives a round trip through JSON,
so that the slow ones can be stored by the scheduled job (``reports.snapshots``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from consent import privacy_requests
from consent.audience import reason_counts
from consent.models import ConsentEvent, EventKind
from consent.policy import Reason
from consent.topics import MarketingPolicy
from crm import retention
from extensions import db

ALLOWED_REASONS = (Reason.CONSENT, Reason.CUSTOMER, Reason.INDUSTRY_LIST)
# Why the rest are not reachable, in the decision's order (an unknown address is
# not a contact, so it never appears here).
BLOCKING_REASONS = (
    Reason.SUPPRESSED,
    Reason.OBJECTION,
    Reason.RESTRICTED,
    Reason.UNDELIVERABLE,
    Reason.UNSUBSCRIBED,
    Reason.PENDING_CONFIRMATION,
    Reason.NO_BASIS,
)
WEEKS = 12
FORECAST_MONTHS = 24


# Reachable audience ------------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """The contacts of one topic and channel, counted per reason code of the decision."""

    topic: str
    channel: str
    counts: dict[str, int]

    @property
    def reachable(self) -> int:
        return sum(self.counts.get(r.value, 0) for r in ALLOWED_REASONS)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, reason: str) -> int:
        return self.counts.get(reason, 0)


def reachability(at: datetime, policy: MarketingPolicy) -> list[Reach]:
    """Every marketing topic by every channel: one grouped query each."""
    return [
        Reach(topic.key, channel, reason_counts(topic, channel, at, policy))
        for topic in policy.marketing_topics.values()
        for channel in policy.channels
    ]


# The ledger per week -------------------------------------------------------------------

_WEEKLY_KINDS = {
    EventKind.REQUESTED.value: "requested",
    EventKind.CONFIRMED.value: "confirmed",
    # A staff-recorded "stop the newsletter" ends the topic as an unsubscribe does.
    EventKind.UNSUBSCRIBED.value: "unsubscribed",
    EventKind.WITHDRAWN.value: "unsubscribed",
    EventKind.OBJECTED.value: "objected",
}


@dataclass(frozen=True)
class Week:
    start: date
    requested: int = 0
    confirmed: int = 0
    unsubscribed: int = 0
    objected: int = 0

    @property
    def confirmation_rate(self) -> float | None:
        """Confirmed per requested in the same week (None: nothing requested)."""
        return self.confirmed / self.requested if self.requested else None


def week_starts(at: datetime, weeks: int = WEEKS) -> list[date]:
    """The Mondays (UTC) of the last ``weeks`` weeks, the current one last."""
    today = at.astimezone(UTC).date()
    monday = today - timedelta(days=today.weekday())
    return [monday - timedelta(weeks=weeks - 1 - i) for i in range(weeks)]


def weekly_ledger(at: datetime, weeks: int = WEEKS) -> list[Week]:
    """Consents requested and confirmed, unsubscribes and objections per week,
    counted from the ledger's events in one grouped query."""
    starts = week_starts(at, weeks)
    bounds = [datetime.combine(s, datetime.min.time(), tzinfo=UTC) for s in starts]
    bucket = sa.case(
        *((ConsentEvent.occurred_at < b, i - 1) for i, b in enumerate(bounds[1:], start=1)),
        else_=len(bounds) - 1,
    ).label("bucket")
    query = (
        sa.select(ConsentEvent.kind, bucket, sa.func.count())
        .where(
            ConsentEvent.occurred_at >= bounds[0],
            ConsentEvent.occurred_at <= at,
            ConsentEvent.kind.in_(sorted(_WEEKLY_KINDS)),
        )
        .group_by(ConsentEvent.kind, bucket)
    )
    counts: list[dict[str, int]] = [{} for _ in starts]
    for kind, index, count in db.session.execute(query):
        field = _WEEKLY_KINDS[kind]
        counts[index][field] = counts[index].get(field, 0) + count
    return [Week(start, **found) for start, found in zip(starts, counts, strict=True)]


# Retention: what falls due each month ------------------------------------------------


@dataclass(frozen=True)
class PurgeMonth:
    """What a retention run removes or anonymises in one month; the first row
    (``overdue``) is what is due already on the day it was counted."""

    month: str  # "2026-12", or "due now"
    contacts: int
    activities: int


def _month_ends(day: date, months: int) -> list[date]:
    ends = []
    year, month = day.year, day.month
    for _ in range(months):
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        ends.append(date(year, month, 1) - timedelta(days=1))
    return ends


def purge_forecast(at: datetime, months: int = FORECAST_MONTHS) -> list[PurgeMonth]:
    """Contacts and activities each held rule selects per month of the next
    ``months`` (this month first), by the rules' own dates (``crm.retention.due_counts``).

    Counted as if nothing changed meanwhile: an interaction, a new contact or
    a legal hold moves them. A contact due under two rules counts under each.
    """
    today = at.astimezone(UTC).date()
    days = [today, *_month_ends(today, months)]
    contacts = [0] * len(days)
    activities = [0] * len(days)
    for rule in retention.current_retention_policy().held_rules:
        into = contacts if rule.is_contact_rule else activities
        for i, count in enumerate(retention.due_counts(rule, days)):
            into[i] += count
    rows = [PurgeMonth("due now", contacts[0], activities[0])]
    for i, end in enumerate(days[1:], start=1):
        rows.append(
            PurgeMonth(
                end.strftime("%Y-%m"),
                contacts[i] - contacts[i - 1],
                activities[i] - activities[i - 1],
            )
        )
    return rows


# Privacy requests --------------------------------------------------------------------


def privacy_request_counts(at: datetime) -> privacy_requests.RequestCounts:
    return privacy_requests.request_counts(at)


# JSON ---------------------------------------------------------------------------------


def to_json(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(row).items()}
        for row in rows
    ]


def reach_from_json(rows: list[dict[str, Any]]) -> list[Reach]:
    return [Reach(**row) for row in rows]


def weeks_from_json(rows: list[dict[str, Any]]) -> list[Week]:
    return [Week(**{**row, "start": date.fromisoformat(row["start"])}) for row in rows]


def months_from_json(rows: list[dict[str, Any]]) -> list[PurgeMonth]:
    return [PurgeMonth(**row) for row in rows]
