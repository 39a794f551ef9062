"""Dramatiq actors: ids in, one service call, safe to run twice."""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
import sqlalchemy as sa
from flask import Flask

from extensions import broker, db
from mailing import (
    art14_notices,
    bounce_mailbox,
    delivery,
    notices,
    outbox,
    privacy_requests,
    staff_mail,
    subscription_flows,
)
from mailing.transport import TemporaryFailure

# Temporary SMTP trouble (4xx, connection refused) is retried with exponential
# backoff; anything else is a bug or a permanent refusal and is not.
MAX_DELIVERY_RETRIES = 25

log = logging.getLogger(__name__)


def _retry_temporary_failures(retries: int, exception: BaseException) -> bool:
    return isinstance(exception, TemporaryFailure) and retries < MAX_DELIVERY_RETRIES


_DELIVERY: dict[str, Any] = {
    "broker": broker,
    "queue_name": "mail",
    "retry_when": _retry_temporary_failures,
    "min_backoff": 5_000,
    "max_backoff": 30 * 60_000,
}


@dramatiq.actor(**_DELIVERY, time_limit=120_000)
def deliver_email(outbox_id: int) -> None:
    # Jobs of one row each, as a version before deliver_emails handed them over.
    delivery.deliver(outbox_id)


@dramatiq.actor(actor_name=outbox.DELIVERY_JOB, **_DELIVERY, time_limit=600_000)
def deliver_emails(outbox_ids: list[int]) -> None:
    delivery.deliver_many(outbox_ids)


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=0, time_limit=300_000)
def sweep_outbox() -> None:
    outbox.sweep_all()


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=3, time_limit=3_600_000)
def send_policy_notices(policy_version_id: int) -> None:
    """Queue the notice of a major policy version to every contact (R24)."""
    notices.queue_policy_notices(policy_version_id)


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=3, time_limit=3_600_000)
def send_art14_notices() -> None:
    """Queue the GDPR art. 14 notice for every contact still owed one (daily)."""
    art14_notices.queue_art14_notices()


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=3, time_limit=60_000)
def send_staff_password_reset(user_id: int) -> None:
    """Mail a staff user a password-reset link (crm.accounts); the link is
    single use, so a repeat after a lost acknowledgement is harmless."""
    staff_mail.send_password_reset(user_id)


@dramatiq.actor(
    actor_name=subscription_flows.UNSUBSCRIBE_LINK_JOB,
    broker=broker,
    queue_name="mail",
    max_retries=3,
    time_limit=60_000,
)
def send_unsubscribe_link(address_hash: str) -> None:
    subscription_flows.send_unsubscribe_link(address_hash)


@dramatiq.actor(
    actor_name=privacy_requests.PRIVACY_REQUEST_JOB,
    broker=broker,
    queue_name="mail",
    max_retries=3,
    time_limit=60_000,
)
def open_privacy_request(address_hash: str, kind: str) -> None:
    privacy_requests.open_privacy_request(address_hash, kind)


class PeriodicSweep(dramatiq.Middleware):
    """Runs the sweeper (``outbox.sweep_all``) every ``OUTBOX_SWEEP_INTERVAL_S`` in a
    thread of each worker process, from its boot on.

    It needs no message to start it: a broker that lost every message (a Redis
    restarted empty) cannot lose the sweeper too, and the outbox rows it owes
    are handed over again without anyone running a command. Several worker
    processes sweeping at once hand some rows over twice, which ``deliver``
    makes harmless.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.stopping = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.start()

    def start(self) -> None:
        interval = float(self.app.config["OUTBOX_SWEEP_INTERVAL_S"])
        if interval > 0:
            threading.Thread(
                target=self._run, args=(interval,), name="outbox-sweeper", daemon=True
            ).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping.set()

    def _run(self, interval: float) -> None:
        while not self.stopping.is_set():
            with self.app.app_context():
                try:
                    outbox.sweep_all()
                except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
                    # The database is down, or `flask db upgrade` has not made the tables yet.
                    log.warning("Outbox sweep skipped: %s", type(exc).__name__)
                except Exception:
                    log.exception("Outbox sweep failed")
                finally:
                    db.session.remove()
            self.stopping.wait(interval)


@dramatiq.actor(broker=broker, queue_name="mail", max_retries=0, time_limit=600_000)
def poll_bounce_mailbox() -> None:
    bounce_mailbox.poll_mailbox()


class PeriodicBouncePoll(PeriodicSweep):
    """Reads the returned-mail folder (``BOUNCE_IMAP_URL``) every
    ``BOUNCE_IMAP_INTERVAL_S`` in a thread of each worker process, as
    ``PeriodicSweep`` sweeps the outbox; nothing when no mailbox is configured."""

    def start(self) -> None:
        interval = float(self.app.config["BOUNCE_IMAP_INTERVAL_S"])
        if self.app.config.get("BOUNCE_IMAP_URL") and interval > 0:
            threading.Thread(
                target=self._run, args=(interval,), name="bounce-poller", daemon=True
            ).start()

    def _run(self, interval: float) -> None:
        while not self.stopping.is_set():
            with self.app.app_context():
                try:
                    bounce_mailbox.poll_mailbox()
                except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
                    # The database is down: the messages stay in the mailbox for the next poll.
                    log.warning("Bounce mailbox poll skipped: %s", type(exc).__name__)
                except Exception:
                    # An IMAP server away or refusing the login: try again next time.
                    log.exception("Bounce mailbox poll failed")
                finally:
                    db.session.remove()
            self.stopping.wait(interval)


def register(app: Flask) -> None:
    """The in-process worker (no broker configured, ``flask run`` alone) sweeps too;
    ``worker.py`` adds ``PeriodicSweep`` to real worker processes."""
    if app.config["CONSENT_ENV"] != "testing" and "inprocess_worker" in app.extensions:
        sweep = PeriodicSweep(app)
        start_once = threading.Lock()

        # At the first request, not at import: `flask db upgrade` and the other
        # commands build this app too, before the tables exist.
        @app.before_request
        def _start_sweeper() -> None:
            if start_once.acquire(blocking=False):
                sweep.start()
