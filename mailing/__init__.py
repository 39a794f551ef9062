"""Outbox, transport, campaigns and the public subscribe/unsubscribe flows."""

from __future__ import annotations

import os

from flask import Flask


def _settings() -> dict[str, object]:
    """This package's settings from the environment (README, Configuration)."""
    env = os.environ
    return {
        # Sites that may post the registered forms that list no `origins` of their
        # own (scheme://host[:port]; "*" for any); never the hosted form.
        "SIGNUP_ALLOWED_ORIGINS": [
            o.strip().rstrip("/").lower()
            for o in env.get("SIGNUP_ALLOWED_ORIGINS", "").split(",")
            if o.strip()
        ],
        "SIGNUP_LIMIT_PER_IP": env.get("SIGNUP_LIMIT_PER_IP", "30 per hour"),
        # Every public form that sends mail shares these counts: per client
        # address, per mailbox (the address without its +tag) and per domain.
        "SIGNUP_LIMIT_PER_ADDRESS": env.get("SIGNUP_LIMIT_PER_ADDRESS", "5 per hour"),
        "SIGNUP_LIMIT_PER_DOMAIN": env.get("SIGNUP_LIMIT_PER_DOMAIN", "100 per hour"),
        # Emails the public forms can cause (confirmation, unsubscribe link,
        # privacy verification) per mailbox in a day, on top of one per ten minutes.
        "MAILBOX_DAILY_LIMIT": int(env.get("MAILBOX_DAILY_LIMIT", "5")),
        # A signup is answered no sooner than this after it arrived: a new address
        # costs a contact row, and the answer's timing must not tell which it was.
        "SIGNUP_MIN_SECONDS": float(env.get("SIGNUP_MIN_SECONDS", "0.1")),
        # Optional mailto: added to List-Unsubscribe next to the one-click URL.
        "MAIL_UNSUBSCRIBE_MAILTO": env.get("MAIL_UNSUBSCRIBE_MAILTO") or None,
        # The CAs (PEM) trusted for the SMTP_URL server's certificate, instead of the
        # system's: a relay with a self-signed or private-CA certificate.
        "SMTP_CA_FILE": env.get("SMTP_CA_FILE") or None,
        # Where messages are written when SMTP_URL is not set (default instance/mail).
        "MAIL_FOLDER": env.get("MAIL_FOLDER") or None,
        # Retry backoff of temporary SMTP failures (exponential between the two).
        "OUTBOX_MIN_BACKOFF_MS": int(env.get("OUTBOX_MIN_BACKOFF_MS", "15000")),
        "OUTBOX_MAX_BACKOFF_MS": int(env.get("OUTBOX_MAX_BACKOFF_MS", str(30 * 60_000))),
        # A row claimed by a worker that vanished (killed mid-send) is free again after this.
        "OUTBOX_CLAIM_TIMEOUT_S": int(env.get("OUTBOX_CLAIM_TIMEOUT_S", "600")),
        # Every worker process runs the sweeper this often (0: never; then run
        # `flask outbox sweep` from cron), leaving rows younger than the grace alone.
        "OUTBOX_SWEEP_INTERVAL_S": float(env.get("OUTBOX_SWEEP_INTERVAL_S", "60")),
        "OUTBOX_SWEEP_GRACE_S": float(env.get("OUTBOX_SWEEP_GRACE_S", "60")),
        # R24: a major privacy-policy version is mailed to every registered address.
        "POLICY_NOTICE_ON_MAJOR": env.get("POLICY_NOTICE_ON_MAJOR", "1") == "1",
        # The name public pages and notices give the sender; empty: MAIL_FROM's name.
        "BRAND_NAME": env.get("BRAND_NAME", "").strip(),
    }


def _name_in(mail_from: str) -> str:
    """The display name of an address header, e.g. "Acme" in ``Acme <no-reply@acme.se>``."""
    from email.utils import parseaddr

    return parseaddr(mail_from)[0].strip()


def init_app(app: Flask) -> None:
    from mailing import (  # noqa: F401
        api,
        cli,
        models,
        provider_webhooks,
        public_pages,
        staff_pages,
        tasks,
    )

    for key, value in _settings().items():
        app.config.setdefault(key, value)
    if not app.config["BRAND_NAME"]:
        # The person already knows us by the name our emails come from.
        app.config["BRAND_NAME"] = _name_in(app.config["MAIL_FROM"]) or "Consent Service"
    public_pages.register(app)
    api.register(app)
    provider_webhooks.register(app)
    staff_pages.register(app)
    cli.register(app)
    tasks.register(app)
    _connect_signals()
    _read_at_scrape(app)


def _read_at_scrape(app: Flask) -> None:
    from kernel import metrics
    from mailing.outbox import oldest_waiting_age_seconds, waiting_count

    metrics.read_at_scrape(
        app,
        "consent_outbox_waiting_messages",
        "Outbox rows queued or being sent now.",
        waiting_count,
    )
    metrics.read_at_scrape(
        app,
        "consent_outbox_oldest_waiting_age_seconds",
        "Age of the oldest outbox row still waiting to be sent (0 when none waits).",
        oldest_waiting_age_seconds,
    )


def _connect_signals() -> None:
    from kernel.signals import (
        collect_export_sections,
        confirmation_owed,
        day_started,
        decisions_changed,
        policy_published,
    )
    from mailing.subscription_flows import (
        hand_over_owed_confirmations,
        queue_owed_confirmation,
    )

    collect_export_sections.connect(_export_emails, weak=False)
    policy_published.connect(_on_policy_published, weak=False)
    confirmation_owed.connect(queue_owed_confirmation, weak=False)
    decisions_changed.connect(hand_over_owed_confirmations, weak=False)
    day_started.connect(_on_day_started, weak=False)


def _export_emails(app: Flask, *, contact: object, **_: object) -> tuple[str, object]:
    """The emails sent to the person, as a section of their export (GDPR art. 15)."""
    from mailing.outbox import emails_for_export

    return "emails", emails_for_export(contact)  # type: ignore[arg-type]


def _on_policy_published(
    app: Flask, *, policy_version_id: int, is_major: bool, **_: object
) -> None:
    """After the publishing commit: hand the (possibly long) queuing to a worker."""
    if is_major and app.config.get("POLICY_NOTICE_ON_MAJOR", True):
        from mailing.tasks import send_policy_notices

        send_policy_notices.send(policy_version_id)


def _on_day_started(app: Flask, **_: object) -> None:
    """GDPR art. 14(3)(a): the notices still owed go out well within their month."""
    from mailing.tasks import send_art14_notices

    send_art14_notices.send()
