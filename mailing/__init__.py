"""Outbox, transport, campaigns and the public subscribe/unsubscribe flows."""

from __future__ import annotations

import os

from flask import Flask


def _settings() -> dict[str, object]:
    """This package's settings from the environment (README, Configuration)."""
    env = os.environ
    return {
        # Sites whose forms may post to POST /subscribe (scheme://host[:port]; "*" for any).
        "SIGNUP_ALLOWED_ORIGINS": [
            o.strip().rstrip("/").lower()
            for o in env.get("SIGNUP_ALLOWED_ORIGINS", "").split(",")
            if o.strip()
        ],
        "SIGNUP_LIMIT_PER_IP": env.get("SIGNUP_LIMIT_PER_IP", "30 per hour"),
        "SIGNUP_LIMIT_PER_ADDRESS": env.get("SIGNUP_LIMIT_PER_ADDRESS", "5 per hour"),
        # Optional mailto: added to List-Unsubscribe next to the one-click URL.
        "MAIL_UNSUBSCRIBE_MAILTO": env.get("MAIL_UNSUBSCRIBE_MAILTO") or None,
        # Where messages are written when SMTP_URL is not set (default instance/mail).
        "MAIL_FOLDER": env.get("MAIL_FOLDER") or None,
        # Retry backoff of temporary SMTP failures (exponential between the two).
        "OUTBOX_MIN_BACKOFF_MS": int(env.get("OUTBOX_MIN_BACKOFF_MS", "15000")),
        "OUTBOX_MAX_BACKOFF_MS": int(env.get("OUTBOX_MAX_BACKOFF_MS", str(30 * 60_000))),
    }


def init_app(app: Flask) -> None:
    from mailing import api, campaign_pages, cli, models, tasks, views  # noqa: F401

    for key, value in _settings().items():
        app.config.setdefault(key, value)
    views.register(app)
    api.register(app)
    campaign_pages.register(app)
    cli.register(app)
