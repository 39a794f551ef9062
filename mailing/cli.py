"""``flask outbox sweep|deliver``, ``flask campaigns send|report``, ``flask forms list|snippet``
and ``flask notices art14``."""

from __future__ import annotations

from typing import BinaryIO

import click
from flask import Flask
from flask.cli import AppGroup

from mailing import delivery
from mailing.outbox import sweep_all
from mailing.transport import DeliveryError

outbox = AppGroup("outbox", help="The email outbox.")


@outbox.command("sweep")
def sweep() -> None:
    """Hand over to the job queue every email, webhook, import and bulk action
    whose job never reached a worker or was lost."""
    swept = sweep_all()
    click.echo(
        f"Handed over {len(swept.outbox)} queued email(s), {swept.webhooks} webhook "
        f"delivery(ies), {len(swept.imports)} import(s) and {len(swept.bulk_actions)} "
        "bulk action(s)."
    )


@outbox.command("deliver")
@click.argument("outbox_id", type=int)
def deliver(outbox_id: int) -> None:
    """Deliver one outbox row now, in this process."""
    try:
        result = delivery.deliver(outbox_id)
    except DeliveryError as exc:
        raise click.ClickException(f"Temporary failure, left queued: {exc}") from exc
    click.echo(f"{result.status}" + (f": {result.reason}" if result.reason else ""))


campaigns_group = AppGroup("campaigns", help="Marketing campaigns.")


@campaigns_group.command("send")
@click.argument("campaign_id", type=int)
def send_campaign(campaign_id: int) -> None:
    """Queue a campaign for everyone the policy allows now (safe to repeat)."""
    from kernel.access import CLI_ACTOR
    from mailing import campaigns

    result = campaigns.send_campaign(CLI_ACTOR, campaign_id)
    click.echo(
        f"Campaign {campaign_id}: {result.newly_queued} newly queued, "
        f"{result.campaign.queued_count} in all, {result.handed_over} handed to workers."
    )


@campaigns_group.command("report")
@click.argument("campaign_id", type=int)
def report_campaign(campaign_id: int) -> None:
    """Audience, sent, blocked (by reason) and failed."""
    from mailing import campaigns

    r = campaigns.report(campaign_id)
    click.echo(
        f"{r.status}: audience {r.audience}, queued {r.queued}, sent {r.sent}, "
        f"blocked {r.blocked}, failed {r.failed}, removed {r.removed}"
    )
    for reason, count in r.blocked_by_reason.items():
        click.echo(f"  blocked {reason}: {count}")
    rates = r.bounce_rates
    for key, label, count in (
        ("hard", "hard bounces", r.bounces.hard),
        ("soft", "soft bounces", r.bounces.soft),
        ("complaints", "complaints", r.bounces.complaints),
    ):
        rate = rates[key]
        shown = f" ({rate:.1%} of {r.tried} tried)" if rate is not None else ""
        click.echo(f"  {label}: {count}{shown}")


forms_group = AppGroup("forms", help="The signup forms registered in the policy file.")


@forms_group.command("list")
def list_forms() -> None:
    """Every registered form: its topics, languages and where it may be posted from."""
    from flask import current_app

    from consent.topics import current_policy

    for form in current_policy().forms.values():
        if form.is_hosted:
            where = "this service only"
        elif form.origins is None:
            allowed = current_app.config["SIGNUP_ALLOWED_ORIGINS"]
            where = f"SIGNUP_ALLOWED_ORIGINS ({', '.join(allowed) or 'none'})"
        else:
            where = ", ".join(sorted(form.origins)) or "this service only"
        click.echo(
            f"{form.id}: topics {', '.join(form.topics)}; languages {', '.join(form.languages)}; "
            f"version {form.policy_version or 'current'}; posted from {where}"
        )


@forms_group.command("snippet")
@click.argument("form_id")
@click.option("--lang", "language", default=None, help="One of the form's languages.")
def snippet(form_id: str, language: str | None) -> None:
    """The HTML to paste on another site for a registered form, with its exact wording."""
    from flask import render_template

    from consent.evidence import form_wording, shown_version
    from consent.topics import current_policy
    from kernel import i18n
    from mailing.messages import brand_name, page_language

    form = current_policy().form(form_id)
    lang = form.language_for(language)
    with i18n.language(page_language(lang)):
        html = render_template(
            "public/snippet.html",
            form=form,
            lang=lang,
            brand=brand_name(),
            # The exact sentence whose hash a post of this form records.
            wording=form_wording(form, lang, form.topics, shown_version(form)),
        )
    click.echo(html)


notices_group = AppGroup("notices", help="Notices the law owes people (not marketing).")


@notices_group.command("art14")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def send_art14_notices(as_json: bool) -> None:
    """Queue now the GDPR art. 14 notice (where we got the address) for every
    contact still owed one; the daily run does the same. Safe to repeat."""
    import json

    from mailing.art14_notices import queue_art14_notices

    queued = queue_art14_notices()
    if as_json:
        click.echo(json.dumps({"queued": queued}))
    else:
        click.echo(f"Queued the art. 14 notice for {queued} contact(s).")


bounces_group = AppGroup("bounces", help="Returned mail: bounces and complaints.")

# sysexits.h EX_TEMPFAIL: an MTA piping mail into a command keeps the message
# and tries again later (Postfix's pipe(8), sendmail, exim).
EX_TEMPFAIL = 75


@bounces_group.command("ingest")
@click.argument("file", default="-", type=click.File("rb"))
@click.option(
    "--recipient",
    default=None,
    help="The address the MTA delivered the message to (Postfix: ${original_recipient}).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ingest_bounce(file: BinaryIO, recipient: str | None, as_json: bool) -> None:
    """Read one returned message (a DSN, a bounce, an ARF complaint) from FILE
    or standard input (-) and record what it reports.

    Exit status 0 for everything the MTA must not deliver again, including a
    message that is no bounce (ignored and logged); 75 (EX_TEMPFAIL) when it
    could not be recorded now (the database is down), so the MTA retries.
    """
    import json

    from mailing.bounces import ingest_message, max_bytes

    # At most one byte more than the limit is read: a larger message is refused unread.
    raw = file.read(max_bytes() + 1)
    try:
        result = ingest_message(raw, recipient)
    except Exception as exc:
        # The driver's own first line (no statement, no parameters: no addresses in logs).
        detail = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0][:200]
        click.echo(f"Not recorded, try again later: {type(exc).__name__}: {detail}", err=True)
        raise SystemExit(EX_TEMPFAIL) from exc
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ignored": result.ignored,
                    "bounces": [
                        {
                            "type": bounce.type,
                            "status": bounce.status,
                            "outcome": outcome.status,
                            "reason": outcome.reason,
                            "contact_id": outcome.contact_id,
                            "matched_by": outcome.matched_by,
                        }
                        for bounce, outcome in result.outcomes
                    ],
                }
            )
        )
        return
    if result.ignored:
        click.echo(f"ignored: {result.ignored.replace('_', ' ')}")
    for bounce, outcome in result.outcomes:
        matched = f" (matched by {outcome.matched_by})" if outcome.matched_by else ""
        click.echo(
            f"{outcome.status}: {bounce.type} {bounce.status or ''} -> {outcome.reason}{matched}"
        )


@bounces_group.command("poll")
def poll_bounces() -> None:
    """Read the returned-mail folder (BOUNCE_IMAP_URL) once, as the worker does."""
    from mailing.bounce_mailbox import poll_mailbox

    result = poll_mailbox()
    if result.busy:
        click.echo("another worker is reading the mailbox; nothing done.")
        return
    click.echo(
        f"{result.processed} processed, {result.left} left untouched, "
        f"{result.set_aside} unreadable moved aside."
    )


def register(app: Flask) -> None:
    app.cli.add_command(bounces_group)
    app.cli.add_command(notices_group)
    app.cli.add_command(outbox)
    app.cli.add_command(campaigns_group)
    app.cli.add_command(forms_group)
