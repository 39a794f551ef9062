"""The policy's last check before a marketing send reads the contact as it is
once the contact is held, not as it was when the outbox row was read."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa

from consent.services import restrict_processing
from extensions import db
from mailing import campaigns
from mailing.models import MailStatus, OutboxMessage
from mailing.services import deliver
from tests.mailing.test_campaigns import SALES, STAFF, TEXTS, _consented_contacts


def test_a_restriction_committed_just_before_the_hold_blocks_the_send(app, smtp) -> None:
    """GDPR art. 18: a restriction committed after ``deliver`` read the row and
    its contact, but before it held the contact, still stops the email."""
    (contact_id,) = _consented_contacts(app, 1)
    with app.app_context():
        campaign = campaigns.create_campaign(STAFF, TEXTS)
        campaigns.send_campaign(STAFF, campaign.id)
        outbox_id = db.session.scalar(
            sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign.id)
        )
        db.session.remove()

    def restrict() -> None:
        with app.app_context():
            restrict_processing(SALES, contact_id, received_via="phone")
            db.session.remove()

    restricted = []

    def just_before_the_hold(state: Any) -> None:
        # The hold is the first locking read of the contact in ``deliver``.
        if not restricted and getattr(state.statement, "_for_update_arg", None) is not None:
            other = threading.Thread(target=restrict)
            other.start()
            other.join()
            restricted.append(contact_id)

    with app.app_context():
        session = db.session()
        sa.event.listen(session, "do_orm_execute", just_before_the_hold)
        try:
            result = deliver(outbox_id)
        finally:
            sa.event.remove(session, "do_orm_execute", just_before_the_hold)
        status = db.session.scalar(
            sa.select(OutboxMessage.status).where(OutboxMessage.id == outbox_id)
        )
        db.session.remove()
    assert restricted == [contact_id], "the restriction ran between the read and the hold"
    assert (result.status, result.reason) == ("blocked", "restricted")
    assert status == MailStatus.BLOCKED
    assert smtp.messages == []
