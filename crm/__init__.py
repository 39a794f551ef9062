"""Companies, contacts, activities, staff access: the lowest layer."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from crm import api, cli, views

    api.register(app)
    cli.register(app)
    views.register(app)
