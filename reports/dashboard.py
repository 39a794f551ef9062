"""The whole dashboard's numbers at a moment: the stored slow sections and the
live small ones (campaigns, privacy requests). ``build_dashboard`` is what the
page, its charts and the benchmark (bench/) call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from consent.privacy_requests import RequestCounts
from mailing.campaign_report import CampaignOutcome, campaign_outcomes
from reports import sections, snapshots
from reports.sections import PurgeMonth, Reach, Week


@dataclass(frozen=True)
class Dashboard:
    at: datetime
    reach: list[Reach]
    reach_at: datetime | None
    weeks: list[Week]
    weeks_at: datetime | None
    purges: list[PurgeMonth]
    purges_at: datetime | None
    campaigns: list[CampaignOutcome]
    requests: RequestCounts


# A chart of more bars than this is unreadable; the campaigns page lists them all.
CAMPAIGNS_SHOWN = 20


def sent_campaigns() -> list[CampaignOutcome]:
    """The latest ``CAMPAIGNS_SHOWN`` campaigns sent, oldest first."""
    sent = [o for o in campaign_outcomes() if o.sent_at is not None]
    sent.sort(key=lambda o: (o.sent_at, o.campaign_id))
    return sent[-CAMPAIGNS_SHOWN:]


def build_dashboard(at: datetime) -> Dashboard:
    """Every section of /staff/dashboard at ``at``: a fixed number of queries,
    none of them per contact (docs/dashboard.md, Speed). Changes nothing."""
    reach = snapshots.stored("reach")
    weekly = snapshots.stored("weekly")
    purges = snapshots.stored("retention")
    return Dashboard(
        at=at,
        reach=sections.reach_from_json(reach.rows),
        reach_at=reach.computed_at,
        weeks=sections.weeks_from_json(weekly.rows),
        weeks_at=weekly.computed_at,
        purges=sections.months_from_json(purges.rows),
        purges_at=purges.computed_at,
        campaigns=sent_campaigns(),
        requests=sections.privacy_request_counts(at),
    )
