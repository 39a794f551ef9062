"""The checklist of purges owed in other systems (R16-R18).

Cloud accounts, financial records, server logs, chat transcripts, SMS traffic
data... are held in other systems; the rule sets say where (``held_in``) and
which connector or person purges them there (``purged_by``). No run here can
touch them, so the preview turns each such rule into a checklist item for
the admin: what is due where (everything counting from the item's cut-off
day or earlier), who purges it, and whether someone has said it was done.
Marking an item done records who and when, here and in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from crm.models import RetentionChecklistMark
from crm.retention.rules import RetentionPolicy, Rule, current_retention_policy
from crm.services import audit
from extensions import db
from kernel.access import Actor
from kernel.errors import N_, InvalidInput
from kernel.timestamps import utcnow


@dataclass(frozen=True)
class ChecklistItem:
    """One rule held elsewhere, as on a day: what is due there and whether it was done."""

    rule: Rule
    # Everything whose period counts from this day or earlier is due for purging.
    due_through: date
    # The latest mark of this rule, if any (it may cover an earlier cut-off).
    mark: RetentionChecklistMark | None

    @property
    def is_done(self) -> bool:
        return self.mark is not None and self.mark.done_through >= self.due_through

    def explain(self) -> str:
        return (
            f"{self.rule.held_in}: {self.rule.action} {self.rule.category} counting "
            f"({self.rule.counts_from.replace('_', ' ')}) from {self.due_through.isoformat()} "
            f"or earlier; purged by {self.rule.purged_by}"
        )


def _latest_marks(names: list[str]) -> dict[str, RetentionChecklistMark]:
    if not names:
        return {}
    marks = db.session.scalars(
        sa.select(RetentionChecklistMark)
        .where(RetentionChecklistMark.rule.in_(names))
        .order_by(RetentionChecklistMark.done_through, RetentionChecklistMark.id)
    )
    return {mark.rule: mark for mark in marks}  # the latest cut-off of each rule wins


def checklist(as_of: date, policy: RetentionPolicy | None = None) -> list[ChecklistItem]:
    """The purges due in other systems on ``as_of``, one item per rule held elsewhere."""
    policy = policy or current_retention_policy()
    rules = policy.external_rules
    marks = _latest_marks([r.name for r in rules])
    return [
        ChecklistItem(rule=r, due_through=r.latest_due_anchor_day(as_of), mark=marks.get(r.name))
        for r in rules
    ]


def mark_done(
    actor: Actor, rule_name: str, done_through: date, policy: RetentionPolicy | None = None
) -> RetentionChecklistMark:
    """Record that the data of rule ``rule_name`` held elsewhere was purged there,
    everything counting from ``done_through`` or earlier (R16-R18): who said so and
    when, in ``retention_checklist_mark`` and the audit log. Marking the same
    cut-off again records nothing new. Commits."""
    policy = policy or current_retention_policy()
    rule = next((r for r in policy.external_rules if r.name == rule_name), None)
    if rule is None:
        raise InvalidInput(
            N_("No retention rule %(rule)r whose data is held in another system."),
            values={"rule": rule_name[:64]},
            code="unknown_rule",
            fields={"rule": ["Unknown rule."]},
        )
    due = rule.latest_due_anchor_day(utcnow().date())
    if done_through > due:
        raise InvalidInput(
            N_(
                "Nothing of %(rule)r counting from after %(day)s is due yet; "
                "mark it done through that day or earlier."
            ),
            values={"rule": rule.name, "day": due.isoformat()},
            code="not_due_yet",
            fields={"done_through": ["Not due yet."]},
        )
    existing = db.session.scalar(
        sa.select(RetentionChecklistMark).where(
            RetentionChecklistMark.rule == rule.name,
            RetentionChecklistMark.done_through == done_through,
        )
    )
    if existing is not None:
        return existing
    mark = RetentionChecklistMark(
        rule=rule.name, done_through=done_through, done_by=actor.label, done_at=utcnow()
    )
    db.session.add(mark)
    audit(
        actor,
        "retention.purged_elsewhere",
        detail=f"{rule.name} through {done_through.isoformat()} in {rule.held_in}"[:500],
    )
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        # Someone marked the same cut-off at the same moment: theirs stands.
        db.session.rollback()
        return db.session.scalars(
            sa.select(RetentionChecklistMark).where(
                RetentionChecklistMark.rule == rule.name,
                RetentionChecklistMark.done_through == done_through,
            )
        ).one()
    return mark
