"""``flask users`` and ``flask tokens``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from crm import access
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
