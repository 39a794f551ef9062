"""The fold: how each consent event changes the permission projection.

The projection (``PermissionState``, plus the contact's restriction and bounce
columns) is what the decision reads; ``consent.ledger`` appends every event
and calls the fold in the same transaction, so the two never disagree.

## Every place that restates the policy

``consent.policy.decide`` is the one decision. These copies restate part of
its meaning for speed, and each has a test that proves it equal to ``decide``
(or to the Python fold), plus tests that pin the rules themselves so that a
mistake made in every copy at once still fails:

| copy | where | agreement test | rule pinned by |
| --- | --- | --- | --- |
| the fold, Python | ``fold`` (here) | tests/consent/test_policy.py, tests/reliability/test_stateful_consent.py | tests/consent/test_policy_rules_pinned.py (only the person reopens a "no", the first objection stands, a re-granted basis keeps its first date), tests/consent/test_forged_confirmation.py (only a confirmation the service verified, ``is_person_verified``, also folded again after its request closed), tests/consent/test_channels.py (a "no" blocks only its own channel; an emailed confirmation lifts no phone objection) |
| the fold of an objection, SQL | ``objection_upsert`` (here) | tests/consent/test_ledger_batch.py | tests/consent/test_policy_rules_pinned.py (the first objection stands) |
| the fold of granted bases, SQL | ``fold_granted_basis`` (here; each ground's date and its own event column, ``BASIS_EVENT_COLUMNS``) | tests/consent/test_ledger_batch.py | tests/consent/test_policy_rules_pinned.py (a re-granted basis keeps its first date), tests/consent/test_imports.py, tests/mailing/test_unsubscribe_footer.py (a list decision names the list's grant after a customer's) |
| the campaign audience, SQL | ``consent.audience.audience_query`` | tests/consent/test_audience.py | tests/consent/test_policy_parameters.py, tests/consent/test_policy_rules_pinned.py |
| the campaign audience merged by rule, SQL | ``consent.audience.audience_merged`` (each rule's contact ids from its own index, merged in id order with UNION and EXCEPT; contacts with an unsubscribe from all marketing decided by ``audience_query``; ``audience_size`` on SQLite) | tests/consent/test_audience.py (every topic and channel, three policies, now, 400 and 800 days on, on either database) | tests/consent/test_policy_parameters.py (the customer grace to its last moment and after it), tests/consent/test_policy_rules_pinned.py, tests/consent/test_bases_lapse.py: each compares it with ``audience_query`` |
| the reason of each contact's decision, SQL | ``consent.audience.contacts_with_reason`` (the audience's rules, each a WHEN in the policy's order; the contact list's and a segment's decision filter, ``consent.contact_filters``) | tests/consent/test_contact_filters.py (every reason and "allowed", every topic and channel, contact by contact, under two policies, over the dashboard's population with suppressed sub-addresses) | tests/consent/test_contact_filters.py (one contact built for each reason code) |
| the count of each reason, SQL | ``consent.audience.reason_counts`` (the reason CASE of ``contacts_with_reason`` grouped; the dashboard's reachable audience, ``reports``) | tests/reports/test_dashboard.py (every reason's count against ``decide`` over every contact, two policies, now and 800 days on, sub-addresses suppressed by their mailbox) | tests/reports/test_dashboard.py (``test_objections_suppressions_and_consents_are_counted_once_each``: pinned numbers) |
| the batch of facts for many contacts | ``consent.policy.standings_by_email`` (read, then ``decide``) | tests/consent/test_api.py | tests/consent/test_policy_parameters.py, tests/consent/test_policy_rules_pinned.py, tests/consent/test_bases_lapse.py (the last interaction a lapse counts from) |
| the lapse of bases, SQL | ``consent.audience.audience_query`` (each ground's countries, topics, grace and lapse) | tests/consent/test_audience.py (under the default policy and two examples whose grounds differ) | tests/consent/test_bases_lapse.py (each limit at its last moment and the next), tests/consent/test_marketing_policies.py (each ground's countries and topics) |
| the daily run's choice of lapsed bases, SQL | ``consent.bases.reconcile_bases`` (writes ``basis_ended``; the decision never reads it) | tests/consent/test_bases_lapse.py (the run ends exactly what the decision no longer allows, once) | tests/consent/test_bases_lapse.py |

The policy's parameters (topics and their bases, each legitimate-interest
ground's countries and topics, the customer grace period, the lapse of a
customer basis without a company and of an industry list, the double opt-in
countries)
live in the policy file (consent/default_policy.toml), read by
``consent.topics``; no copy holds a number of its own. Each is pinned at its
shipped value by tests/consent/test_policy_parameters.py,
tests/consent/test_policy_rules_pinned.py (topics' bases, channels),
tests/consent/test_bases_lapse.py (the 24 months of each lapse) and
tests/mailing/test_signup_countries_pinned.py (the double opt-in countries).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent.models import (
    ALL,
    ConsentEvent,
    EventKind,
    InterestKind,
    PermissionState,
    SubscriptionRequest,
)
from consent.suppression import (
    keep_scoped_refusal,
    lift_scoped_refusal,
    lift_suppression,
    suppress,
)
from crm.models import Contact
from extensions import db
from kernel.access import Actor
from kernel.database import insert_for_dialect

# The person themself, acting through a link this service emailed to the address.
PERSON = Actor(kind="person", name="email-owner")
# The source of the events ``consent.subscriptions.confirm_subscription`` records
# when the person presses the button behind the double opt-in link.
DOUBLE_OPT_IN = "double_opt_in"
# Sources only the service's own code paths write: no API body, import, staff
# form or command may name them (``consent.services.BasisInput.validate``), so
# that the ledger never shows a claim as the person's own act (docs/rules.md X6).
RESERVED_SOURCES = frozenset(
    {
        DOUBLE_OPT_IN,
        "email_link",
        "one_click",
        "preference_centre",
        "system",
        # consent.claims.EXTERNAL_CONFIRMATION: written with a caller's confirmation evidence.
        "external_confirmation",
        # consent.deliverability: only returned mail this service matched to its own message.
        "bounce",
        "complaint",
    }
)
_REQUEST_REF = "subscription_request:"


def is_person_verified(contact_id: int, event: ConsentEvent | BatchEvent) -> bool:
    """Whether a confirmation is the person's own, verified by this service: the
    button behind a double opt-in link it emailed to the address (GDPR art. 7(1),
    21(3); docs/rules.md R9, X6). Only then may it undo the person's "no".

    Three marks together, none of which a caller can set: the person as the
    recorder (only the public pages' use cases act as ``PERSON``), the
    double opt-in source, and a reference to a subscription request of this
    contact that asked for the topic (the link carried its id). A consent
    synced by a CRM, imported or entered by staff is none of these.

    Only marks that never change: not whether the request is still open,
    which its own confirmation ends, so that the same event folds the same
    way when the projection is rebuilt from the ledger (X7).
    """
    if event.recorded_by != PERSON.label or event.source != DOUBLE_OPT_IN:
        return False
    ref = event.source_ref or ""
    number = ref.removeprefix(_REQUEST_REF)
    if not ref.startswith(_REQUEST_REF) or not number.isdigit():
        return False
    request = db.session.get(SubscriptionRequest, int(number))
    return (
        request is not None
        and request.contact_id == contact_id
        and event.topic in request.topic_keys
    )


BASIS_COLUMNS = {
    InterestKind.CUSTOMER.value: "customer_since",
    InterestKind.INDUSTRY_LIST.value: "industry_list_since",
}
# Each ground's own event column, beside its date: the grant the date comes from.
BASIS_EVENT_COLUMNS = {
    "customer_since": "customer_event_id",
    "industry_list_since": "industry_list_event_id",
}


def fold(contact: Contact, event: ConsentEvent, states: States | None = None) -> None:
    """Apply one ledger event to the projection (and, for the kinds that change the
    contact itself, to the contact). The Python copy; see the module's header."""
    states = states or States()
    kind = EventKind(event.kind)
    at = event.occurred_at
    if kind is EventKind.REQUESTED:
        row = states.get(contact.id, event.topic, event.channel)
        if row.consent_since is None:
            row.pending_since = at
    elif kind is EventKind.CONFIRMED:
        row = states.get(contact.id, event.topic, event.channel)
        verified = is_person_verified(contact.id, event)
        # Only a "no" to every channel or to this event's channel blocks: a
        # "no" on the phone leaves an email consent standing (docs/rules.md X6).
        blanket_blocks = any(
            r.unsubscribed_since or r.objected_since
            for r in states.blanket(contact.id)
            if r.channel in (ALL, event.channel)
        )
        if not verified and (row.unsubscribed_since is not None or blanket_blocks):
            # The ledger keeps the claim; the projection keeps the person's "no".
            return
        row.consent_since = at
        row.consent_event_id = event.id
        row.pending_since = None
        row.unsubscribed_since = None
        if verified:
            # The person reopened what they closed: the address's "do not
            # contact" entry for this topic goes too (docs/rules.md R22).
            lift_scoped_refusal(contact.email, event.topic, event.channel)
    elif kind in (EventKind.WITHDRAWN, EventKind.UNSUBSCRIBED):
        row = states.get(contact.id, event.topic, event.channel)
        row.unsubscribed_since = at
        row.consent_since = None
        row.consent_event_id = None
        row.pending_since = None
        if event.topic != ALL or event.channel != ALL:
            # R22: the "no" to this topic (or channel) outlives the contact; a
            # "no" to everything is the suppression consent.ledger adds.
            keep_scoped_refusal(contact.email, event.kind, event.topic, event.channel, at)
    elif kind is EventKind.OBJECTED:
        row = states.get(contact.id, ALL, event.channel)
        if row.objected_since is None:
            row.objected_since = at
            row.objection_event_id = event.id
        if event.channel != ALL:
            keep_scoped_refusal(contact.email, event.kind, ALL, event.channel, at)
    elif kind is EventKind.OBJECTION_LIFTED:
        # The objection becomes an unsubscribe from everything: only topics the
        # person confirms afresh open again; legitimate interest stays closed.
        # It dates from the objection, so a confirmation recorded in the same
        # moment as the lift (a double opt-in) is newer and opens its topics.
        # Only the objection of the event's channel: an emailed confirmation
        # lifts the one to all channels or to email, never one to phone (X6).
        for row in states.blanket(contact.id):
            if row.objected_since is not None and row.channel == event.channel:
                row.unsubscribed_since = max(
                    row.unsubscribed_since or row.objected_since, row.objected_since
                )
                row.objected_since = None
                row.objection_event_id = None
    elif kind is EventKind.BASIS_GRANTED:
        row = states.get(contact.id, ALL, ALL)
        if event.interest_kind == InterestKind.CUSTOMER and row.customer_since is None:
            row.customer_since = at
            row.customer_event_id = event.id
        elif event.interest_kind == InterestKind.INDUSTRY_LIST and row.industry_list_since is None:
            row.industry_list_since = at
            row.industry_list_event_id = event.id
    elif kind is EventKind.BASIS_ENDED:
        row = states.get(contact.id, ALL, ALL)
        if event.interest_kind == InterestKind.CUSTOMER:
            row.customer_since = None
            row.customer_event_id = None
        elif event.interest_kind == InterestKind.INDUSTRY_LIST:
            row.industry_list_since = None
            row.industry_list_event_id = None
    elif kind is EventKind.RESTRICTED:
        contact.restricted_at = contact.restricted_at or at
    elif kind is EventKind.UNRESTRICTED:
        contact.restricted_at = None
    elif kind is EventKind.UNDELIVERABLE:
        contact.hard_bounced_at = contact.hard_bounced_at or at
    elif kind is EventKind.DELIVERABLE:
        # Its owner confirmed a link mailed to it, or staff fixed it (consent.deliverability).
        contact.hard_bounced_at = None
    elif kind is EventKind.SUPPRESSED:
        suppress(contact.email, reason=event.note or "suppressed")
    elif kind is EventKind.UNSUPPRESSED:
        lift_suppression(contact.email)
    # CREATED_WHILE_SUPPRESSED only documents; the suppression entry already blocks.


_OBJECTION_UPSERT: dict[str, sa.Insert] = {}


def objection_upsert() -> sa.Insert:
    """The SQL copy of ``fold`` for one objection (``consent.ledger.record_objection``):
    one upsert, built once per dialect."""
    dialect = db.session.get_bind().dialect.name
    if dialect not in _OBJECTION_UPSERT:
        states = PermissionState.__table__
        upsert = insert_for_dialect(states)
        _OBJECTION_UPSERT[dialect] = upsert.values(
            contact_id=sa.bindparam("contact_id"),
            topic=ALL,
            channel=sa.bindparam("channel"),
            objected_since=sa.bindparam("at", type_=states.c.objected_since.type),
            objection_event_id=sa.bindparam("event_id"),
        ).on_conflict_do_update(
            index_elements=["contact_id", "topic", "channel"],
            set_={
                "objected_since": upsert.excluded.objected_since,
                "objection_event_id": upsert.excluded.objection_event_id,
            },
            # As fold: the first objection stands; a repeated one is only recorded.
            where=states.c.objected_since.is_(None),
        )
    return _OBJECTION_UPSERT[dialect]


def fold_granted_basis(events: sa.Select[Any], column: str, occurred_at: datetime) -> None:
    """Fold a set of BASIS_GRANTED events (``events`` selects contact_id and the
    event's id, one row per contact) into the projection, in one statement:
    the SQL copy of ``fold`` for ``consent.ledger.record_set``."""
    states = PermissionState.__table__
    since = states.c[column]
    event_column = BASIS_EVENT_COLUMNS[column]
    # As fold: a blanket row is created or, if it lacks the basis, given it; a
    # contact that holds the basis keeps its date and event. One upsert, also
    # right when another transaction creates the row meanwhile.
    event_of = events.subquery()
    insert = insert_for_dialect(states)
    db.session.execute(
        insert.from_select(
            ["contact_id", "topic", "channel", column, event_column],
            sa.select(
                event_of.c.contact_id,
                sa.literal(ALL),
                sa.literal(ALL),
                sa.literal(occurred_at, since.type),
                event_of.c.id,
            ).where(sa.true()),  # SQLite reads "SELECT ... ON CONFLICT" only after a WHERE
        ).on_conflict_do_update(
            index_elements=["contact_id", "topic", "channel"],
            set_={
                column: insert.excluded[column],
                event_column: insert.excluded[event_column],
            },
            where=since.is_(None),
        )
    )


class States:
    """The projection rows ``fold`` reads and writes.

    ``record`` reads them from the database one at a time; ``record_many``
    preloads every row of its contacts with one SELECT and keeps new ones here,
    so that folding a batch costs no query per event.
    """

    def __init__(self, preloaded: Iterable[PermissionState] | None = None) -> None:
        self._cached = preloaded is not None
        self._rows: dict[tuple[int, str, str], PermissionState | NewState] = {
            (r.contact_id, r.topic, r.channel): r for r in preloaded or ()
        }
        self._new: list[NewState] = []

    @classmethod
    def of_contacts(cls, contact_ids: Collection[int]) -> States:
        rows = (
            db.session.scalars(
                sa.select(PermissionState).where(PermissionState.contact_id.in_(contact_ids))
            )
            if contact_ids
            else ()
        )
        return cls(list(rows))

    def get(self, contact_id: int, topic: str, channel: str) -> PermissionState:
        key = (contact_id, topic, channel)
        row = self._rows.get(key)
        if row is None and not self._cached:
            row = db.session.get(PermissionState, key)
        if row is None:
            if self._cached:
                # New rows of a batch are inserted together by insert_new().
                row = NewState(contact_id=contact_id, topic=topic, channel=channel)
                self._new.append(row)
            else:
                row = PermissionState(contact_id=contact_id, topic=topic, channel=channel)
                db.session.add(row)
        self._rows[key] = row
        return row  # type: ignore[return-value]

    def insert_new(self) -> None:
        # One executemany per shape of row, leaving out the NULL columns: fewer
        # parameters to process, and the same rows.
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in self._new:
            values = {k: v for k, v in vars(row).items() if v is not None}
            shapes.setdefault(tuple(values), []).append(values)
        for rows in shapes.values():
            db.session.execute(sa.insert(PermissionState.__table__), rows)
        self._new.clear()

    def blanket(self, contact_id: int) -> list[PermissionState]:
        if not self._cached:
            return list(
                db.session.scalars(
                    sa.select(PermissionState).where(
                        PermissionState.contact_id == contact_id, PermissionState.topic == ALL
                    )
                )
            )
        return [
            row  # type: ignore[misc]
            for (cid, topic, _), row in self._rows.items()
            if cid == contact_id and topic == ALL
        ]


class NewState:
    """A projection row not yet in the database: the columns of PermissionState."""

    _EMPTY = dict.fromkeys(c.key for c in PermissionState.__table__.columns)

    def __init__(self, contact_id: int, topic: str, channel: str) -> None:
        self.__dict__.update(self._EMPTY)
        self.contact_id = contact_id
        self.topic = topic
        self.channel = channel


@dataclass(frozen=True)
class BatchEvent:
    """What ``fold`` reads of an event inserted by ``record_many``."""

    id: int
    kind: str
    topic: str
    channel: str
    occurred_at: datetime
    source: str
    interest_kind: str | None
    note: str | None
    recorded_by: str
    source_ref: str | None
