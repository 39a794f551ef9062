"""Signals the consent layer sends after its transaction commits (ids only).

Upper layers (mailing: webhooks, outbox) connect to them; consent never
imports mailing.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# sender: the app; kwargs: contact_id, kind (the ledger event kind)
consent_changed = _signals.signal("consent-changed")

# sender: the app; kwargs: policy_version_id, is_major. Mailing connects the
# transactional notice to every registered address on a major version (R24).
policy_published = _signals.signal("policy-published")
