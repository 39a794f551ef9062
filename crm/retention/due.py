"""What is due: the purge date of one contact, the rows a rule selects at a date,
and the preview of a run (docs/retention.md)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from crm import external_ids
from crm.changes import receivers, told_systems
from crm.models import (
    Activity,
    Company,
    Contact,
)
from crm.retention.checklist import ChecklistItem, checklist
from crm.retention.rules import RetentionPolicy, Rule, current_retention_policy, start_of_day
from extensions import db
from kernel.database import id_in
from kernel.signals import (
    collect_copy_deletions,
    collect_retention_anchors,
    collect_retention_exclusions,
)
from kernel.signals import sender as signal_sender

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


def anchors_held_elsewhere(counts_from: str) -> sa.Subquery:
    """The (contact_id, at) anchors of a contact rule counting from what crm does
    not hold (``objection``), from the package that holds it
    (kernel.signals.collect_retention_anchors). Without an answer, no contact."""
    for _receiver, query in collect_retention_anchors.send(
        signal_sender(), counts_from=counts_from
    ):
        if query is not None:
            return query.subquery()
    none = sa.select(
        sa.cast(sa.null(), sa.Integer).label("contact_id"),
        sa.cast(sa.null(), Contact.created_at.type).label("at"),
    ).where(sa.false())
    return none.subquery()


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


def _contact_anchor(
    rule: Rule, contact: Contact, held_elsewhere: dict[int, datetime] | None = None
) -> datetime | date | None:
    if rule.counts_from == "last_interaction":
        # A contact who never interacted counts from when it was created.
        return contact.last_interaction_at or contact.created_at
    if rule.counts_from == "created":
        return contact.created_at
    if rule.counts_from == "relationship_end":
        return contact.company.relationship_ended_at if contact.company else None
    if rule.counts_from == "objection" and contact.id is not None:
        if held_elsewhere is not None:
            return held_elsewhere.get(contact.id)
        return _held_anchors(rule.counts_from, [contact.id]).get(contact.id)
    return None


def _held_anchors(counts_from: str, contact_ids: Sequence[int]) -> dict[int, datetime]:
    """The anchors another package holds (``anchors_held_elsewhere``) of these
    contacts, in one query."""
    anchors = anchors_held_elsewhere(counts_from)
    return {
        contact_id: _aware(at)
        for contact_id, at in db.session.execute(
            sa.select(anchors.c.contact_id, anchors.c.at).where(
                id_in(anchors.c.contact_id, list(contact_ids))
            )
        )
        if at is not None
    }


def purge_outlook(contact: Contact, policy: RetentionPolicy | None = None) -> PurgeOutlook:
    """The day a run deletes ``contact`` under the current rules (the earliest
    contact rule), or why no run will while the reason stands."""
    policy = policy or current_retention_policy()
    excluded = retention_exclusions([contact.id]).get(contact.id) if contact.id else None
    return _outlook(contact, policy, excluded, None)


def purge_outlooks(
    contacts: Sequence[Contact], policy: RetentionPolicy | None = None
) -> dict[int, PurgeOutlook]:
    """``purge_outlook`` of many contacts with a fixed number of queries (the
    exclusions, and each anchor held in another package), for reads of pages
    of contacts. Load ``Contact.company`` (and ``Contact.activities`` where a
    rule names activity kinds) with the contacts."""
    policy = policy or current_retention_policy()
    ids = [c.id for c in contacts]
    excluded = retention_exclusions(ids)
    held: dict[int, datetime] = {}
    for counts_from in {r.counts_from for r in policy.held_rules if r.is_contact_rule}:
        if counts_from == "objection" and ids:
            held = _held_anchors(counts_from, ids)
    return {c.id: _outlook(c, policy, excluded.get(c.id), held) for c in contacts}


def _outlook(
    contact: Contact,
    policy: RetentionPolicy,
    excluded: str | None,
    held_elsewhere: dict[int, datetime] | None,
) -> PurgeOutlook:
    best: tuple[date, str] | None = None
    for rule in policy.held_rules:
        if not rule.is_contact_rule or not rule.applies_to(contact):
            continue
        anchor = _contact_anchor(rule, contact, held_elsewhere)
        if anchor is None:
            continue
        day = rule.purge_on(anchor)
        if best is None or day < best[0]:
            best = (day, rule.name)
    return PurgeOutlook(
        purge_on=best[0] if best else None,
        rule=best[1] if best else None,
        excluded_because=excluded,
    )


class _CompanyRead:
    """A company as contact reads return it: its columns and its external ids."""

    def __init__(self, company: Company, external: dict[str, str]) -> None:
        self._company = company
        self.external_ids = external

    def __getattr__(self, name: str) -> Any:
        return getattr(self._company, name)


class ContactRead:
    """A contact as every read returns it: its own columns; as ``retention``,
    when the current rules delete it or why they do not (``purge_outlook``);
    and the ids other systems know it (and its company) by, as ``external_ids``.

    ``ContactRead.many`` builds the reads of a page of contacts with a fixed
    number of queries, whatever the page's size."""

    def __init__(
        self,
        contact: Contact,
        *,
        outlook: PurgeOutlook | None = None,
        contact_ids: dict[str, str] | None = None,
        company_ids: dict[str, str] | None = None,
    ) -> None:
        self._contact = contact
        self.retention = (outlook or purge_outlook(contact)).as_dict()
        if contact_ids is None:
            contact_ids = external_ids.for_contacts([contact.id]).get(contact.id, {})
        self.external_ids = contact_ids
        company = contact.company
        if company is not None and company_ids is None:
            company_ids = external_ids.for_companies([company.id]).get(company.id, {})
        self.company = _CompanyRead(company, company_ids or {}) if company is not None else None

    @classmethod
    def many(cls, contacts: Sequence[Contact]) -> list[ContactRead]:
        """The reads of ``contacts`` in order: one query for their external ids,
        one for their companies', and ``purge_outlooks``' few."""
        outlooks = purge_outlooks(contacts)
        by_contact = external_ids.for_contacts([c.id for c in contacts])
        by_company = external_ids.for_companies(
            [c.company_id for c in contacts if c.company_id is not None]
        )
        return [
            cls(
                c,
                outlook=outlooks[c.id],
                contact_ids=by_contact.get(c.id, {}),
                company_ids=by_company.get(c.company_id, {}) if c.company_id else None,
            )
            for c in contacts
        ]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._contact, name)


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
        elif rule.counts_from == "objection":
            anchors = anchors_held_elsewhere(rule.counts_from)
            query = (
                sa.select(Contact.id, anchors.c.at, anchors.c.at, sa.null(), sa.null())
                .join(anchors, anchors.c.contact_id == Contact.id)
                .where(anchors.c.at < before)
            )
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


def due_batches(
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


def due_counts(rule: Rule, run_days: Sequence[date]) -> list[int]:
    """How many rows a run on each of ``run_days`` would select under ``rule``
    (legal holds included, as the preview counts them), in one query.

    The rule's own arithmetic (``latest_due_anchor_day``) turns each day into
    the anchor it compares with, so a forecast never restates the rules; the
    query is the run's own selection, read once and summed per day.
    """
    if not run_days:
        return []
    selected = _due_query(rule, max(run_days), 0, 0).limit(None).order_by(None).subquery()
    first, second = list(selected.c)[1:3]
    anchor: sa.ColumnElement[Any]
    if rule.is_contact_rule and rule.counts_from == "last_interaction":
        anchor = sa.func.coalesce(first, second)
    elif rule.is_contact_rule and rule.counts_from == "created":
        anchor = second
    else:
        anchor = first

    def is_due(day: date) -> sa.ColumnElement[bool]:
        latest = rule.latest_due_anchor_day(day)
        if rule.is_contact_rule and rule.counts_from == "relationship_end":
            return anchor <= latest  # a calendar date, compared as the run does
        return anchor < start_of_day(latest + timedelta(days=1))

    sums = [sa.func.coalesce(sa.func.sum(sa.case((is_due(d), 1), else_=0)), 0) for d in run_days]
    counts = db.session.execute(sa.select(*sums).select_from(selected)).one()
    return [int(c) for c in counts]


# Preview ---------------------------------------------------------------------------


@dataclass
class RuleOutcome:
    rule: Rule
    count: int = 0
    items: list[DueRow] = field(default_factory=list)
    excluded: list[tuple[DueRow, str]] = field(default_factory=list)
    excluded_count: int = 0
    truncated: bool = False
    # The external systems a run tells of this rule's purges (through the change
    # feed's tombstones and activities.purged items): {system: contacts with an id there}.
    told: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CopyDeletions:
    """What one system that holds copies of our records (a CRM connector) will
    remove of them after a run: ``due`` counts, per object type there
    (``contacts``, ``calls``, ...), the copies of the rows this run removes;
    ``owed`` the removals still owed from before (erasures, earlier runs).
    ``erasure`` says how: ``delete`` or ``anonymise``."""

    system: str
    erasure: str
    due: dict[str, int] = field(default_factory=dict)
    owed: dict[str, int] = field(default_factory=dict)

    @property
    def due_total(self) -> int:
        return sum(self.due.values())

    @property
    def owed_total(self) -> int:
        return sum(self.owed.values())


def copy_deletions(contacts: set[int], activities: dict[int, set[int]]) -> list[CopyDeletions]:
    """What the systems above answer (``kernel.signals.collect_copy_deletions``)
    for a run that removes ``contacts`` whole and ``activities`` ({contact:
    activity ids}) of others."""
    found: list[CopyDeletions] = []
    for _receiver, answer in collect_copy_deletions.send(
        signal_sender(), contacts=contacts, activities=activities
    ):
        found.extend(answer)
    return sorted(found, key=lambda c: c.system)


@dataclass
class Preview:
    as_of: date
    outcomes: list[RuleOutcome]
    external: tuple[Rule, ...]
    # The purges due in other systems, for the admin to do or see done (R16-R18).
    checklist: list[ChecklistItem] = field(default_factory=list)
    # Who is told of every purge besides the change feed's readers (webhooks).
    receivers: list[str] = field(default_factory=list)
    # Per system holding copies (each enabled CRM connector): what it will
    # delete or anonymise there of what this run removes, and what it owes.
    copies: list[CopyDeletions] = field(default_factory=list)

    @property
    def told(self) -> dict[str, int]:
        """{external system: contacts it holds an id of, among those a run touches}."""
        total: dict[str, int] = {}
        for outcome in self.outcomes:
            for system, count in outcome.told.items():
                total[system] = total.get(system, 0) + count
        return dict(sorted(total.items()))


def rows_per_batch() -> int:
    """Rows a run removes per transaction (``RETENTION_BATCH_SIZE``)."""
    return int(current_app.config.get("RETENTION_BATCH_SIZE", 1000))


def preview(
    as_of: date, *, limit: int | None = 1000, policy: RetentionPolicy | None = None
) -> Preview:
    """What a run on ``as_of`` would remove or anonymise, per rule, and what it
    would skip and why. Changes nothing. ``limit`` caps the listed items per
    rule (counts are always complete)."""
    policy = policy or current_retention_policy()
    outcomes = []
    batch_size = rows_per_batch()
    # What the run removes, for the systems holding copies: contacts whole,
    # and activities per contact (a contact rule's contacts take theirs along).
    removed_contacts: set[int] = set()
    removed_activities: dict[int, set[int]] = {}
    for rule in policy.held_rules:
        outcome = RuleOutcome(rule)
        counted: set[int] = set()
        for rows, exclusions in due_batches(rule, as_of, batch_size):
            # The systems told of this batch, of each contact once (an activity
            # rule lists a contact once per activity, maybe in two batches).
            touched = {r.contact_id for r in rows if r.contact_id not in exclusions} - counted
            counted |= touched
            for system, count in told_systems(list(touched)).items():
                outcome.told[system] = outcome.told.get(system, 0) + count
            for row in rows:
                reason = exclusions.get(row.contact_id)
                if reason is not None:
                    outcome.excluded_count += 1
                    if limit is None or len(outcome.excluded) < limit:
                        outcome.excluded.append((row, reason))
                    continue
                outcome.count += 1
                if rule.is_contact_rule:
                    removed_contacts.add(row.contact_id)
                elif row.activity_id is not None:
                    # Deleted by both actions: "anonymise" keeps an unlinked
                    # copy here (AnonymisedActivity), not the row.
                    removed_activities.setdefault(row.contact_id, set()).add(row.activity_id)
                if limit is None or len(outcome.items) < limit:
                    outcome.items.append(row)
                else:
                    outcome.truncated = True
        outcomes.append(outcome)
    for contact_id in removed_contacts:
        removed_activities.pop(contact_id, None)
    copies = copy_deletions(removed_contacts, removed_activities)
    db.session.rollback()
    return Preview(
        as_of=as_of,
        outcomes=outcomes,
        external=policy.external_rules,
        checklist=checklist(as_of, policy),
        receivers=receivers(),
        copies=copies,
    )
