"""``flask settings``: the configuration checked and documented from the command line.

Also registered as a ``flask.commands`` entry point, so that an installed
service answers ``flask settings check`` even when its configuration stops
the app from loading: that is when a deploy script needs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kernel import settings as declared


@click.group("settings")
def settings_cli() -> None:
    """The environment variables the service reads (docs/configuration.md)."""


@settings_cli.command("check")
def check() -> None:
    """Print every problem that would stop the service starting; exit 1 if any."""
    problems, deprecations = declared.problems()
    for message in deprecations:
        click.echo(f"warning: {message}", err=True)
    if problems:
        environment = declared.value("CONSENT_ENV")
        click.echo(f"{len(problems)} problem(s) with CONSENT_ENV={environment}:", err=True)
        for problem in problems:
            click.echo(f"- {problem}", err=True)
        sys.exit(1)
    click.echo("Settings are fine.")


@settings_cli.command("table")
@click.option(
    "--readme",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Rewrite the table in this README instead of printing it.",
)
def table(readme: Path | None) -> None:
    """The README's configuration table, generated from kernel/settings/variables.py."""
    if readme is None:
        click.echo(declared.markdown_table(), nl=False)
        return
    readme.write_text(declared.replace_readme_table(readme.read_text(encoding="utf-8")))
    click.echo(f"Rewrote the configuration table in {readme}.")


if __name__ == "__main__":
    # `python -m kernel.cli check` from a checkout, where the entry point is not
    # installed and `flask` would first have to build the refused app.
    settings_cli(prog_name="python -m kernel.cli")
