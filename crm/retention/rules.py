"""Retention rules: what the policy file says, parsed and checked at start-up, and
the calendar arithmetic of periods (months, year ends, UTC days).

The meaning of a rule and of its dates is in the package's docstring
(``crm/retention/__init__.py``) and in docs/retention.md.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import current_app

from crm.models import (
    ActivityKind,
    Contact,
)
from kernel.errors import InvalidInput
from kernel.timestamps import utcnow

# Categories this service holds and enforces. Any other category name is
# accepted in a rule set when it says where it is held (``held_in``) and who
# or what purges it there (``purged_by``), so that a company's whole policy
# reads in one place; the preview lists those as a checklist for the admin
# (R16-R18) and a run never touches them.
CONTACT = "contact"  # the contact with its activities, consent ledger and projection
ACTIVITY = "activity"  # activities of the listed kinds
SUPPORT_CASE = "support_case"  # shorthand for activities of kind support_case
HELD_CATEGORIES = (CONTACT, ACTIVITY, SUPPORT_CASE)
# Never subject to retention: the suppression list must outlive every purge
# (R22), and the ledger only ever goes together with its contact.
NEVER_PURGED = ("suppression", "consent_event", "ledger", "audit_entry")

COUNTS_FROM = {
    # "objection": only contacts who objected to all direct marketing, counted
    # from the objection (GDPR art. 21(3)); their suppression entry stays (R22).
    CONTACT: ("last_interaction", "created", "relationship_end", "objection"),
    ACTIVITY: ("record_date", "last_interaction"),
    SUPPORT_CASE: ("record_date", "last_interaction"),
}
EXTERNAL_COUNTS_FROM = (
    "last_interaction",
    "record_date",
    "relationship_end",
    "account_inactivity",
    "created",
    "event_end",
    "invoice_settled",
)
ACTIONS = ("delete", "anonymise")

log = logging.getLogger(__name__)


# Periods and dates ---------------------------------------------------------------


def _add_months(day: date, months: int) -> date:
    """Calendar months; the 29th-31st clamp to the month's last day (2020-02-29 + 12 months
    is 2021-02-28)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Period:
    years: int = 0
    months: int = 0
    days: int = 0

    def after(self, day: date) -> date:
        return _add_months(day, self.years * 12 + self.months) + timedelta(days=self.days)

    def before(self, day: date) -> date:
        return _add_months(day - timedelta(days=self.days), -(self.years * 12 + self.months))

    def __str__(self) -> str:
        parts = [
            f"{n} {unit}{'s' if n != 1 else ''}"
            for n, unit in ((self.years, "year"), (self.months, "month"), (self.days, "day"))
            if n
        ]
        return ", ".join(parts) or "0 days"


def utc_day(moment: datetime | date) -> date:
    """The UTC calendar day of an instant (a date is taken as it is)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return moment.astimezone(UTC).date()
    return moment


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# Rules ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    category: str
    period: Period
    counts_from: str
    round_to_year_end: bool
    action: str
    kinds: tuple[str, ...] = ()
    description: str = ""
    held_in: str | None = None
    # Rules held elsewhere: the connector, system job or person that purges it there.
    purged_by: str | None = None
    # Contact rules only: apply to contacts that have (or have no) activity of these kinds,
    # e.g. customers who ordered versus contacts known only from CRM activities.
    with_activity_kinds: tuple[str, ...] = ()
    without_activity_kinds: tuple[str, ...] = ()

    def applies_to(self, contact: Contact) -> bool:
        if not (self.with_activity_kinds or self.without_activity_kinds):
            return True
        kinds = {activity.kind for activity in contact.activities}
        if self.with_activity_kinds and not kinds & set(self.with_activity_kinds):
            return False
        return not kinds & set(self.without_activity_kinds)

    @property
    def is_held_here(self) -> bool:
        return self.category in HELD_CATEGORIES

    @property
    def is_contact_rule(self) -> bool:
        return self.category == CONTACT

    def last_kept_day(self, anchor: datetime | date) -> date:
        end = self.period.after(utc_day(anchor))
        return date(end.year, 12, 31) if self.round_to_year_end else end

    def purge_on(self, anchor: datetime | date) -> date:
        """The first day on which a run removes what counts from ``anchor``."""
        return self.last_kept_day(anchor) + timedelta(days=1)

    def latest_due_anchor_day(self, as_of: date) -> date:
        """The last anchor day that is due in a run on ``as_of``: the inverse of
        ``purge_on``, computed once per run so that the database compares an
        indexed column with one value."""
        # A record is due when its last kept day is before as_of.
        limit = date(as_of.year - 1, 12, 31) if self.round_to_year_end else as_of - timedelta(1)
        # last_kept_day is monotonic in the anchor; month clamping (leap days)
        # can make several anchors share an end, so step to the last of them.
        day = self.period.before(limit)
        while self.last_kept_day(day) > limit:
            day -= timedelta(days=1)
        while self.last_kept_day(day + timedelta(days=1)) <= limit:
            day += timedelta(days=1)
        return day

    def explain(self) -> str:
        rounding = ", then to the end of that year" if self.round_to_year_end else ""
        what = self.category if not self.kinds else f"{self.category} ({', '.join(self.kinds)})"
        if self.with_activity_kinds:
            what += f" with {' or '.join(self.with_activity_kinds)} activities"
        if self.without_activity_kinds:
            what += f" without {' or '.join(self.without_activity_kinds)} activities"
        return f"{self.action} {what} {self.period} after {self.counts_from}{rounding}"


@dataclass(frozen=True)
class RetentionPolicy:
    rules: tuple[Rule, ...]

    @property
    def held_rules(self) -> tuple[Rule, ...]:
        """Rules this service applies, in application order: activity rules
        before contact rules, so that a support case due on the same day as
        its contact is anonymised (kept, unlinked) rather than deleted with it."""
        held = [r for r in self.rules if r.is_held_here]
        return tuple(sorted(held, key=lambda r: r.is_contact_rule))

    @property
    def external_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if not r.is_held_here)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RetentionPolicy:
        """Parse the ``[retention]`` table of a policy file; refuse anything unclear."""
        section = data.get("retention", {})
        rules = [_parse_rule(spec) for spec in section.get("rules", [])]
        names = [r.name for r in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RuntimeError(f"Retention rule names must be unique: {duplicates}")
        return cls(rules=tuple(rules))


def _parse_rule(spec: Mapping[str, Any]) -> Rule:
    name = spec.get("name")
    try:
        if not isinstance(name, str) or not name:
            raise ValueError("every rule needs a name")
        category = str(spec["category"])
        counts_from = str(spec["counts_from"])
        action = str(spec.get("action", "delete"))
        period = Period(
            years=int(spec.get("years", 0)),
            months=int(spec.get("months", 0)),
            days=int(spec.get("days", 0)),
        )
        if min(period.years, period.months, period.days) < 0:
            raise ValueError("periods cannot be negative")
        if period.years * 366 + period.months * 31 + period.days > MAX_PERIOD_YEARS * 366:
            raise ValueError(f"periods are at most {MAX_PERIOD_YEARS} years")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        if category in NEVER_PURGED:
            raise ValueError(f"{category!r} is never subject to retention")
        kinds = tuple(str(k) for k in spec.get("kinds", ()))
        held_in = spec.get("held_in")
        purged_by = spec.get("purged_by")
        with_kinds = tuple(str(k) for k in spec.get("with_activity_kinds", ()))
        without_kinds = tuple(str(k) for k in spec.get("without_activity_kinds", ()))
        for kind in (*with_kinds, *without_kinds):
            ActivityKind(kind)
        if (with_kinds or without_kinds) and category != CONTACT:
            raise ValueError("with_activity_kinds and without_activity_kinds are for contact rules")
        if category == SUPPORT_CASE:
            kinds = (ActivityKind.SUPPORT_CASE.value,)
        if category in HELD_CATEGORIES:
            if counts_from not in COUNTS_FROM[category]:
                raise ValueError(
                    f"counts_from for {category} must be one of {COUNTS_FROM[category]}"
                )
            if purged_by is not None:
                raise ValueError(
                    "purged_by is for data held elsewhere (held_in); this service purges it"
                )
            if category == CONTACT and action != "delete":
                raise ValueError("a contact can only be deleted; anonymise its activities")
            if category == ACTIVITY:
                if not kinds:
                    raise ValueError("an activity rule lists its kinds")
                for kind in kinds:
                    ActivityKind(kind)
        else:
            if not held_in:
                raise ValueError(
                    f"category {category!r} is not held by this service; say where it is "
                    "enforced with held_in"
                )
            if not isinstance(purged_by, str) or not purged_by.strip():
                raise ValueError(
                    f"its data is held in {held_in} (held_in), so say which connector or "
                    'person purges it there with purged_by, e.g. purged_by = "the accounting '
                    "system's yearly close (finance team)\""
                )
            if counts_from not in EXTERNAL_COUNTS_FROM:
                raise ValueError(f"counts_from must be one of {EXTERNAL_COUNTS_FROM}")
        return Rule(
            name=name,
            category=category,
            period=period,
            counts_from=counts_from,
            round_to_year_end=bool(spec.get("round_to_year_end", False)),
            action=action,
            kinds=kinds,
            description=str(spec.get("description", "")),
            held_in=str(held_in) if held_in else None,
            purged_by=purged_by.strip() if isinstance(purged_by, str) else None,
            with_activity_kinds=with_kinds,
            without_activity_kinds=without_kinds,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise RuntimeError(
            f"Retention rule {name!r} in the policy file is malformed: {exc}"
        ) from exc


def current_retention_policy() -> RetentionPolicy:
    """The rules of the running app, parsed once at start-up (``crm.init_app``)."""
    return current_app.extensions["retention_policy"]


def parse_as_of(value: str | date | None, *, default_now: bool = True) -> date:
    """A run date: ``YYYY-MM-DD`` (a UTC day); today (UTC) when not given."""
    if value is None:
        if not default_now:
            raise InvalidInput("as_of is required.", fields={"as_of": ["Required."]})
        return utcnow().date()
    if not isinstance(value, date):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                "as_of must be a date, YYYY-MM-DD.",
                code="invalid_date",
                fields={"as_of": ["Bad date."]},
            ) from None
    if not EARLIEST_RUN <= value <= LATEST_RUN:
        raise InvalidInput(
            f"as_of must be between {EARLIEST_RUN} and {LATEST_RUN}.",
            code="invalid_date",
            fields={"as_of": ["Out of range."]},
        )
    return value


# Dates a run or preview may be asked about; periods are capped so that date
# arithmetic stays within what Python and the databases represent.
EARLIEST_RUN = date(1900, 1, 1)
LATEST_RUN = date(2999, 12, 31)
MAX_PERIOD_YEARS = 200
