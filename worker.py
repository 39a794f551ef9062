"""The dramatiq entry point: ``dramatiq worker`` (or ``dramatiq worker:broker``).

Builds the app once per worker process and runs every actor inside its
application context. The periodic jobs (the daily retention run, the outbox
sweep, the art. 14 notices, the bounce poll) come from the scheduler process,
``flask --app app scheduler run`` (``kernel.scheduling``). The broker comes
from ``DRAMATIQ_BROKER_URL``.
"""

from __future__ import annotations

from app import create_app
from extensions import AppContextMiddleware, broker

app = create_app()
broker.add_middleware(AppContextMiddleware(app))

__all__ = ["app", "broker"]
