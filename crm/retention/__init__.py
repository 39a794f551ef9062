"""Retention: rule sets from the policy file, purge dates, preview and run
(docs/rules.md R13-R18).

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

The package by job: ``rules`` (parsing and checking the rule sets),
``due`` (purge dates, what a rule selects at a date, the preview),
``checklist`` (purges owed in other systems, R16-R18), ``run``
(the locked run in batches) and ``schedule`` (the daily chain of jobs). Its
public names are re-exported here, so callers write ``retention.run(...)``.
"""

from crm.retention.checklist import ChecklistItem, checklist, mark_done
from crm.retention.due import (
    ContactRead,
    CopyDeletions,
    DueRow,
    Preview,
    PurgeOutlook,
    RuleOutcome,
    due_batches,
    due_counts,
    preview,
    purge_outlook,
    retention_exclusions,
    rows_per_batch,
)
from crm.retention.rules import (
    ACTIONS,
    ACTIVITY,
    CONTACT,
    COUNTS_FROM,
    EARLIEST_RUN,
    EXTERNAL_COUNTS_FROM,
    HELD_CATEGORIES,
    LATEST_RUN,
    MAX_PERIOD_YEARS,
    NEVER_PURGED,
    SUPPORT_CASE,
    Period,
    RetentionPolicy,
    Rule,
    current_retention_policy,
    parse_as_of,
    start_of_day,
    utc_day,
)
from crm.retention.run import (
    LOCK_NAME,
    has_completed_run,
    list_runs,
    run,
)
from crm.retention.schedule import (
    DAILY_RETENTION_JOB,
    DAILY_RUN_BY,
    run_daily,
)

__all__ = [
    "ACTIONS",
    "ACTIVITY",
    "CONTACT",
    "COUNTS_FROM",
    "DAILY_RETENTION_JOB",
    "DAILY_RUN_BY",
    "EARLIEST_RUN",
    "EXTERNAL_COUNTS_FROM",
    "HELD_CATEGORIES",
    "LATEST_RUN",
    "LOCK_NAME",
    "MAX_PERIOD_YEARS",
    "NEVER_PURGED",
    "SUPPORT_CASE",
    "ChecklistItem",
    "ContactRead",
    "CopyDeletions",
    "DueRow",
    "Period",
    "Preview",
    "PurgeOutlook",
    "RetentionPolicy",
    "Rule",
    "RuleOutcome",
    "checklist",
    "current_retention_policy",
    "due_batches",
    "due_counts",
    "has_completed_run",
    "list_runs",
    "mark_done",
    "parse_as_of",
    "preview",
    "purge_outlook",
    "retention_exclusions",
    "rows_per_batch",
    "run",
    "run_daily",
    "start_of_day",
    "utc_day",
]
