"""Every notification between the packages: one list of blinker signals.

This is the service's only way for a lower package to tell a higher one that
something happened, or to ask it for a contribution, without importing it
(docs/architecture.md, "One way to notify"). No SQLAlchemy session hooks, no
registries of callbacks: a package that wants to hear connects its receiver
in its ``init_app``, so that what listens is visible at start-up.

Signals carry ids, never addresses or ORM objects, except the two that ask
for a contribution about one contact. Each is sent with the running app as
its sender (``sender()``), so that a receiver connected for one app hears it.

Two timings, named in each signal's comment:
- *after the commit*: the change is visible to every connection; a receiver
  may hand work to the broker, and works in a transaction of its own.
- *inside the transaction*: the receiver adds rows to the sender's
  transaction (so that they commit or roll back with it) and never commits.
"""

from __future__ import annotations

from blinker import Namespace
from flask import Flask, current_app

_signals = Namespace()


def sender() -> Flask:
    """The running app itself rather than its context proxy."""
    return current_app._get_current_object()  # type: ignore[attr-defined,no-any-return]


# --- a contact's decisions ------------------------------------------------------------

# Inside the transaction. Sent by consent.ledger for every write to the ledger;
# kwargs: contact_ids (a tuple). Receiver: consent.webhooks writes the
# deliveries owed to the receivers of these contacts, so that a notification
# is never lost between the commit and the broker.
ledger_written = _signals.signal("ledger-written")

# After the commit. Sent by every use case whose commit changed a contact's
# decisions (consent, subscriptions, imports, erasure, rectification of a
# deciding field); kwargs: contact_id, kind (the ledger event kind, or
# "erased", "rectified", "import"). Receivers: consent.webhooks hands the
# deliveries written for the contact to the broker; consent.web_tracking
# unlinks the contact's web visitors when its web-tracking consent no longer
# holds (docs/rules.md R19).
decisions_changed = _signals.signal("decisions-changed")

# After the commit. Sent by crm.services.rectify_contact; kwargs: contact_id,
# fields (the names of the fields changed). Receiver: consent.services
# announces ``decisions_changed`` when a field the decision reads changed.
contact_rectified = _signals.signal("contact-rectified")

# --- policy versions ----------------------------------------------------------------

# After the commit. Sent by consent.policies.publish_policy; kwargs:
# policy_version_id, is_major. Receiver: mailing sends the transactional
# notice to every registered address on a major version (docs/rules.md R24).
policy_published = _signals.signal("policy-published")

# --- the daily run -----------------------------------------------------------------

# After the commit. Sent by crm.tasks.run_daily_retention each day the daily
# chain runs; no kwargs. Receivers: mailing queues the GDPR art. 14 notices
# still owed (docs/rules.md X15); consent unlinks web visitors whose contact
# no longer consents to web tracking (docs/rules.md R19). Each is safe to run
# twice in a day.
day_started = _signals.signal("day-started")

# --- contributions (the receivers' return values are the answer) ---------------------

# Sent by crm.retention with kwargs contact_ids (a sequence); each receiver
# returns {contact_id: reason} for the contacts no retention rule may touch.
# Receiver: consent.rights (a rights request is open, docs/rules.md R20).
collect_retention_exclusions = _signals.signal("retention-exclusions")

# Sent by consent.rights.export_contact with kwargs contact (the Contact); each
# receiver returns (section name, JSON-ready data) for the person's export.
# Receivers: mailing (the emails sent to the person); consent.web_tracking
# (the web visits linked to the person, R19).
collect_export_sections = _signals.signal("export-sections")
