"""The retention run: bounded batches, each one short transaction that re-selects
what is due, so it can be killed at any point and run again (a contact is removed
whole or not at all); one run at a time across all hosts, by a row in
``retention_lock``."""

from __future__ import annotations

import logging
import os
import socket
import time as time_module
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from crm import changes as change_feed
from crm.models import (
    SUPPORT_FIELDS,
    Activity,
    AnonymisedActivity,
    RetentionLock,
    RetentionRun,
    support_code_problem,
)
from crm.retention.due import DueRow, due_batches, rows_per_batch
from crm.retention.rules import RetentionPolicy, Rule, current_retention_policy, utc_day
from crm.services import remove_contacts
from extensions import db
from kernel.database import id_in
from kernel.errors import Conflict
from kernel.signals import retention_due
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

LOCK_NAME = "retention"

log = logging.getLogger(__name__)


# Run ---------------------------------------------------------------------------------


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


def _anonymise(rule: Rule, rows: list[DueRow], ids: list[int], as_of: date) -> None:
    """R15: what general support information may stay, and nothing linkable to a
    person: the kind, the month, and the case's product, problem category and
    resolution as codes; no contact, author, note or exact time. A code that is
    not one (``crm.models.SUPPORT_CODE``) is dropped, not copied."""
    codes = {
        activity_id: {
            name: value
            for name, value in zip(SUPPORT_FIELDS, values, strict=True)
            if value is not None and support_code_problem(value) is None
        }
        for activity_id, *values in db.session.execute(
            sa.select(Activity.id, *(getattr(Activity, name) for name in SUPPORT_FIELDS)).where(
                id_in(Activity.id, ids)
            )
        )
    }
    db.session.execute(
        sa.insert(AnonymisedActivity),
        [
            {
                "kind": r.kind,
                "occurred_month": utc_day(r.occurred_at).replace(day=1),
                "rule": rule.name,
                "anonymised_on": as_of,
                **{name: None for name in SUPPORT_FIELDS},
                **codes.get(int(r.activity_id or 0), {}),
            }
            for r in rows
            if r.occurred_at is not None
        ],
    )


def _apply(rule: Rule, rows: list[DueRow], as_of: date) -> int:
    if not rows:
        return 0
    if rule.is_contact_rule:
        # Every connected system is told, by a tombstone naming the rule.
        return remove_contacts(
            [r.contact_id for r in rows], tombstone=change_feed.CONTACT_PURGED, rule=rule.name
        )
    ids = [int(r.activity_id) for r in rows if r.activity_id is not None]
    if rule.action == "anonymise":
        _anonymise(rule, rows, ids, as_of)
    removed = list(
        db.session.scalars(
            sa.delete(Activity)
            .where(id_in(Activity.id, ids))
            .returning(Activity.contact_id)
            .execution_options(synchronize_session=False)
        )
    )
    # A CRM that holds copies of these activities removes them too: one item
    # per contact, with the rule, what was done and how many.
    per_contact = Counter(removed)
    change_feed.record(
        change_feed.ACTIVITIES_PURGED,
        list(per_contact),
        per_contact={cid: {"count": count} for cid, count in per_contact.items()},
        rule=rule.name,
        action="anonymised" if rule.action == "anonymise" else "deleted",
    )
    return len(removed)


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
    run finishes the work. The suppression list and the scoped "do not contact"
    entries are touched only once the policy file's ``[do_not_contact]`` period
    has passed (``kernel.signals.retention_due``; R22).
    Raises Conflict while another run holds the lock.
    """
    policy = policy or current_retention_policy()
    size = batch_size or rows_per_batch()
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
            for rows, exclusions in due_batches(rule, as_of, size, lock=True):
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
        # What the other packages keep for a limited time: the "do not contact"
        # entries, for as long as the policy file says (R22). Committed by _finish.
        for _receiver, removed in retention_due.send(signal_sender(), as_of=as_of):
            for name, count in removed.items():
                counts[name] = {"deleted": count, "anonymised": 0, "excluded": 0}
        _beat(run_id)
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


def last_run_age_seconds(at: datetime | None = None) -> float | None:
    """Seconds since the last completed run ended; None before the first one.
    The ``consent_retention_last_run_age_seconds`` metric: a daily run that
    stopped happening shows here (docs/operations.md, Alerts)."""
    ended = db.session.scalar(
        sa.select(sa.func.max(RetentionRun.ended_at)).where(RetentionRun.status == "completed")
    )
    db.session.rollback()
    if ended is None:
        return None
    return max(0.0, ((at or utcnow()) - ended).total_seconds())


def list_runs(limit: int = 50) -> list[RetentionRun]:
    return list(
        db.session.scalars(sa.select(RetentionRun).order_by(RetentionRun.id.desc()).limit(limit))
    )
