"""``flask users``, ``flask tokens`` and ``flask retention``."""

from __future__ import annotations

import json
from datetime import date

import click
from flask import Flask
from flask.cli import AppGroup

from crm import access, retention
from crm.access import CLI_ACTOR
from crm.errors import DomainError
from crm.models import Role

users = AppGroup("users", help="Staff users.")
tokens = AppGroup("tokens", help="API tokens.")

ROLE_CHOICE = click.Choice([r.value for r in Role])


@users.command("create")
@click.argument("email")
@click.option("--role", type=ROLE_CHOICE, required=True)
@click.option("--name", default=None)
@click.password_option(help="Prompted (twice, hidden) when not given.")
def create_user(email: str, role: str, name: str | None, password: str) -> None:
    """Create a staff user who can log in to the staff pages."""
    try:
        user = access.create_staff_user(email, password, role, name=name)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created {user.role} user {user.email}.")


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, required=True)
def create_token(name: str, role: str) -> None:
    """Create an API token and print it once; it is stored only as a hash."""
    try:
        token, raw = access.create_api_token(name, role)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"Token {token.name!r} ({token.role}); copy it now, it is not shown again:", err=True
    )
    click.echo(raw)


def register(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(tokens)
    app.cli.add_command(retention_cli)


retention_cli = AppGroup("retention", help="Retention rules: preview and run (R13-R18).")


def _as_of(value: str | None) -> date:
    try:
        return retention.parse_as_of(value)
    except DomainError as exc:
        raise click.BadParameter(exc.message, param_hint="--as-of") from exc


@retention_cli.command("preview")
@click.option("--as-of", "as_of", default=None, help="Preview a run on this date (YYYY-MM-DD).")
@click.option("--limit", default=None, type=int, help="List at most this many items per rule.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def preview_command(as_of: str | None, limit: int | None, as_json: bool) -> None:
    """What a run would delete or anonymise, per rule, and what it would skip and why."""
    result = retention.preview(_as_of(as_of), limit=limit)
    if as_json:
        from crm.schemas import RetentionPreviewSchema

        click.echo(json.dumps(RetentionPreviewSchema().dump(result), indent=2))
        return
    click.secho(f"Retention preview for a run on {result.as_of.isoformat()}", bold=True)
    for outcome in result.outcomes:
        rule = outcome.rule
        verb = "anonymise" if rule.action == "anonymise" else "delete"
        unit = "contacts" if rule.is_contact_rule else "activities"
        click.secho(f"\n{rule.name}: {verb} {outcome.count} {unit}", bold=True)
        click.echo(f"  rule: {rule.explain()}")
        for row in outcome.items:
            target = f"contact {row.contact_id}"
            if row.activity_id is not None:
                target = f"activity {row.activity_id} of contact {row.contact_id}"
            click.echo(f"  {target}: due since {row.purge_on.isoformat()}")
        if outcome.truncated:
            click.echo(f"  ... and more (listing limited to {limit})")
        if outcome.excluded_count:
            click.secho(f"  skipped {outcome.excluded_count}:", fg="yellow")
            for row, reason in outcome.excluded:
                click.echo(f"  contact {row.contact_id}: {reason}")
    for rule in result.external:
        click.secho(f"\n{rule.name}: held in {rule.held_in}, not here", fg="cyan")
        click.echo(f"  rule: {rule.explain()}")


@retention_cli.command("run")
@click.option("--as-of", "as_of", default=None, help="Run as on this date (YYYY-MM-DD).")
@click.option(
    "--batch-size", default=None, type=int, help="Contacts or activities per transaction."
)
def run_command(as_of: str | None, batch_size: int | None) -> None:
    """Apply the retention rules now; resumes whatever a killed run left."""
    try:
        record = retention.run(_as_of(as_of), started_by=CLI_ACTOR.label, batch_size=batch_size)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Retention run {record.id} for {record.as_of.isoformat()}: {record.status}")
    for name, counts in record.counts.items():
        parts = ", ".join(f"{key} {value}" for key, value in counts.items())
        click.echo(f"  {name}: {parts}")


@retention_cli.command("history")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def history_command(as_json: bool) -> None:
    """The latest runs: when, by whom, counts per rule."""
    runs = retention.list_runs()
    if as_json:
        from crm.schemas import RetentionRunSchema

        click.echo(json.dumps(RetentionRunSchema(many=True).dump(runs), indent=2))
        return
    for record in runs:
        ended = record.ended_at.isoformat(timespec="seconds") if record.ended_at else "-"
        click.echo(
            f"{record.id}  as of {record.as_of}  {record.status:<11} "
            f"{record.started_at.isoformat(timespec='seconds')} .. {ended}  by {record.started_by}"
        )
