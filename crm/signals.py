"""Signals the CRM layer sends after its transaction commits (ids only).

The consent layer connects to them where a CRM change can change a decision
(country, company, address), so that it can announce ``consent_changed``.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# sender: the app; kwargs: contact_id, fields (the names of the fields changed)
contact_rectified = _signals.signal("contact-rectified")
