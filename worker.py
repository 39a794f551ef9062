"""The dramatiq entry point: ``dramatiq worker`` (or ``dramatiq worker:broker``).

Builds the app once per worker process and runs every actor inside its
application context; each process also runs the outbox sweeper every
``OUTBOX_SWEEP_INTERVAL_S`` (``mailing.tasks.PeriodicSweep``) and reads the
returned-mail folder every ``BOUNCE_IMAP_INTERVAL_S`` when ``BOUNCE_IMAP_URL``
is set (``mailing.tasks.PeriodicBouncePoll``). The broker comes
from ``DRAMATIQ_BROKER_URL``.
"""

from __future__ import annotations

from app import create_app
from extensions import AppContextMiddleware, broker
from mailing.tasks import PeriodicBouncePoll, PeriodicSweep

app = create_app()
broker.add_middleware(AppContextMiddleware(app))
broker.add_middleware(PeriodicSweep(app))
broker.add_middleware(PeriodicBouncePoll(app))

__all__ = ["app", "broker"]
