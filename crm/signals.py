"""Signals the CRM layer sends after its transaction commits (ids only).

The consent layer connects to them where a CRM change can change a decision
(country, company, address), so that it can announce ``consent_changed``.
"""

from __future__ import annotations

from blinker import Namespace
from flask import Flask, current_app

_signals = Namespace()


def sender() -> Flask:
    """The running app itself rather than its context proxy: every signal here
    and in consent is sent by it, so that a receiver connected for one app
    (``connect(receiver, sender=app)``) hears it."""
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


# sender: the app; kwargs: contact_id, fields (the names of the fields changed)
contact_rectified = _signals.signal("contact-rectified")
