"""Outbox, transport, campaigns and the public subscribe/unsubscribe flows."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Nothing to register yet: the mail flows arrive with the double opt-in work."""
