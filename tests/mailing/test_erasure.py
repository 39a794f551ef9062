"""Erasure and retention take a contact's emails and pending confirmations with it."""

from __future__ import annotations

from extensions import db
from tests.conftest import count_rows
from tests.mailing.helpers import contact_id_of, signup


def test_removing_a_contact_removes_its_outbox_and_subscription_requests(app, client) -> None:
    signup(client, "erase@example.se")
    signup(client, "keep@example.se")
    before = count_rows(app)
    assert before["outbox_message"] == 2 and before["subscription_request"] == 2
    with app.app_context():
        from crm.services import remove_contact

        remove_contact(contact_id_of(app, "erase@example.se"))
        db.session.commit()
    after = count_rows(app)
    assert after["outbox_message"] == 1 and after["subscription_request"] == 1
