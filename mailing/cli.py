"""``flask outbox sweep`` and ``flask outbox deliver``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from mailing import services
from mailing.transport import DeliveryError

outbox = AppGroup("outbox", help="The email outbox.")


@outbox.command("sweep")
def sweep() -> None:
    """Hand over to the job queue every email that never reached a worker."""
    handed = services.sweep()
    click.echo(f"Handed over {len(handed)} queued email(s).")


@outbox.command("deliver")
@click.argument("outbox_id", type=int)
def deliver(outbox_id: int) -> None:
    """Deliver one outbox row now, in this process."""
    try:
        result = services.deliver(outbox_id)
    except DeliveryError as exc:
        raise click.ClickException(f"Temporary failure, left queued: {exc}") from exc
    click.echo(f"{result.status}" + (f": {result.reason}" if result.reason else ""))


def register(app: Flask) -> None:
    app.cli.add_command(outbox)
