"""Sending a job to an actor by its name, so that job-sending code never imports tasks.

Each package's ``tasks.py`` declares its actors and imports the modules whose
functions they run. Those modules in turn need to send jobs (hand the outbox
over, ask for a link to be mailed). They name the actor by a constant they own
(``mailing.outbox.DELIVERY_JOB``), the actor is declared under that name, and
this module looks it up on the broker: the dependency points one way only.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import sqlalchemy as sa

from extensions import db
from kernel.errors import N_, Unavailable

log = logging.getLogger(__name__)

BROKER_DOWN = N_("The service is briefly unavailable; please try again in a few minutes.")


def job(actor_name: str) -> dramatiq.Actor[Any, Any]:
    """The actor declared under ``actor_name`` (in some package's ``tasks.py``)."""
    return dramatiq.get_broker().get_actor(actor_name)


def send_job(actor_name: str, *args: Any, **options: Any) -> None:
    """Send one message; raises whatever the broker raises."""
    job(actor_name).send_with_options(args=args, **options)


def send_or_unavailable(actor_name: str, *args: Any) -> None:
    """Send a job that is the only record of a person's request: a broker that
    is down becomes ``Unavailable`` (a 503, the same answer for every address)
    rather than an answer of "done" for nothing."""
    try:
        send_job(actor_name, *args)
    except Exception as exc:
        log.warning("A request's job (%s) was not handed to the broker (%s).", actor_name, exc)
        raise Unavailable(BROKER_DOWN) from None


def due_again(first: datetime, last: datetime, now: datetime, least: timedelta) -> bool:
    """Whether a job handed over at ``first``, and again at ``last``, may be
    handed over once more at ``now`` although its message may only be waiting
    behind longer jobs: after ``least``, then after as long again as it has
    waited (``least``, 2 x ``least``, 4 x ...), so that a message truly lost is
    replaced soon and one merely waiting gains a duplicate only every doubling
    of its wait (six behind a six-hour job, for five minutes), not every sweep."""
    return now - last >= max(least, last - first)


def hand_over_lost(
    model: Any,
    first: Any,
    lease: timedelta,
    actor_name: str,
    broker_emptied: bool,
    only: Any = None,
) -> list[int]:
    """Hand over again, to ``actor_name``, the jobs whose rows of ``model``
    (``id``, ``status``, ``claimed_at``: the lease of the worker running it)
    say their message was lost; returns their ids. ``first``: the column of
    when the row was first handed over; ``only``: a condition every such row
    must meet.

    A row ``running`` whose lease ran out goes back to ``queued``; a row
    ``queued`` is handed over again at once when the broker lost its stored
    messages (``broker_emptied``), and otherwise after ``lease``, then each
    time its wait has doubled (``due_again``). Its lease moves to now. A job
    handed over twice must therefore claim its row (queued, or running under
    a lease that ran out) before it does anything."""
    now = datetime.now(UTC)
    condition = sa.true() if only is None else only
    expired = sa.and_(model.status == "running", model.claimed_at <= now - lease)
    waiting = model.status == "queued"
    if not broker_emptied:
        waiting = sa.and_(waiting, sa.func.coalesce(model.claimed_at, first) <= now - lease)
    candidates = db.session.execute(
        sa.select(model.id, first.label("first"), model.claimed_at)
        .where(condition, sa.or_(expired, waiting))
        .order_by(model.id)
    ).all()
    ids = [
        row.id
        for row in candidates
        if broker_emptied
        or row.claimed_at is None
        or due_again(row.first, row.claimed_at, now, lease)
    ]
    if ids:
        db.session.execute(
            sa.update(model)
            .where(model.id.in_(ids), sa.or_(expired, model.status == "queued"))
            .values(status="queued", claimed_at=now)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    for row_id in ids:
        try:
            send_job(actor_name, row_id)
        except Exception as exc:
            # Tried again at a later sweep.
            log.warning(
                "Job %s(%s) not handed over again (%s).", actor_name, row_id, type(exc).__name__
            )
    if ids:
        log.warning("Jobs %s handed over again (their message was lost): %s", actor_name, ids)
    return ids
