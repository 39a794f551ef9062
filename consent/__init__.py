"""Topics, the consent ledger, suppression, tokens and THE decision."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from consent import (  # noqa: F401 - tasks declares the actors
        api,
        bases,
        cli,
        contact_list_pages,
        dpo_pages,
        feed,
        refusals,
        rights,
        services,
        staff_pages,
        tasks,
        web_tracking,
        webhooks,
    )

    api.register(app)
    cli.register(app)
    staff_pages.register(app)
    contact_list_pages.register(app)
    dpo_pages.register(app)
    services.connect_signals()
    bases.connect_signals()
    rights.connect_signals()
    refusals.connect_signals()
    webhooks.connect_signals()
    feed.connect_signals()
    web_tracking.connect_signals()
