"""Topics, the consent ledger, suppression, tokens and THE decision."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from consent import api, cli, views

    api.register(app)
    cli.register(app)
    views.register(app)
