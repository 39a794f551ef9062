"""Retention: rule sets from the policy file, purge dates, preview and run (R13-R18).

A *retention rule* names a data category, a period, what the period counts
from, whether the end date rounds up to the end of that year, and the action
(delete or anonymise). The rules live under ``[retention]`` in the policy
file (``POLICY_FILE``); docs/retention.md explains every key.

Dates are UTC calendar days. For a record whose period counts from the
instant ``anchor``, the *last kept day* is ``anchor's UTC date + period``
(or the 31 December of that date's year when the rule rounds to the year
end); the *purge date* is the day after, and a run on or after the purge
date removes it. So "seven years after the last interaction, deleted at the
end of that year" with a last interaction on 2019-03-15 keeps the contact
through 2026-12-31 and a run on 2027-01-01 deletes it.

A run works in bounded batches, each one short transaction that re-selects
what is due (with row locks on PostgreSQL), so it can be killed at any
point and run again: a contact is removed whole or not at all. One run at a
time across all hosts: a row in ``retention_lock``.
"""

from __future__ import annotations

import calendar
import logging
import os
import socket
import time as time_module
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from crm.models import (
    Activity,
    ActivityKind,
    AnonymisedActivity,
    Company,
    Contact,
    RetentionLock,
    RetentionRun,
)
from crm.services import remove_contacts
from extensions import db
from kernel.database import id_in
from kernel.errors import Conflict, InvalidInput
from kernel.signals import collect_retention_exclusions
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

# Categories this service holds and enforces. Any other category name is
# accepted in a rule set when it says where it is enforced (``held_in``), so
# that a company's whole policy reads in one place; the preview lists those
# as held elsewhere and a run never touches them.
CONTACT = "contact"  # the contact with its activities, consent ledger and projection
ACTIVITY = "activity"  # activities of the listed kinds
SUPPORT_CASE = "support_case"  # shorthand for activities of kind support_case
HELD_CATEGORIES = (CONTACT, ACTIVITY, SUPPORT_CASE)
# Never subject to retention: the suppression list must outlive every purge
# (R22), and the ledger only ever goes together with its contact.
NEVER_PURGED = ("suppression", "consent_event", "ledger", "audit_entry")

COUNTS_FROM = {
    CONTACT: ("last_interaction", "created", "relationship_end"),
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
LOCK_NAME = "retention"

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


# Exclusions: legal hold and what other packages answer -----------------------------


def retention_exclusions(contact_ids: Sequence[int]) -> dict[int, str]:
    """Which of ``contact_ids`` no retention rule may touch, and why."""
    if not contact_ids:
        return {}
    ids = list(contact_ids)
    # A legal obligation to keep the data wins over the retention period.
    reasons = {
        contact_id: f"legal hold: {reason}"
        for contact_id, reason in db.session.execute(
            sa.select(Contact.id, Contact.legal_hold_reason).where(
                id_in(Contact.id, ids), Contact.legal_hold_reason.is_not(None)
            )
        )
    }
    # The other packages' reasons (kernel.signals.collect_retention_exclusions).
    for _receiver, found in collect_retention_exclusions.send(signal_sender(), contact_ids=ids):
        for contact_id, reason in found.items():
            reasons.setdefault(contact_id, reason)
    return reasons


# Purge dates of one contact (shown on every contact read) --------------------------


@dataclass(frozen=True)
class PurgeOutlook:
    """When the current rules delete a contact, by which rule, or why not."""

    purge_on: date | None
    rule: str | None
    excluded_because: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "purge_on": self.purge_on.isoformat() if self.purge_on else None,
            "rule": self.rule,
            "excluded_because": self.excluded_because,
        }


def _contact_anchor(rule: Rule, contact: Contact) -> datetime | date | None:
    if rule.counts_from == "last_interaction":
        # A contact who never interacted counts from when it was created.
        return contact.last_interaction_at or contact.created_at
    if rule.counts_from == "created":
        return contact.created_at
    if rule.counts_from == "relationship_end":
        return contact.company.relationship_ended_at if contact.company else None
    return None


def purge_outlook(contact: Contact, policy: RetentionPolicy | None = None) -> PurgeOutlook:
    """The day a run deletes ``contact`` under the current rules (the earliest
    contact rule), or why no run will while the reason stands."""
    policy = policy or current_retention_policy()
    best: tuple[date, str] | None = None
    for rule in policy.held_rules:
        if not rule.is_contact_rule or not rule.applies_to(contact):
            continue
        anchor = _contact_anchor(rule, contact)
        if anchor is None:
            continue
        day = rule.purge_on(anchor)
        if best is None or day < best[0]:
            best = (day, rule.name)
    excluded = retention_exclusions([contact.id]).get(contact.id) if contact.id else None
    return PurgeOutlook(
        purge_on=best[0] if best else None,
        rule=best[1] if best else None,
        excluded_because=excluded,
    )


# Selecting what is due --------------------------------------------------------------


@dataclass(frozen=True)
class DueRow:
    contact_id: int
    rule: Rule = field(repr=False)
    anchor: datetime | date = field(repr=False)
    activity_id: int | None = None
    kind: str | None = None
    occurred_at: datetime | None = None

    @property
    def purge_on(self) -> date:
        # Worked out when asked: a run only needs the ids, and the date
        # arithmetic for every row of every batch cost a tenth of a run.
        return self.rule.purge_on(self.anchor)


def _contact_anchor_due(before: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        Contact.last_interaction_at < before,
        sa.and_(Contact.last_interaction_at.is_(None), Contact.created_at < before),
    )


def _has_activity(kinds: Sequence[str]) -> sa.ColumnElement[bool]:
    return (
        sa.select(Activity.id)
        .where(Activity.contact_id == Contact.id, Activity.kind.in_(kinds))
        .exists()
    )


def _due_query(rule: Rule, as_of: date, after_id: int, limit: int) -> sa.Select:
    """Up to ``limit`` rows due under ``rule`` on ``as_of`` with id > ``after_id``,
    legal holds included (they are reported, then skipped)."""
    latest = rule.latest_due_anchor_day(as_of)
    before = start_of_day(latest + timedelta(days=1))
    query: sa.Select
    if rule.is_contact_rule:
        query = sa.select(
            Contact.id, Contact.last_interaction_at, Contact.created_at, sa.null(), sa.null()
        )
        if rule.counts_from == "last_interaction":
            query = query.where(_contact_anchor_due(before))
        elif rule.counts_from == "created":
            query = query.where(Contact.created_at < before)
        else:
            query = (
                sa.select(
                    Contact.id,
                    Company.relationship_ended_at,
                    Company.relationship_ended_at,
                    sa.null(),
                    sa.null(),
                )
                .join(Company, Contact.company_id == Company.id)
                .where(Company.relationship_ended_at <= latest)
            )
        if rule.with_activity_kinds:
            query = query.where(_has_activity(rule.with_activity_kinds))
        if rule.without_activity_kinds:
            query = query.where(~_has_activity(rule.without_activity_kinds))
        return query.where(Contact.id > after_id).order_by(Contact.id).limit(limit)
    query = sa.select(
        Activity.contact_id, Activity.occurred_at, Activity.id, Activity.kind, Activity.occurred_at
    ).where(Activity.kind.in_(rule.kinds))
    if rule.counts_from == "record_date":
        query = query.where(Activity.occurred_at < before)
    else:
        query = (
            sa.select(
                Activity.contact_id,
                sa.func.coalesce(Contact.last_interaction_at, Contact.created_at),
                Activity.id,
                Activity.kind,
                Activity.occurred_at,
            )
            .join(Contact, Activity.contact_id == Contact.id)
            .where(Activity.kind.in_(rule.kinds), _contact_anchor_due(before))
        )
    return query.where(Activity.id > after_id).order_by(Activity.id).limit(limit)


def _rows(rule: Rule, result: Sequence[Any]) -> list[DueRow]:
    rows = []
    for first, anchor, other, kind, occurred_at in result:
        if rule.is_contact_rule and rule.counts_from == "last_interaction":
            anchor = anchor or other  # created_at when there was never an interaction
        if rule.is_contact_rule and rule.counts_from == "created":
            anchor = other
        rows.append(
            DueRow(
                contact_id=first,
                rule=rule,
                anchor=_aware(anchor),
                activity_id=None if rule.is_contact_rule else other,
                kind=kind,
                occurred_at=_aware(occurred_at) if occurred_at is not None else None,
            )
        )
    return rows


def _aware(value: Any) -> Any:
    # Raw column reads through coalesce() bypass the UTCDateTime type on SQLite.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row_key(rule: Rule, row: DueRow) -> int:
    return row.contact_id if rule.is_contact_rule else int(row.activity_id or 0)


def _batches(
    rule: Rule, as_of: date, batch_size: int, *, lock: bool = False
) -> Iterator[tuple[list[DueRow], dict[int, str]]]:
    """Due rows in id order, ``batch_size`` at a time, with the exclusions among them."""
    after = 0
    while True:
        query = _due_query(rule, as_of, after, batch_size)
        if lock:
            query = query.with_for_update(of=Contact if rule.is_contact_rule else Activity)
        rows = _rows(rule, db.session.execute(query).all())
        if not rows:
            return
        after = _row_key(rule, rows[-1])
        yield rows, retention_exclusions(sorted({r.contact_id for r in rows}))


# Preview ---------------------------------------------------------------------------


@dataclass
class RuleOutcome:
    rule: Rule
    count: int = 0
    items: list[DueRow] = field(default_factory=list)
    excluded: list[tuple[DueRow, str]] = field(default_factory=list)
    excluded_count: int = 0
    truncated: bool = False


@dataclass
class Preview:
    as_of: date
    outcomes: list[RuleOutcome]
    external: tuple[Rule, ...]


def preview(
    as_of: date, *, limit: int | None = 1000, policy: RetentionPolicy | None = None
) -> Preview:
    """What a run on ``as_of`` would remove or anonymise, per rule, and what it
    would skip and why. Changes nothing. ``limit`` caps the listed items per
    rule (counts are always complete)."""
    policy = policy or current_retention_policy()
    outcomes = []
    batch_size = _batch_size()
    for rule in policy.held_rules:
        outcome = RuleOutcome(rule)
        for rows, exclusions in _batches(rule, as_of, batch_size):
            for row in rows:
                reason = exclusions.get(row.contact_id)
                if reason is not None:
                    outcome.excluded_count += 1
                    if limit is None or len(outcome.excluded) < limit:
                        outcome.excluded.append((row, reason))
                    continue
                outcome.count += 1
                if limit is None or len(outcome.items) < limit:
                    outcome.items.append(row)
                else:
                    outcome.truncated = True
        outcomes.append(outcome)
    db.session.rollback()
    return Preview(as_of=as_of, outcomes=outcomes, external=policy.external_rules)


# Run ---------------------------------------------------------------------------------


def _batch_size() -> int:
    return int(current_app.config.get("RETENTION_BATCH_SIZE", 1000))


def _lock_stale_after() -> timedelta:
    return timedelta(seconds=int(current_app.config.get("RETENTION_LOCK_STALE_SECONDS", 300)))


def _is_process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ensure_lock_row() -> None:
    """The lock row exists from the first run on; two first runs race on its key."""
    if db.session.get(RetentionLock, LOCK_NAME) is not None:
        return
    db.session.add(RetentionLock(name=LOCK_NAME))
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()


def _take_lock(run: RetentionRun) -> None:
    """Take the one retention lock for ``run`` (flushed, not committed), or raise Conflict."""
    host, pid, now = socket.gethostname(), os.getpid(), utcnow()
    lock = db.session.get(RetentionLock, LOCK_NAME, populate_existing=True)
    if lock is None:
        raise Conflict("The retention lock is changing; try again.", code="retention_busy")
    held_by, beat = lock.run_id, lock.heartbeat_at
    free = (
        held_by is None
        or beat is None
        or now - beat > _lock_stale_after()
        or (
            lock.holder_host == host
            and lock.holder_pid is not None
            and lock.holder_pid != pid
            and not _is_process_alive(lock.holder_pid)
        )
    )
    if not free:
        raise Conflict(
            f"Retention run {held_by} is in progress (host {lock.holder_host}, "
            f"pid {lock.holder_pid}); only one run at a time.",
            code="retention_running",
        )
    same_holder = (
        RetentionLock.run_id.is_(None) if held_by is None else RetentionLock.run_id == held_by
    )
    taken = db.session.execute(
        sa.update(RetentionLock)
        .where(RetentionLock.name == LOCK_NAME, same_holder)
        .values(run_id=run.id, holder_host=host, holder_pid=pid, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("Another retention run took the lock first.", code="retention_running")
    if held_by is not None:
        # Its process died or stopped beating: record that, the new run resumes its work.
        db.session.execute(
            sa.update(RetentionRun)
            .where(RetentionRun.id == held_by, RetentionRun.status == "running")
            .values(status="interrupted")
            .execution_options(synchronize_session=False)
        )


def _beat(run_id: int) -> None:
    """Prove we still hold the lock; part of each batch's transaction."""
    kept = db.session.execute(
        sa.update(RetentionLock)
        .where(RetentionLock.name == LOCK_NAME, RetentionLock.run_id == run_id)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if kept.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            "This retention run lost its lock (it stalled); the batch was not applied.",
            code="retention_lock_lost",
        )


def _release(run_id: int) -> None:
    db.session.execute(
        sa.update(RetentionLock)
        .where(RetentionLock.name == LOCK_NAME, RetentionLock.run_id == run_id)
        .values(run_id=None, holder_host=None, holder_pid=None, heartbeat_at=None)
        .execution_options(synchronize_session=False)
    )


def _apply(rule: Rule, rows: list[DueRow], as_of: date) -> int:
    if not rows:
        return 0
    if rule.is_contact_rule:
        return remove_contacts([r.contact_id for r in rows])
    ids = [int(r.activity_id) for r in rows if r.activity_id is not None]
    if rule.action == "anonymise":
        # R15: general support information may stay; nothing linkable to a person.
        db.session.execute(
            sa.insert(AnonymisedActivity),
            [
                {
                    "kind": r.kind,
                    "occurred_month": utc_day(r.occurred_at).replace(day=1),
                    "rule": rule.name,
                    "anonymised_on": as_of,
                }
                for r in rows
                if r.occurred_at is not None
            ],
        )
    result = db.session.execute(
        sa.delete(Activity)
        .where(id_in(Activity.id, ids))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def run(
    as_of: date,
    *,
    started_by: str,
    policy: RetentionPolicy | None = None,
    batch_size: int | None = None,
    after_batch: Callable[[RetentionRun], None] | None = None,
) -> RetentionRun:
    """Apply every held rule as on ``as_of`` (R13-R18) and record the run.

    Each batch is one short transaction: select what is due (row-locked on
    PostgreSQL), skip excluded contacts, delete or anonymise, count, beat the
    lock, commit. Nothing is carried between batches but an id to continue
    after, so a run killed at any point leaves whole contacts and the next
    run finishes the work. The suppression list is never touched (R22).
    Raises Conflict while another run holds the lock.
    """
    policy = policy or current_retention_policy()
    size = batch_size or _batch_size()
    pause = float(current_app.config.get("RETENTION_BATCH_PAUSE", 0))
    _ensure_lock_row()
    record = RetentionRun(
        as_of=as_of, started_at=utcnow(), started_by=started_by, status="running", counts={}
    )
    db.session.add(record)
    db.session.flush()
    try:
        _take_lock(record)
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    run_id = record.id
    counts: dict[str, dict[str, int]] = {
        r.name: {"deleted": 0, "anonymised": 0, "excluded": 0} for r in policy.held_rules
    }
    try:
        for rule in policy.held_rules:
            done_key = "anonymised" if rule.action == "anonymise" else "deleted"
            for rows, exclusions in _batches(rule, as_of, size, lock=True):
                due = [r for r in rows if r.contact_id not in exclusions]
                applied = _apply(rule, due, as_of)
                counts[rule.name][done_key] += applied
                counts[rule.name]["excluded"] += len(rows) - len(due)
                _beat(run_id)
                db.session.execute(
                    sa.update(RetentionRun)
                    .where(RetentionRun.id == run_id)
                    .values(counts=_copy(counts), batches=RetentionRun.batches + 1)
                    .execution_options(synchronize_session=False)
                )
                db.session.commit()
                if pause:
                    # A throttle for busy databases: gives other writers room between batches.
                    time_module.sleep(pause)
                if after_batch is not None:
                    after_batch(db.session.get(RetentionRun, run_id))  # type: ignore[arg-type]
        _finish(run_id, "completed", counts)
    except BaseException as exc:
        db.session.rollback()
        try:
            _finish(run_id, "failed", counts, error=f"{type(exc).__name__}: {exc}"[:500])
        except Exception:
            # The database itself failed: the lock goes stale and the next run resumes.
            db.session.rollback()
            log.exception("Could not record the failure of retention run %s", run_id)
        raise
    return db.session.get(RetentionRun, run_id, populate_existing=True)  # type: ignore[return-value]


def _copy(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {name: dict(values) for name, values in counts.items()}


def _finish(
    run_id: int, status: str, counts: dict[str, dict[str, int]], error: str | None = None
) -> None:
    db.session.execute(
        sa.update(RetentionRun)
        .where(RetentionRun.id == run_id)
        .values(status=status, ended_at=utcnow(), counts=_copy(counts), error=error)
        .execution_options(synchronize_session=False)
    )
    _release(run_id)
    db.session.commit()


def has_completed_run(as_of: date) -> bool:
    """Whether a run for ``as_of`` already completed (the daily job runs once a day)."""
    return (
        db.session.scalar(
            sa.select(RetentionRun.id)
            .where(RetentionRun.as_of == as_of, RetentionRun.status == "completed")
            .limit(1)
        )
        is not None
    )


def list_runs(limit: int = 50) -> list[RetentionRun]:
    return list(
        db.session.scalars(sa.select(RetentionRun).order_by(RetentionRun.id.desc()).limit(limit))
    )


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


# The daily schedule ---------------------------------------------------------------
#
# A chain of delayed dramatiq messages: each link runs today's retention and
# sends the next link for tomorrow. The chain's id and the next link's time
# live in one row, so a stale or duplicated message (several workers booting,
# a redelivery) stops instead of multiplying the chain.

SCHEDULE_NAME = "retention-daily"
# A chain whose next link is this late is considered lost and replaced.
SCHEDULE_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class NextLink:
    chain_id: str
    due_at: datetime

    def delay_ms(self, now: datetime) -> int:
        return max(0, int((self.due_at - now).total_seconds() * 1000))


def next_daily_time(now: datetime) -> datetime:
    """The next ``RETENTION_DAILY_AT`` (HH:MM, UTC) strictly after ``now``."""
    hour, minute = (int(part) for part in str(current_app.config["RETENTION_DAILY_AT"]).split(":"))
    candidate = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)


def ensure_daily_schedule(now: datetime | None = None, *, replace: bool = False) -> NextLink | None:
    """Start a chain unless a live one exists (``replace``: start one anyway, for
    an in-memory broker whose messages died with the last process). The
    caller sends the returned link's message after this commits."""
    import uuid

    from crm.models import RetentionSchedule

    now = now or utcnow()
    row = db.session.get(RetentionSchedule, SCHEDULE_NAME, populate_existing=True)
    if row is not None and row.next_run_at > now - SCHEDULE_GRACE and not replace:
        return None
    link = NextLink(chain_id=uuid.uuid4().hex, due_at=next_daily_time(now))
    if row is None:
        db.session.add(
            RetentionSchedule(name=SCHEDULE_NAME, chain_id=link.chain_id, next_run_at=link.due_at)
        )
    else:
        replaced = db.session.execute(
            sa.update(RetentionSchedule)
            .where(
                RetentionSchedule.name == SCHEDULE_NAME, RetentionSchedule.chain_id == row.chain_id
            )
            .values(chain_id=link.chain_id, next_run_at=link.due_at)
            .execution_options(synchronize_session=False)
        )
        if replaced.rowcount != 1:  # type: ignore[attr-defined]
            db.session.rollback()
            return None
    try:
        db.session.commit()
    except sa.exc.IntegrityError:  # another host started a chain at the same moment
        db.session.rollback()
        return None
    return link


def take_daily_turn(
    chain_id: str, due_at: datetime, now: datetime | None = None
) -> NextLink | None:
    """Move the chain on by one day if this message is its current link.
    Returns the next link to send (after this commits), or None for a stale
    or duplicate message, which must not send one."""
    from crm.models import RetentionSchedule

    now = now or utcnow()
    link = NextLink(chain_id=chain_id, due_at=next_daily_time(max(now, due_at)))
    moved = db.session.execute(
        sa.update(RetentionSchedule)
        .where(
            RetentionSchedule.name == SCHEDULE_NAME,
            RetentionSchedule.chain_id == chain_id,
            RetentionSchedule.next_run_at == due_at,
        )
        .values(next_run_at=link.due_at)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return link if moved.rowcount == 1 else None  # type: ignore[attr-defined]


def run_daily(now: datetime | None = None) -> RetentionRun | None:
    """Today's run unless one completed already or another is in progress."""
    today = utc_day(now or utcnow())
    if has_completed_run(today):
        return None
    try:
        return run(today, started_by="system:daily-retention")
    except Conflict:
        log.info("Retention run for %s skipped: another run holds the lock", today)
        return None
