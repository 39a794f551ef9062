"""The policy's last check before a marketing send reads the contact as it is
once the contact is held, not as it was when the outbox row was read."""

from __future__ import annotations

import sqlalchemy as sa

from consent.services import restrict_processing
from extensions import db
from mailing import campaigns
from mailing.models import MailStatus, OutboxMessage
from tests.mailing.helpers import deliver_with_a_change_before_the_hold
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

    result, restricted = deliver_with_a_change_before_the_hold(app, outbox_id, restrict)
    with app.app_context():
        status = db.session.scalar(
            sa.select(OutboxMessage.status).where(OutboxMessage.id == outbox_id)
        )
        db.session.remove()
    assert restricted, "the restriction ran between the read and the hold"
    assert (result.status, result.reason) == ("blocked", "restricted")
    assert status == MailStatus.BLOCKED
    assert smtp.messages == []
