"""``flask permissions check``, ``flask permissions reconcile-bases``,
``flask contacts import``, ``flask rights reapply`` and ``flask demo``."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from consent import bases, demo, imports, policies, restore, services
from consent.models import ALL
from consent.policy import Decision
from consent.topics import current_policy
from kernel.access import cli_actor
from kernel.errors import DomainError

permissions = AppGroup("permissions", help="Marketing decisions.")

# The exit codes of ``flask permissions check`` (0: allowed).
CHECK_NOT_ALLOWED = 1
CHECK_UNDECIDED = 2


class Undecided(click.ClickException):
    """No decision could be made: not "not allowed", so a script can tell them apart."""

    exit_code = CHECK_UNDECIDED


contacts = AppGroup("contacts", help="Contacts: CSV imports.")
policies_group = AppGroup("policies", help="Privacy-policy versions (R23).")
rights = AppGroup("rights", help="The rights of the person: erasure after a restore.")


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
@click.option("--topic", default=None, help="One topic; every marketing topic when left out.")
@click.option("--channel", default="email", show_default=True)
@click.option("--as-of", "as_of", default=None, help="Decide as on this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(email: str, topic: str | None, channel: str, as_of: str | None, as_json: bool) -> None:
    """May we market to EMAIL, and why?

    Exits 0 when every decision asked for is allowed, 1 when one is not
    allowed, 2 when no decision could be made (an invalid address, topic or
    date), so that a script can branch on the answer.
    """
    topics = [topic] if topic else list(current_policy().marketing_topics)
    try:
        decisions = [
            services.check_permissions(
                [email], key, channel, at=parse_as_of(as_of), actor=cli_actor()
            )[0]
            for key in topics
        ]
    except DomainError as exc:
        raise Undecided(exc.message) from exc
    _print_decisions(decisions, as_json)
    if not all(decision.allowed for decision in decisions):
        sys.exit(CHECK_NOT_ALLOWED)


def _print_decisions(decisions: list[Decision], as_json: bool) -> None:
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


@permissions.command("reconcile-bases")
@click.option(
    "--as-of", "as_of", default=None, help="As on this date (YYYY-MM-DD); now if left out."
)
def reconcile_bases_command(as_of: str | None) -> None:
    """Write to the ledger the bases that began or lapsed (the daily run's job, R1, R3)."""
    report = bases.reconcile_bases(parse_as_of(as_of), actor=cli_actor())
    click.echo(
        f"granted from the company: {report.granted}; ended: company not a customer "
        f"{report.ended_company}, grace over {report.ended_grace}, customer without a "
        f"company {report.ended_no_company}, industry list expired {report.expired_lists}"
    )


@contacts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--basis",
    required=True,
    type=click.Choice(["customer", "industry_list", "consent"]),
    help="customer (R1) or industry_list (R3); consent cannot be imported.",
)
@click.option("--source", required=True, help="Where the list came from (partner, fair, CRM).")
@click.option(
    "--preset",
    default=None,
    help=f"The file is a CRM's contact export: {', '.join(imports.preset_names())}.",
)
@click.option(
    "--mapping",
    "mapping_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='A JSON file mapping headers to fields: {"E-post": "email", "Förnamn": "first_name"}.',
)
@click.option("--batch-size", default=imports.BATCH_SIZE, show_default=True, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_command(
    file: Path,
    basis: str,
    source: str,
    preset: str | None,
    mapping_file: Path | None,
    batch_size: int,
    as_json: bool,
) -> None:
    """Import contacts from a CSV FILE (UTF-8, comma or semicolon separated)."""
    actor = cli_actor()
    try:
        mapping = mapping_file.read_text(encoding="utf-8") if mapping_file else None
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(
            f"cannot read it as UTF-8 text: {exc}", param_hint="--mapping"
        ) from exc
    try:
        imports.parse_basis(basis)
        imports.plan_for(preset, mapping)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    # A bar only for a person watching a terminal; a script or a log gets the report alone.
    show_bar = not as_json and sys.stderr.isatty()
    with file.open("rb") as stream:
        bar = click.progressbar(
            length=file.stat().st_size, label="Importing", file=sys.stderr, show_pos=False
        )
        with bar if show_bar else contextlib.nullcontext(bar):
            done = 0

            def advance(position: int) -> None:
                nonlocal done
                bar.update(position - done)
                done = position

            try:
                report = imports.import_contacts(
                    actor,
                    stream,
                    basis=basis,
                    source=source,
                    filename=file.name,
                    batch_size=batch_size,
                    progress=advance if show_bar else None,
                    preset=preset,
                    mapping=mapping,
                )
            except DomainError as exc:
                raise click.ClickException(exc.message) from exc
    if as_json:
        from consent.schemas import ImportReportSchema

        click.echo(json.dumps(ImportReportSchema().dump(report), indent=2))
        return
    click.echo(
        f"Import batch {report.batch_id} ({report.interest_kind}, source {report.source!r}):"
    )
    click.echo(f"  rows read            {report.rows}")
    click.echo(f"  created              {report.created}")
    click.echo(f"  updated              {report.updated}")
    click.echo(f"  unchanged            {report.unchanged}")
    click.echo(f"  skipped (suppressed) {report.skipped_suppressed}")
    click.echo(f"  rejected             {report.rejected}")
    if report.preset:
        click.echo(f"  columns read as      {report.preset}")
    if report.ignored_columns:
        click.echo(f"  ignored columns: {', '.join(report.ignored_columns)}")
    if report.suggested_preset:
        click.echo(
            f"  This file looks like a {imports.PRESETS[report.suggested_preset].vendor} "
            f"export: import it with --preset {report.suggested_preset} to keep its record "
            "ids and read its name and country columns."
        )
    for rejection in imports.iter_rejections(report.batch_id):
        click.echo(f"  row {rejection.row}: {rejection.reason}")


@contacts.command("run-import")
@click.argument("batch_id", type=int)
def run_import_command(batch_id: int) -> None:
    """Run a stored import (BATCH_ID) here, now: for a batch left queued or running
    because its job was lost (the sweeper also hands such a batch over again).
    A batch done or failed, or running under a worker's lease, is left alone."""
    try:
        imports.run_queued_import(batch_id)
        report = imports.report_of(batch_id)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    if report.status in ("queued", "running"):
        raise click.ClickException(
            f"Import batch {batch_id} is {report.status} and was left alone: a worker holds "
            "it (its lease is renewed with each chunk), or its file is not stored here "
            "(a command-line import)."
        )
    click.echo(
        f"Import batch {report.batch_id}: {report.status}, rows {report.rows}, created "
        f"{report.created}, updated {report.updated}, unchanged {report.unchanged}, "
        f"rejected {report.rejected}"
    )
    if report.status == "failed":
        raise click.ClickException(report.error or "the import failed")


@policies_group.command("publish")
@click.argument("version")
@click.option("--major", is_flag=True, help="A major change: every registered address is told.")
@click.option("--url", default=None, help="Where the policy is published.")
@click.option(
    "--text-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None
)
@click.option("--summary", default=None, help="What changed, in a sentence or two.")
@click.option(
    "--wording",
    "wordings",
    multiple=True,
    metavar="KEY:LANG:FILE",
    help="A consent wording shown under this version, e.g. signup:sv:signup-sv.txt.",
)
def publish_policy(
    version: str,
    major: bool,
    url: str | None,
    text_file: Path | None,
    summary: str | None,
    wordings: tuple[str, ...],
) -> None:
    """Publish privacy-policy VERSION; consents from now on record it."""
    parsed = []
    for spec in wordings:
        key, _, rest = spec.partition(":")
        language, _, path = rest.partition(":")
        if not (key and language and path):
            raise click.BadParameter("use KEY:LANG:FILE", param_hint="--wording")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--wording") from exc
        parsed.append(policies.WordingInput(key=key, language=language, text=text))
    try:
        policy = policies.publish_policy(
            cli_actor(),
            version,
            is_major=major,
            url=url,
            text=text_file.read_text(encoding="utf-8") if text_file else None,
            summary=summary,
            wordings=parsed,
        )
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Published policy version {policy.version}{' (major)' if major else ''}.")
    for wording in policy.wordings:
        click.echo(f"  wording {wording.key} ({wording.language}) sha256 {wording.sha256}")


@policies_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_policies(as_json: bool) -> None:
    """Published policy versions, the current one first."""
    rows = policies.list_policies()
    if as_json:
        from consent.schemas import PolicyVersionSchema

        click.echo(json.dumps(PolicyVersionSchema(many=True).dump(rows), indent=2))
        return
    if not rows:
        click.echo(f"No version published; consents record {current_policy().version!r}.")
    for index, policy in enumerate(rows):
        flags = " major" if policy.is_major else ""
        current = " (current)" if index == 0 else ""
        click.echo(f"{policy.version}{current}{flags}  published {policy.published_at:%Y-%m-%d}")


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


@rights.command("reapply")
@click.option(
    "--since",
    required=True,
    help="Re-apply the journal's entries from this day (YYYY-MM-DD, UTC) or ISO time on: "
    "the time of the backup restored, or earlier.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be done; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reapply_command(since: str, dry_run: bool, as_json: bool) -> None:
    """Erase and purge again what the erasure journal holds since a restored backup."""
    try:
        moment = datetime.fromisoformat(since)
    except ValueError as exc:
        raise click.BadParameter(
            "use YYYY-MM-DD or an ISO 8601 time", param_hint="--since"
        ) from exc
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        report = restore.reapply_journal(cli_actor(), moment, dry_run=dry_run)
    except FileNotFoundError as exc:
        raise click.ClickException(
            f"No erasure journal at {exc.filename} (ERASURE_JOURNAL_PATH). Point it at the "
            "journal kept apart from the database; nothing was changed."
        ) from exc
    except OSError as exc:
        raise click.ClickException(
            f"The erasure journal at {exc.filename} cannot be read ({exc.strerror}); "
            "nothing was changed."
        ) from exc
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    if report.unreadable_lines:
        # A line torn by a crash mid-write belongs to a removal that never committed.
        lines = ", ".join(map(str, report.unreadable_lines[:20]))
        click.echo(f"warning: journal lines not readable, skipped: {lines}", err=True)
    if as_json:
        click.echo(json.dumps(report.as_dict()))
        return
    verb = "would be" if dry_run else "were"
    click.echo(
        f"{report.entries} journal entries since {moment.isoformat()}: "
        f"{report.erased} contacts {verb} erased again, {report.purged} purged again, "
        f"{report.suppressions_restored} suppression entries {verb} restored; "
        f"{report.already_gone} already gone, {report.kept_newer_contact} kept "
        f"(a newer contact with that id), {report.kept_returned_address} addresses "
        "left as the database has them (they confirmed a new signup after the erasure)."
    )


def register(app: Flask) -> None:
    app.cli.add_command(permissions)
    app.cli.add_command(rights)
    app.cli.add_command(contacts)
    app.cli.add_command(policies_group)
    app.cli.add_command(demo_command)


__all__ = ["ALL", "register"]
