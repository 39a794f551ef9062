"""Topics, the consent ledger, suppression, tokens and THE decision."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from consent import (  # noqa: F401 - tasks declares the actors
        api,
        cli,
        import_pages,
        rights,
        services,
        tasks,
        views,
        webhooks,
    )

    api.register(app)
    cli.register(app)
    views.register(app)
    import_pages.register(app)
    services.connect_signals()
    rights.connect_signals()
    webhooks.connect_signals()
