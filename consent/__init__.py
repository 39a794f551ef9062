"""Topics, the consent ledger, suppression, tokens and THE decision."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from consent import api, cli, services, tasks, views  # noqa: F401 - tasks declares the actors

    api.register(app)
    cli.register(app)
    views.register(app)
    services.connect_signals()
