"""Topics, the consent ledger, suppression, tokens and THE decision."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from consent import api, cli, services

    api.register(app)
    cli.register(app)
    services.connect_signals()
