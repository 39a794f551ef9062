"""Which consent events are interactions that keep a contact's data (R13, R14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from consent.ledger import record
from consent.models import EventKind
from consent.subscriptions import PERSON
from crm.models import Contact
from extensions import db
from kernel.access import Actor

WHEN = datetime(2024, 5, 6, 7, 8, tzinfo=UTC)
STAFF = Actor(kind="user", name="anna@example.com", role="sales")
SYNC = Actor(kind="token", name="crm-sync", role="marketing")


def new_contact() -> Contact:
    # Known since before WHEN: an interaction before a contact's creation does
    # not move its last interaction (X16).
    contact = Contact(email="lena@kund.se", created_at=WHEN - timedelta(days=365))
    db.session.add(contact)
    db.session.flush()
    return contact


def test_the_persons_own_confirmation_is_an_interaction(app_ctx) -> None:
    contact = new_contact()
    record(
        contact,
        EventKind.CONFIRMED,
        actor=PERSON,
        source="double_opt_in",
        at=WHEN,
        topic="newsletter",
    )
    assert contact.last_interaction_at == WHEN


def test_a_preference_change_or_unsubscribe_by_the_person_is_an_interaction(app_ctx) -> None:
    contact = new_contact()
    record(contact, EventKind.UNSUBSCRIBED, actor=PERSON, source="preference_centre", at=WHEN)
    assert contact.last_interaction_at == WHEN


def test_an_objection_phoned_in_to_staff_is_an_interaction(app_ctx) -> None:
    contact = new_contact()
    record(contact, EventKind.OBJECTED, actor=STAFF, source="staff", at=WHEN, received_via="phone")
    assert contact.last_interaction_at == WHEN


def test_a_synced_or_imported_basis_is_not_an_interaction(app_ctx) -> None:
    contact = new_contact()
    record(
        contact,
        EventKind.BASIS_GRANTED,
        actor=SYNC,
        source="api",
        at=WHEN,
        basis="legitimate_interest",
        interest_kind="customer",
    )
    record(contact, EventKind.RESTRICTED, actor=STAFF, source="staff", at=WHEN)
    assert contact.last_interaction_at is None
