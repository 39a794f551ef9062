"""One change to every contact of a filtered list: end an industry-list basis,
set or lift a legal hold (docs/staff-pages.md).

Only changes that are safe to make to many at once: each ends or keeps
something, none grants a basis or unblocks marketing. The staff member sees
how many contacts the change reaches and confirms that number;
``queue_bulk_action`` refuses if the list has changed since, stores the run
and hands it to the worker after the commit, so that a million contacts do
not hold the request. The worker (``run_bulk_action``) walks the contacts in
id order a chunk at a time through the same services the single-contact
actions use, each contact audited as those are, and records its progress
on the run, so that a run cut off resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from consent.bases import end_industry_list
from consent.contact_filters import ContactFilter, filter_args, matching_contacts, parse_filter
from consent.models import ALL, BulkAction, PermissionState
from crm import services as crm
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.errors import N_, Conflict, InvalidInput, NotFound, Unavailable
from kernel.jobs import BROKER_DOWN, hand_over_lost, send_job
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)

# The job that runs a stored bulk action (declared in consent.tasks).
BULK_JOB = "run_bulk_action"
END_INDUSTRY_LIST, SET_LEGAL_HOLD, LIFT_LEGAL_HOLD = (
    "end_industry_list",
    "set_legal_hold",
    "lift_legal_hold",
)
ACTIONS = (END_INDUSTRY_LIST, SET_LEGAL_HOLD, LIFT_LEGAL_HOLD)
CHUNK = 500
MAX_REASON = 500
# A worker holds its run this long from its claim and from each chunk it
# records; a second delivery of the job finds the lease alive and does
# nothing, and one that comes after a worker died (no chunk recorded for this
# long) takes the run over where it stopped. Far longer than one chunk takes.
LEASE = timedelta(minutes=10)
# What a failed run shows and logs: an exception's text can carry personal data
# (SQLAlchemy's name the bound parameters, such as addresses), its type cannot.
FAILED = "The run stopped on an error; the worker's log names its type."


def check_action(action: str) -> str:
    if action not in ACTIONS:
        raise InvalidInput(
            N_("Unknown bulk action %(action)r; use one of: %(known)s."),
            values={"action": action, "known": ", ".join(ACTIONS)},
            fields={"action": ["Unknown."]},
        )
    return action


def _reason(action: str, reason: str | None) -> str | None:
    """The legal hold's reason, checked as ``crm.services.set_legal_hold`` checks
    it, before anything is stored: a bad reason must not fail half a run."""
    text = " ".join((reason or "").split())
    if action == SET_LEGAL_HOLD and not text:
        raise InvalidInput(N_("A legal hold needs its reason."), fields={"reason": ["Required."]})
    if len(text) > MAX_REASON:
        raise InvalidInput(
            N_("The reason is longer than %(most)s characters."),
            values={"most": MAX_REASON},
            fields={"reason": ["Too long."]},
        )
    return text or None


def _applies(action: str) -> sa.ColumnElement[bool]:
    """The contacts the action would change: the others it leaves as they are."""
    if action == END_INDUSTRY_LIST:
        return sa.exists().where(
            PermissionState.contact_id == Contact.id,
            PermissionState.topic == ALL,
            PermissionState.channel == ALL,
            PermissionState.industry_list_since.is_not(None),
        )
    if action == SET_LEGAL_HOLD:
        # An existing hold keeps its own reason: a second one would overwrite it.
        return Contact.legal_hold_reason.is_(None)
    return Contact.legal_hold_reason.is_not(None)


def _targets(f: ContactFilter, action: str, at: datetime) -> sa.Select[Any]:
    return matching_contacts(f, at=at).where(_applies(action))


def count_targets(f: ContactFilter, action: str, at: datetime) -> int:
    """How many contacts ``action`` would change: the number the staff member confirms."""
    check_action(action)
    query = _targets(f, action, at).subquery()
    return db.session.scalar(sa.select(sa.func.count()).select_from(query)) or 0


def queue_bulk_action(
    actor: Actor,
    f: ContactFilter,
    action: str,
    *,
    reason: str | None,
    confirmed: int,
    at: datetime,
) -> BulkAction:
    """Store the run and hand it to the worker, after the commit.

    Refused, with nothing stored, when the action or reason is not valid or the
    list no longer has the ``confirmed`` number of contacts to change (someone
    changed it since the confirmation page): the staff member confirms what
    will happen, not an older picture of it.
    """
    check_action(action)
    text = _reason(action, reason)
    total = count_targets(f, action, at)
    if total != confirmed:
        raise Conflict(
            N_(
                "The list changed since you confirmed it: the action now reaches %(total)s "
                "contacts, not %(confirmed)s. Check the list and confirm again."
            ),
            values={"total": total, "confirmed": confirmed},
            code="list_changed",
        )
    if total == 0:
        raise Conflict(N_("No contact in the list would change."), code="nothing_to_change")
    run = BulkAction(
        action=action,
        filter=filter_args(f),
        as_of=at,
        reason=text,
        actor=actor.label,
        total=total,
    )
    db.session.add(run)
    crm.audit(actor, f"contact.bulk.{action}", detail=f"run={_pending_id(run)} contacts={total}")
    db.session.commit()
    run_id = run.id
    try:
        send_job(BULK_JOB, run_id)
    except Exception as exc:
        # Without its job the run would wait forever: keep nothing.
        log.warning("Bulk action %s not handed to the broker (%s).", run_id, type(exc).__name__)
        db.session.rollback()
        db.session.execute(sa.delete(BulkAction).where(BulkAction.id == run_id))
        # The audit log already says the run was asked for; it also says that
        # it never ran, so that it does not read as a change made.
        crm.audit(
            actor, f"contact.bulk.{action}", detail=f"run={run_id} refused: broker unavailable"
        )
        db.session.commit()
        raise Unavailable(BROKER_DOWN) from None
    return run


def _pending_id(run: BulkAction) -> int:
    db.session.flush()
    return run.id


def get_run(run_id: int) -> BulkAction:
    run = db.session.get(BulkAction, run_id)
    if run is None:
        raise NotFound(N_("No such bulk action."))
    return run


def _changes(run: BulkAction, actor: Actor) -> Callable[[list[tuple[int, str]]], int]:
    """The single-contact change of ``run.action`` over one chunk; commits."""
    note = f"Ended by bulk action #{run.id} on a filtered contact list."

    def end_list(rows: list[tuple[int, str]]) -> int:
        changed = end_industry_list([r[0] for r in rows], actor, note, ref=f"bulk-action:{run.id}")
        for contact_id, _ in rows:
            crm.audit(actor, "contact.basis_ended", contact_id, detail=f"bulk={run.id}")
        db.session.commit()
        return changed

    def set_hold(rows: list[tuple[int, str]]) -> int:
        for contact_id, _ in rows:
            crm.set_legal_hold(actor, contact_id, run.reason or "")
        return len(rows)

    def lift_hold(rows: list[tuple[int, str]]) -> int:
        for contact_id, _ in rows:
            crm.lift_legal_hold(actor, contact_id)
        return len(rows)

    return {END_INDUSTRY_LIST: end_list, SET_LEGAL_HOLD: set_hold, LIFT_LEGAL_HOLD: lift_hold}[
        run.action
    ]


def run_bulk_action(run_id: int) -> None:
    """Apply a stored run (the worker's job); safe to run twice.

    A run done or failed is left alone; one cut off goes on after the last
    contact it recorded. Contacts that no longer qualify (a hold lifted by
    hand meanwhile) are skipped, not forced.
    """
    lease = utcnow()
    if not _take_lease(run_id, lease, _claimable(lease)):
        return
    run = get_run(run_id)
    kind, _, name = run.actor.partition(":")
    actor = Actor(kind=kind, name=name)
    f = parse_filter(run.filter)
    change = _changes(run, actor)
    try:
        while True:
            rows = [
                (r[0], r[1])
                for r in db.session.execute(
                    sa.select(Contact.id, Contact.email)
                    .where(
                        Contact.id.in_(
                            _targets(f, run.action, run.as_of)
                            .where(Contact.id > run.after_id)
                            .order_by(Contact.id)
                            .limit(CHUNK)
                            .scalar_subquery()
                        )
                    )
                    .order_by(Contact.id)
                )
            ]
            if not rows:
                break
            changed = change(rows)
            renewed = utcnow()
            if not _take_lease(
                run_id,
                renewed,
                BulkAction.claimed_at == lease,
                done=BulkAction.done + len(rows),
                changed=BulkAction.changed + changed,
                after_id=rows[-1][0],
            ):
                return  # another worker took the run over after our lease ran out
            lease = renewed
        _take_lease(run_id, utcnow(), BulkAction.claimed_at == lease, status="done")
    except Exception as exc:
        db.session.rollback()
        # Only the type, in the row (shown on the run's page) and in the log:
        # the message of a database error holds its bound values, addresses too.
        log.error("Bulk action %s failed: %s.", run_id, type(exc).__name__)
        _take_lease(
            run_id,
            utcnow(),
            BulkAction.claimed_at == lease,
            status="failed",
            error=f"{type(exc).__name__}: {FAILED}"[:MAX_REASON],
        )
        # Not raised on: the broker would log the message (and retry a run
        # that is failed and stays so).


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    """Queued, or running under a lease that ran out (its worker died)."""
    return sa.or_(
        BulkAction.status == "queued",
        sa.and_(BulkAction.status == "running", BulkAction.claimed_at <= now - LEASE),
    )


def resend_lost_runs(broker_emptied: bool = False) -> list[int]:
    """Hand over again the runs whose job was lost; returns their ids
    (``kernel.jobs.hand_over_lost``, as for import batches): a run whose lease
    ran out goes back to ``queued`` and resumes after the last contact it
    recorded; a queued run's job is sent again."""
    return hand_over_lost(BulkAction, BulkAction.created_at, LEASE, BULK_JOB, broker_emptied)


def _take_lease(run_id: int, lease: datetime, held: sa.ColumnElement[bool], **values: Any) -> bool:
    """One conditional UPDATE, committed: the run's row gets the new lease (and
    ``values``) only while ``held`` is true of it; says whether it did. A
    ``status`` other than running ends the run."""
    status = values.pop("status", "running")
    finished = {"finished_at": lease} if status != "running" else {}
    taken = db.session.execute(
        sa.update(BulkAction)
        .where(BulkAction.id == run_id, held)
        .values(status=status, claimed_at=lease, **finished, **values)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return bool(taken)
