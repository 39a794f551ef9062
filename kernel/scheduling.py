"""The scheduler: hands the periodic jobs to the broker at their times; workers run them.

One process runs it, ``flask --app app scheduler run`` (APScheduler's
``BlockingScheduler``). With no broker configured (the in-process worker of
``flask run``), the web process runs it in a background thread instead, from
its first request on, so that a development install keeps working alone.

It replaces a chain of delayed messages that re-sent itself each day: a Redis
flushed or restarted empty lost the chain and nothing said so. Here nothing
lives in the broker between turns. Each job is checked often (``CHECK_EVERY``,
or its own interval if shorter); its current *turn* is the latest moment it
was due, computed from the clock alone (the daily time, or a multiple of the
interval since ``EPOCH``), so every host agrees on it. The first scheduler to
take the turn (``take_turn``, a conditional UPDATE of ``ScheduledJob``) sends
the job; another scheduler process, on another host for availability, finds
the turn taken and sends nothing. A turn missed while the scheduler was down,
or whose message the broker refused, is sent at the next check.

The jobs themselves are listed once, in ``app.register_scheduling``, by actor
name (``kernel.jobs``): this module never imports a package's tasks.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup

from extensions import db
from kernel.jobs import send_job
from kernel.models import ScheduledJob
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)

# Interval turns count from here, so that two schedulers started at different
# moments still agree on which turn is current.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# How often a job's turn is looked at: the delay before a missed turn is caught up.
CHECK_EVERY = timedelta(seconds=60)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Periodic:
    """A job sent to ``actor_name`` once a day at ``daily_at`` (UTC) or every ``every``."""

    name: str
    actor_name: str
    every: timedelta | None = None
    daily_at: time | None = None

    @property
    def period(self) -> timedelta:
        return DAY if self.daily_at is not None else (self.every or DAY)

    @property
    def is_enabled(self) -> bool:
        return self.daily_at is not None or (self.every is not None and self.every > timedelta(0))

    @property
    def check_every(self) -> timedelta:
        return min(self.period, CHECK_EVERY)

    def turn(self, now: datetime) -> datetime:
        """The latest moment at or before ``now`` this job was due."""
        now = now.astimezone(UTC)
        if self.daily_at is not None:
            due = now.replace(
                hour=self.daily_at.hour, minute=self.daily_at.minute, second=0, microsecond=0
            )
            return due if due <= now else due - DAY
        assert self.every is not None
        return EPOCH + ((now - EPOCH) // self.every) * self.every


def daily_at(value: str) -> time:
    """``HH:MM`` (UTC) as a time; a clear error for anything else."""
    try:
        hour, minute = (int(part) for part in value.split(":"))
        return time(hour, minute)
    except ValueError:
        raise RuntimeError(f"A daily time must be HH:MM (UTC), not {value!r}.") from None


def holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


@dataclass(frozen=True)
class Turn:
    """A turn this process took: ``due_at``, and the job's turn before it (None: its first)."""

    name: str
    due_at: datetime
    previous: datetime | None


def take_turn(name: str, due_at: datetime, now: datetime | None = None) -> Turn | None:
    """Take the turn ``due_at`` of job ``name`` for this process, committed;
    None when another scheduler (or this one) took it already."""
    now = now or utcnow()
    previous = db.session.scalar(
        sa.select(ScheduledJob.last_due_at).where(ScheduledJob.name == name)
    )
    if previous is None:
        db.session.add(
            ScheduledJob(
                name=name, last_due_at=due_at, last_sent_at=now, last_sent_by=holder(),
                created_at=now,
            )
        )  # fmt: skip
        try:
            db.session.commit()
        except sa.exc.IntegrityError:  # another scheduler wrote the first turn
            db.session.rollback()
            return None
        return Turn(name, due_at, None)
    # The row's turn must still be older: two schedulers that read the same
    # ``previous`` both try, and the second UPDATE matches nothing.
    taken = db.session.execute(
        sa.update(ScheduledJob)
        .where(ScheduledJob.name == name, ScheduledJob.last_due_at < due_at)
        .values(last_due_at=due_at, last_sent_at=now, last_sent_by=holder())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return Turn(name, due_at, previous) if taken.rowcount == 1 else None  # type: ignore[attr-defined]


def give_back_turn(turn: Turn) -> None:
    """Undo ``take_turn`` (the broker refused the job): the next check tries again."""
    mine = sa.and_(ScheduledJob.name == turn.name, ScheduledJob.last_due_at == turn.due_at)
    if turn.previous is None:
        db.session.execute(sa.delete(ScheduledJob).where(mine))
    else:
        db.session.execute(sa.update(ScheduledJob).where(mine).values(last_due_at=turn.previous))
    db.session.commit()


def run_turn(job: Periodic, now: datetime | None = None) -> bool:
    """Send ``job`` if its current turn is not taken yet; whether this call sent it."""
    turn = take_turn(job.name, job.turn(now or utcnow()), now)
    if turn is None:
        return False
    try:
        send_job(job.actor_name)
    except Exception as exc:
        give_back_turn(turn)
        log.warning("Scheduled job %s not sent, retried at the next check: %s", job.name, exc)
        return False
    log.info("Scheduled job %s sent (turn %s)", job.name, turn.due_at.isoformat())
    return True


def _check(app: Flask, job: Periodic) -> None:
    with app.app_context():
        try:
            run_turn(job)
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            # The database is down, or `flask db upgrade` has not made the table yet.
            db.session.rollback()
            log.warning("Scheduled job %s not checked: %s", job.name, type(exc).__name__)
        except Exception:
            db.session.rollback()
            log.exception("Scheduled job %s: the check failed", job.name)
        finally:
            db.session.remove()


def periodic_jobs(app: Flask) -> list[Periodic]:
    """The enabled jobs of ``app`` (``app.register_scheduling`` lists them)."""
    return [job for job in app.extensions.get("periodic_jobs", []) if job.is_enabled]


def add_jobs(app: Flask, scheduler: Any) -> None:
    """One APScheduler job per periodic job, each checked first at once (a turn
    missed while no scheduler ran is caught up at start)."""
    from apscheduler.triggers.interval import IntervalTrigger

    for job in periodic_jobs(app):
        scheduler.add_job(
            _check,
            IntervalTrigger(seconds=job.check_every.total_seconds(), timezone=UTC),
            args=(app, job),
            id=job.name,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )


def start_in_background(app: Flask) -> Any:
    """The scheduler as a thread of this process (no broker: the in-process worker)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone=UTC, daemon=True)
    add_jobs(app, scheduler)
    scheduler.start()
    app.extensions["background_scheduler"] = scheduler
    return scheduler


scheduler_group = AppGroup("scheduler", help="The process that hands periodic jobs to workers.")


@scheduler_group.command("run")
def run_scheduler() -> None:
    """Run the scheduler until stopped (SIGTERM or Ctrl-C). Run one, or two on
    separate hosts for availability: a turn is only ever sent once."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not logging.getLogger().handlers:
        # Each turn sent is worth a line; APScheduler's line per check is not.
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = BlockingScheduler(timezone=UTC)
    add_jobs(app, scheduler)
    for job in periodic_jobs(app):
        when = (
            f"daily at {job.daily_at:%H:%M} UTC"
            if job.daily_at
            else f"every {job.period.total_seconds():g} s"
        )
        click.echo(f"scheduler: {job.name} -> {job.actor_name}, {when}")

    def stop(signum: int, frame: object) -> None:
        # From the signal handler: end the main loop; a check under way finishes first.
        threading.Thread(target=scheduler.shutdown, name="scheduler-stop").start()

    signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        scheduler.shutdown()
    click.echo("scheduler: stopped")


@scheduler_group.command("status")
def show_status() -> None:
    """Each periodic job, its last turn and who sent it."""
    rows = {row.name: row for row in db.session.scalars(sa.select(ScheduledJob))}
    for job in periodic_jobs(current_app):  # type: ignore[arg-type]
        row = rows.get(job.name)
        last = (
            f"last turn {row.last_due_at:%Y-%m-%d %H:%M:%S} sent by {row.last_sent_by}"
            if row
            else "never sent"
        )
        click.echo(f"{job.name}: {job.actor_name}, {last}")


def init_app(app: Flask, jobs: Sequence[Periodic]) -> None:
    app.extensions["periodic_jobs"] = list(jobs)
    app.cli.add_command(scheduler_group)
    if app.config["CONSENT_ENV"] == "testing" or "inprocess_worker" not in app.extensions:
        return
    start_once = threading.Lock()

    # At the first request, not at import: `flask db upgrade` and the other
    # commands build this app too, and must not start sending jobs.
    @app.before_request
    def _start_scheduler() -> None:
        if start_once.acquire(blocking=False):
            start_in_background(app)
