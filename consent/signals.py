"""Signals the consent layer sends after its transaction commits (ids only).

Upper layers (mailing: webhooks, outbox) connect to them; consent never
imports mailing.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# sender: the app; kwargs: contact_id, kind (the ledger event kind)
consent_changed = _signals.signal("consent-changed")
