"""``flask permissions check`` and ``flask demo``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from consent import demo, services
from consent.models import ALL
from consent.topics import current_policy
from crm.errors import DomainError

permissions = AppGroup("permissions", help="Marketing decisions.")


def parse_as_of(value: str | None) -> datetime | None:
    """``--as-of YYYY-MM-DD`` (midnight UTC) or a full ISO time."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            "use YYYY-MM-DD or an ISO 8601 time", param_hint="--as-of"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@permissions.command("check")
@click.argument("email")
@click.option("--topic", default=None, help="One topic; all topics when left out.")
@click.option("--channel", default="email", show_default=True)
@click.option("--as-of", "as_of", default=None, help="Decide as on this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(email: str, topic: str | None, channel: str, as_of: str | None, as_json: bool) -> None:
    """May we market to EMAIL, and why?"""
    topics = [topic] if topic else list(current_policy().topics)
    try:
        decisions = [
            services.check_permissions([email], key, channel, at=parse_as_of(as_of))[0]
            for key in topics
        ]
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        from consent.schemas import DecisionSchema

        click.echo(json.dumps(DecisionSchema(many=True).dump(decisions), indent=2))
        return
    for decision in decisions:
        verdict = "ALLOWED" if decision.allowed else "NOT ALLOWED"
        colour = "green" if decision.allowed else "red"
        basis = f", basis {decision.basis}" if decision.basis else ""
        click.secho(f"{decision.topic} by {decision.channel}: {verdict}", fg=colour, bold=True)
        click.echo(f"  reason {decision.reason}{basis}")
        click.echo(f"  {decision.explanation}")


@click.command("demo")
@with_appcontext
@click.option("--password", default=None, help="Password for the demo staff users.")
def demo_command(password: str | None) -> None:
    """Load demo contacts covering every decision, and demo staff users."""
    summary = demo.load_demo(password=password)
    click.echo(f"Demo data: {summary.contacts} contacts, one per reason code.")
    for email, role in summary.users:
        click.echo(f"  staff login: {email} ({role})")
    if summary.password:
        click.echo(f"  password for all demo users: {summary.password}")


def register(app: Flask) -> None:
    app.cli.add_command(permissions)
    app.cli.add_command(demo_command)


__all__ = ["ALL", "register"]
