"""Outbox, transport, campaigns and the public subscribe/unsubscribe flows."""

from __future__ import annotations

from flask import Flask


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
        segment_pages,
        staff_pages,
        tasks,
    )

    if not app.config["BRAND_NAME"]:
        # The person already knows us by the name our emails come from.
        app.config["BRAND_NAME"] = _name_in(app.config["MAIL_FROM"]) or "Consent Service"
    public_pages.register(app)
    api.register(app)
    provider_webhooks.register(app)
    staff_pages.register(app)
    segment_pages.register(app)
    cli.register(app)
    _connect_signals()
    _read_at_scrape(app)


def _read_at_scrape(app: Flask) -> None:
    from kernel import metrics
    from mailing.health import is_degraded, is_outbox_stuck, is_retention_late
    from mailing.outbox import oldest_waiting_age_seconds, waiting_count

    # The states /healthz answers (mailing.health), as numbers an alert can follow.
    metrics.read_at_scrape(
        app,
        "consent_health_degraded",
        "1 when /healthz says degraded: the retention run is late or the outbox is stuck.",
        is_degraded,
    )
    metrics.read_at_scrape(
        app,
        "consent_retention_late",
        "1 when no retention run completed within a day plus HEALTH_RETENTION_MARGIN_S.",
        is_retention_late,
    )
    metrics.read_at_scrape(
        app,
        "consent_outbox_stuck",
        "1 when an email waited HEALTH_OUTBOX_STUCK_AFTER_S with none sent meanwhile.",
        is_outbox_stuck,
    )

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
        decisions_changed,
        policy_published,
        staff_password_reset_requested,
    )
    from mailing.subscription_flows import (
        hand_over_owed_confirmations,
        queue_owed_confirmation,
    )

    collect_export_sections.connect(_export_emails, weak=False)
    policy_published.connect(_on_policy_published, weak=False)
    confirmation_owed.connect(queue_owed_confirmation, weak=False)
    decisions_changed.connect(hand_over_owed_confirmations, weak=False)
    staff_password_reset_requested.connect(_on_staff_password_reset, weak=False)


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


def _on_staff_password_reset(app: Flask, *, user_id: int, **_: object) -> None:
    """After the commit: a worker mails the link (signed as it leaves).

    A broker that is down must not answer this address differently from an
    unknown one (the forgotten-password form tells no one who the staff are):
    the failure is logged and the person asks again."""
    import logging

    from mailing.tasks import send_staff_password_reset

    try:
        send_staff_password_reset.send(user_id)
    except Exception as exc:
        logging.getLogger(__name__).warning(
            "A staff password-reset link was not handed to the broker (%s).", type(exc).__name__
        )
