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
# kwargs: contact_ids (a tuple), at (the write's moment, or None for now).
# Receivers: consent.webhooks writes the
# deliveries owed to the receivers of these contacts, so that a notification
# is never lost between the commit and the broker; crm.changed_since stamps
# the contacts' updated_at (one UPDATE), so that the changed-since read
# (GET /api/v1/contacts?updated_after=) lists a contact whose decisions changed.
ledger_written = _signals.signal("ledger-written")

# Inside the transaction. Sent by crm.changes.record after it wrote items of the
# change feed (contact created, updated, decisions changed, erased, purged,
# activities purged, undeliverable); kwargs: change_ids (a tuple). Receiver:
# consent.webhooks writes the deliveries owed for those items in the same
# transaction, so that a tombstone's delivery exists before the contact is gone.
change_recorded = _signals.signal("change-recorded")

# After the commit. Sent by every use case whose commit changed a contact's
# decisions (consent, subscriptions, imports, erasure, rectification of a
# deciding field); kwargs: contact_id, kind (the ledger event kind, or
# "erased", "rectified", "import"); an import batch sends it once with
# contact_ids (a tuple) instead of contact_id. Receivers: consent.webhooks hands the
# deliveries written for the contact to the broker; mailing hands over the
# confirmation emails ``confirmation_owed`` queued in that transaction;
# consent.web_tracking unlinks the contact's web visitors when its
# web-tracking consent no longer holds (docs/rules.md R19).
decisions_changed = _signals.signal("decisions-changed")

# Inside the transaction. Sent by consent.claims when a consent another system
# registered (API, CRM sync) must first be confirmed by the person (R7, R8, X6);
# kwargs: request_id (the open SubscriptionRequest). Receiver: mailing queues
# the double opt-in email as an outbox row in the sender's transaction and
# returns the row's id, or None when no email may go now (the mailbox had its
# share, or processing is restricted): the sender reads that answer.
confirmation_owed = _signals.signal("confirmation-owed")

# After the commit. Sent by crm.services.rectify_contact; kwargs: contact_id,
# fields (the names of the fields changed). Receiver: consent.services
# announces ``decisions_changed`` when a field the decision reads changed.
contact_rectified = _signals.signal("contact-rectified")

# Inside the transaction. Sent by crm.services.upsert_contact (a new contact),
# crm.services.rectify_contact (a new address) and crm.bulk.insert_contacts (new
# contacts of an import or sync); kwargs: contact_ids (a tuple). Receiver:
# consent.refusals restates in the ledger each "do not contact" entry kept for
# the address, so that a refusal outlives erasure and purges (docs/rules.md R22).
contacts_addressed = _signals.signal("contacts-addressed")

# --- customer relationships -----------------------------------------------------------

# Inside the transaction. Sent by crm.services when a company becomes a
# customer, returns as one, or its customer relationship ends; kwargs:
# company_id, change ("became_customer", "returned", "ended"), actor (the
# kernel.access.Actor who made the change). Receiver: consent.bases records
# basis_granted / basis_ended for the company's contacts (docs/rules.md R1).
company_relationship_changed = _signals.signal("company-relationship-changed")

# Inside the transaction. Sent by crm.services when a known contact's company
# changes; kwargs: contact_id, from_company_id, to_company_id (either None),
# actor. Receiver: consent.bases ends the contact's customer basis and grants
# the new company's, if it is a customer (docs/rules.md R1).
contact_moved_company = _signals.signal("contact-moved-company")


# --- staff accounts -----------------------------------------------------------------

# After the commit. Sent by crm.accounts when an admin sends a staff user a
# password-reset link, or someone asks for one at the sign-in page for an
# active user's address; kwargs: user_id. Receiver: mailing sends the job
# that mails the link (mailing.staff_mail), signed when it leaves.
staff_password_reset_requested = _signals.signal("staff-password-reset-requested")

# --- policy versions ----------------------------------------------------------------

# After the commit. Sent by consent.policies.publish_policy; kwargs:
# policy_version_id, is_major. Receiver: mailing sends the transactional
# notice to every registered address on a major version (docs/rules.md R24).
policy_published = _signals.signal("policy-published")

# --- the daily run -----------------------------------------------------------------

# After the commit. Sent by crm.tasks.run_daily_retention, the job the scheduler
# (kernel.scheduling) sends once a day (a redelivered message sends it again);
# kwargs: at (the moment of the run). Receivers: consent.bases sends the job
# that writes the bases that lapsed by time to the ledger (docs/rules.md R1,
# R3); consent.web_tracking unlinks web visitors whose contact no longer
# consents to web tracking (R19); consent.webhooks hands over the deliveries
# written. Each is safe to run twice in a day. (The GDPR art. 14 notices are
# a scheduled job of their own.)
day_started = _signals.signal("day-started")

# --- contributions (the receivers' return values are the answer) ---------------------

# Inside the transaction. Sent by crm.retention.run.run once its rules are
# applied, with kwargs as_of (the run's date); each receiver removes what of its
# own is due on that date and returns {name: count removed} for the run's record.
# Receivers: consent.refusals drops the "do not contact" entries kept longer than
# the policy file's [do_not_contact] allows (docs/rules.md R22); kernel.idempotency
# deletes the Idempotency-Key answers kept longer than IDEMPOTENCY_KEEP_HOURS.
retention_due = _signals.signal("retention-due")

# Sent by crm.retention with kwargs contact_ids (a sequence); each receiver
# returns {contact_id: reason} for the contacts no retention rule may touch.
# Receivers: consent.rights (a rights request is open, docs/rules.md R20) and
# connectors.services.first_sync_exclusions (a CRM's first sync has not read
# the history of the contacts it created yet, docs/retention.md).
collect_retention_exclusions = _signals.signal("retention-exclusions")

# Sent by crm.retention with kwargs counts_from (the name of a contact rule's
# anchor that crm does not hold, e.g. "objection"); the one receiver that
# holds it returns a SELECT of two columns, contact_id and at: the moment each
# such contact's period counts from (contacts without one are not listed).
# Receiver: consent.rights ("objection": the objection to all direct
# marketing, GDPR art. 21(3), docs/rules.md R22).
collect_retention_anchors = _signals.signal("retention-anchors")

# Sent by crm.changes.receivers (for the retention preview) with no kwargs;
# each receiver returns a list of short descriptions of who, besides the
# readers of the change feed, is told of a purge (no secrets, no full URLs).
# Receiver: consent.feed (the active webhook endpoints subscribed to purges or
# to every type, by host).
collect_change_receivers = _signals.signal("change-receivers")

# Sent by crm.retention.preview with kwargs contacts (the ids of the contacts a
# run on the preview's date removes whole) and activities ({contact_id: ids of
# its activities the run removes}, contacts removed whole left out); each
# receiver returns a list of crm.retention.CopyDeletions: per system that
# holds copies, what it will delete or anonymise of them, and what it still
# owes from before. Receiver: connectors.services (each enabled connector,
# from its record mapping, connector_record, and its connector_deletion rows).
collect_copy_deletions = _signals.signal("copy-deletions")

# Sent by consent.rights.export_contact with kwargs contact (the Contact); each
# receiver returns (section name, JSON-ready data) for the person's export.
# Receivers: mailing (the emails sent to the person); consent.web_tracking
# (the web visits linked to the person, R19).
collect_export_sections = _signals.signal("export-sections")
