"""``flask users``, ``flask tokens``, ``flask audit`` and ``flask retention``."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup

from crm import accounts, retention, services, staff
from crm.models import RetentionRun
from kernel.access import cli_actor
from kernel.errors import DomainError
from kernel.models import Role
from kernel.spreadsheet import write_csv
from kernel.timestamps import utcnow

users = AppGroup("users", help="Staff users.")
tokens = AppGroup("tokens", help="API tokens.")
audit = AppGroup("audit", help="The audit log: who did what to which contact's data.")

ROLE_CHOICE = click.Choice([r.value for r in Role])


@users.command("create")
@click.argument("email")
@click.option("--role", type=ROLE_CHOICE, required=True)
@click.option("--name", default=None)
@click.password_option(help="Prompted (twice, hidden) when not given.")
def create_user(email: str, role: str, name: str | None, password: str) -> None:
    """Create a staff user who can log in to the staff pages."""
    try:
        user = staff.create_user(cli_actor(), email, password, role, name)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created {user.role} user {user.email}.")


def _run(change: Callable[[], Any]) -> Any:
    try:
        return change()
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc


@users.command("set-role")
@click.argument("email")
@click.option("--role", type=ROLE_CHOICE, required=True)
def set_role(email: str, role: str) -> None:
    """Change a user's role; every session of the user ends."""
    user = _run(lambda: staff.set_role(cli_actor(), staff.user_id_by_email(email), role))
    click.echo(f"{user.email} is now {user.role}; their sessions have ended.")


@users.command("deactivate")
@click.argument("email")
def deactivate(email: str) -> None:
    """Deactivate a user; every session of the user ends."""
    user = _run(lambda: staff.set_active(cli_actor(), staff.user_id_by_email(email), False))
    click.echo(f"{user.email} is deactivated; their sessions have ended.")


@users.command("activate")
@click.argument("email")
def activate(email: str) -> None:
    """Reactivate a user, who signs in again (old sessions stay ended)."""
    user = _run(lambda: staff.set_active(cli_actor(), staff.user_id_by_email(email), True))
    click.echo(f"{user.email} is active.")


@users.command("set-password")
@click.argument("email")
@click.password_option(help="Prompted (twice, hidden) when not given.")
def set_password(email: str, password: str) -> None:
    """Give a user a new password; every session of the user ends."""
    user = _run(lambda: staff.set_password(cli_actor(), staff.user_id_by_email(email), password))
    click.echo(f"{user.email} has a new password; their sessions have ended.")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_users(as_json: bool) -> None:
    """Every staff user: email, role, active or not, second factor on or off."""
    rows = [
        {
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "active": user.is_active,
            "two_factor": user.has_second_factor,
            "created_at": user.created_at.isoformat(),
        }
        for user in staff.list_users()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "active" if row["active"] else "inactive"
        factor = "2fa" if row["two_factor"] else "no-2fa"
        click.echo(f"{row['email']}\t{row['role']}\t{state}\t{factor}\t{row['name'] or ''}")


@users.command("send-password-reset")
@click.argument("email")
def send_password_reset(email: str) -> None:
    """Mail the user a one-time link to choose a new password."""
    user = _run(lambda: accounts.send_password_reset(cli_actor(), staff.user_id_by_email(email)))
    click.echo(f"A password-reset link is on its way to {user.email}.")


@users.command("remove-two-factor")
@click.argument("email")
def remove_two_factor(email: str) -> None:
    """Forget a user's second factor (a lost phone); every session of the user ends."""
    user = _run(lambda: accounts.remove_second_factor(cli_actor(), staff.user_id_by_email(email)))
    click.echo(f"{user.email} has no second factor now; their sessions have ended.")


_DURATION = re.compile(r"(\d{1,5})([hdw])")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def _duration(value: str | None) -> timedelta | None:
    if value is None:
        return None
    found = _DURATION.fullmatch(value.strip().lower())
    if not found or int(found.group(1)) == 0:
        raise click.BadParameter("use a number and h, d or w, e.g. 12h, 90d or 8w.")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, required=True)
@click.option(
    "--expires-in",
    default=None,
    help="Refuse the token after this long, e.g. 90d, 12h or 8w (default: until revoked).",
)
def create_token(name: str, role: str, expires_in: str | None) -> None:
    """Create an API token and print it once; it is stored only as a hash."""
    try:
        lifetime = _duration(expires_in)
    except click.BadParameter as exc:
        exc.param_hint = "'--expires-in'"
        raise
    try:
        token, raw = staff.create_token(cli_actor(), name, role, lifetime)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    until = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
    click.echo(
        f"Token {token.name!r} ({token.role}{until}); copy it now, it is not shown again:",
        err=True,
    )
    click.echo(raw)


def _token_state(token: Any, now: datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_tokens(as_json: bool) -> None:
    """Every API token (never its secret): role, state, last use, expiry."""
    now = utcnow()

    def moment(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    rows = [
        {
            "name": token.name,
            "role": token.role,
            "state": _token_state(token, now),
            "created_at": moment(token.created_at),
            "last_used_at": moment(token.last_used_at),
            "expires_at": moment(token.expires_at),
            "revoked_at": moment(token.revoked_at),
        }
        for token in staff.list_tokens()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        used = row["last_used_at"] or "never used"
        expires = row["expires_at"] or "no expiry"
        click.echo(f"{row['name']}\t{row['role']}\t{row['state']}\t{used}\t{expires}")


@tokens.command("revoke")
@click.argument("name")
def revoke_token(name: str) -> None:
    """Revoke the API token called NAME; it is refused from now on."""
    token = _run(lambda: staff.revoke_token(cli_actor(), staff.token_id_by_name(name)))
    click.echo(f"Token {token.name!r} is revoked.")


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter("use YYYY-MM-DD or an ISO 8601 time", param_hint=name) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit.command("list")
@click.option("--contact-id", type=int, default=None)
@click.option("--actor", default=None, help="e.g. token:crm-sync or cli:alice")
@click.option("--action", default=None, help="e.g. contact.read, contact.erase")
@click.option("--since", default=None, help="YYYY-MM-DD or ISO time (UTC when no zone).")
@click.option("--until", default=None, help="YYYY-MM-DD or ISO time (UTC when no zone).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV, safe to open in a spreadsheet.")
@click.option(
    "--delimiter",
    type=click.Choice([",", ";"]),
    default=",",
    show_default=True,
    help="Of the CSV: ';' for Excel set up for Swedish (decimal comma), which splits on it.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_audit(
    contact_id: int | None,
    actor: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_csv: bool,
    delimiter: str,
    as_json: bool,
) -> None:
    """Show audit entries, newest first. Reading the log is logged too."""
    query = services.AuditQuery(
        contact_id=contact_id,
        actor=actor,
        action=action,
        since=_moment(since, "--since"),
        until=_moment(until, "--until"),
        limit=limit,
    )
    entries = services.list_audit(cli_actor(), query)
    columns = ("id", "at", "actor", "action", "contact_id", "detail")
    if as_csv:
        write_csv(
            sys.stdout, columns, ([getattr(e, c) for c in columns] for e in entries), delimiter
        )
        return
    if as_json:
        rows = [
            {c: getattr(e, c).isoformat() if c == "at" else getattr(e, c) for c in columns}
            for e in entries
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for e in entries:
        who = f"contact {e.contact_id}" if e.contact_id is not None else "-"
        detail = f"  {e.detail}" if e.detail else ""
        click.echo(f"{e.at:%Y-%m-%d %H:%M:%S} {e.actor:<30} {e.action:<24} {who}{detail}")


def register(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(tokens)
    app.cli.add_command(audit)
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
        if outcome.told:
            systems = ", ".join(f"{name} ({n})" for name, n in sorted(outcome.told.items()))
            click.echo(f"  tells: {systems}")
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
    click.secho("\nConnected systems told (change feed tombstones)", bold=True)
    for system, count in result.told.items():
        click.echo(f"  {system}: {count} contacts with an id there")
    for receiver in result.receivers:
        click.echo(f"  {receiver}: every item")
    if not result.told and not result.receivers:
        click.echo("  none but the readers of GET /api/v1/changes")
    for copies in result.copies:
        verb = "anonymises" if copies.erasure == "anonymise" else "deletes"
        click.secho(f"\n{copies.system} {verb} in the CRM", bold=True)
        due = ", ".join(f"{n} {t}" for t, n in copies.due.items()) or "nothing"
        click.echo(f"  after this run: {due}")
        owed = ", ".join(f"{n} {t}" for t, n in copies.owed.items()) or "nothing"
        click.echo(f"  still owed from before: {owed}")
    if result.checklist:
        click.secho("\nHeld elsewhere: purges to check (R16-R18)", bold=True)
    for item in result.checklist:
        box = "[x]" if item.is_done else "[ ]"
        click.secho(f"\n{box} {item.rule.name}: held in {item.rule.held_in}", fg="cyan")
        click.echo(f"  rule: {item.rule.explain()}")
        click.echo(f"  due: everything counting from {item.due_through.isoformat()} or earlier")
        click.echo(f"  purged by: {item.rule.purged_by}")
        if item.mark is not None:
            click.echo(
                f"  done through {item.mark.done_through.isoformat()} by {item.mark.done_by} "
                f"at {item.mark.done_at.isoformat(timespec='seconds')}"
            )
        if not item.is_done:
            click.echo(
                f"  when done: flask retention done {item.rule.name} "
                f"--through {item.due_through.isoformat()}"
            )


@retention_cli.command("done")
@click.argument("rule")
@click.option(
    "--through",
    "through",
    required=True,
    help="Purged everything counting from this day or earlier (YYYY-MM-DD).",
)
def done_command(rule: str, through: str) -> None:
    """Record that a purge held in another system was done (R16-R18)."""
    try:
        day = date.fromisoformat(through)
    except ValueError:
        raise click.BadParameter("use a date, YYYY-MM-DD", param_hint="--through") from None
    try:
        mark = retention.mark_done(cli_actor(), rule, day)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(
        f"{mark.rule}: done through {mark.done_through.isoformat()}, recorded by {mark.done_by}"
    )


@retention_cli.command("run")
@click.option("--as-of", "as_of", default=None, help="Run as on this date (YYYY-MM-DD).")
@click.option(
    "--batch-size", default=None, type=int, help="Contacts or activities per transaction."
)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def run_command(as_of: str | None, batch_size: int | None, as_json: bool) -> None:
    """Apply the retention rules now; resumes whatever a killed run left.

    On a terminal a progress bar (on stderr) counts the contacts and
    activities handled, sized by a first read-only count of what is due;
    otherwise (a cron job, a log) only the result is printed."""
    day = _as_of(as_of)
    if as_json or not sys.stderr.isatty():
        record = _run_retention(day, batch_size, None)
    else:
        due = retention.preview(day, limit=0).outcomes
        total = sum(o.count + o.excluded_count for o in due)
        with click.progressbar(length=total, label="Retention", file=sys.stderr) as bar:
            record = _run_retention(day, batch_size, bar.update)
    if as_json:
        from crm.schemas import RetentionRunSchema

        click.echo(json.dumps(RetentionRunSchema().dump(record), indent=2))
        return
    click.echo(f"Retention run {record.id} for {record.as_of.isoformat()}: {record.status}")
    for name, counts in record.counts.items():
        parts = ", ".join(f"{key} {value}" for key, value in counts.items())
        click.echo(f"  {name}: {parts}")


def _run_retention(
    day: date, batch_size: int | None, advance: Callable[[int], None] | None
) -> RetentionRun:
    done = 0

    def after_batch(record: RetentionRun) -> None:
        nonlocal done
        handled = sum(sum(counts.values()) for counts in record.counts.values())
        if advance is not None:
            advance(handled - done)
        done = handled

    try:
        return retention.run(
            day, started_by=cli_actor().label, batch_size=batch_size, after_batch=after_batch
        )
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc


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
