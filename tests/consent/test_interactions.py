"""Which consent events are interactions that keep a contact's data (R13, R14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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


def test_a_preference_change_by_the_person_is_an_interaction(app_ctx) -> None:
    contact = new_contact()
    record(
        contact,
        EventKind.CONFIRMED,
        actor=PERSON,
        source="preference_centre",
        at=WHEN,
        topic="newsletter",
    )
    assert contact.last_interaction_at == WHEN


def test_a_consent_phoned_in_to_staff_is_an_interaction(app_ctx) -> None:
    contact = new_contact()
    record(
        contact,
        EventKind.CONFIRMED,
        actor=STAFF,
        source="staff",
        at=WHEN,
        topic="newsletter",
        received_via="phone",
    )
    assert contact.last_interaction_at == WHEN


@pytest.mark.parametrize(
    ("kind", "actor", "received_via"),
    [
        (EventKind.UNSUBSCRIBED, PERSON, None),
        (EventKind.WITHDRAWN, PERSON, None),
        (EventKind.OBJECTED, PERSON, None),
        (EventKind.OBJECTED, STAFF, "phone"),
        (EventKind.SUPPRESSED, STAFF, "letter"),
    ],
)
def test_a_no_does_not_keep_the_persons_data_longer(
    app_ctx, kind: EventKind, actor: Actor, received_via: str | None
) -> None:
    """Honouring a "no" needs only the suppression entry (R22); the rest of the
    data must not live seven more years because the person said stop (X16)."""
    contact = new_contact()
    record(
        contact,
        kind,
        actor=actor,
        source="preference_centre" if actor is PERSON else "staff",
        at=WHEN,
        received_via=received_via,
    )
    assert contact.last_interaction_at is None


@pytest.mark.parametrize("source", ["form", "one_click"])
def test_what_the_service_did_not_verify_is_not_an_interaction(app_ctx, source: str) -> None:
    """An unconfirmed form post (anyone can type any address) and a one-click
    POST (a mailbox provider's machine, RFC 8058) do not move the clock."""
    contact = new_contact()
    kind = EventKind.REQUESTED if source == "form" else EventKind.UNSUBSCRIBED
    record(contact, kind, actor=PERSON, source=source, at=WHEN, topic="newsletter")
    record(contact, EventKind.CONFIRMED, actor=PERSON, source="form", at=WHEN, topic="newsletter")
    assert contact.last_interaction_at is None


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


def test_a_one_click_post_is_never_the_persons_interaction_whatever_it_records() -> None:
    """RFC 8058: the POST comes from the mailbox provider's machine, so even an
    event that would otherwise count does not when it came by one-click."""
    from consent.ledger import is_interaction

    assert is_interaction(PERSON, None, EventKind.CONFIRMED, "preference_centre")
    assert not is_interaction(PERSON, None, EventKind.CONFIRMED, "one_click")
    assert not is_interaction(PERSON, None, EventKind.CONFIRMED, "form")
