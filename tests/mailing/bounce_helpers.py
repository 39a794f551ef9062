"""A contact we really mailed (a campaign sent through the outbox), for the bounce tests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from extensions import db
from tests.mailing.helpers import consented_contacts, decision


def mailed_contacts(app: Any, addresses: list[str]) -> tuple[list[int], int, dict[str, str]]:
    """Contacts with a confirmed newsletter consent, each sent one campaign email
    (delivered to the mail folder or SMTP, whichever the app has): their ids, the
    campaign's id, and the Message-ID of each one's email by address."""
    from crm.models import Contact
    from kernel.access import CLI_ACTOR
    from mailing import campaigns, delivery
    from mailing.models import OutboxMessage

    ids = consented_contacts(app, [(a, "Anna Kund", "en") for a in addresses])
    with app.app_context():
        texts = campaigns.CampaignInput("newsletter", "Nyheter", "Hej!", "News", "Hello!")
        campaign = campaigns.create_campaign(CLI_ACTOR, texts)
        campaigns.send_campaign(CLI_ACTOR, campaign.id)
        rows = db.session.scalars(
            sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign.id)
        ).all()
        outcomes = delivery.deliver_many(list(rows))
        assert {o.status for o in outcomes.values()} == {"sent"}, outcomes
        by_address = dict(
            db.session.execute(
                sa.select(Contact.email, OutboxMessage.message_id)
                .join(Contact, Contact.id == OutboxMessage.contact_id)
                .where(OutboxMessage.campaign_id == campaign.id)
            ).all()
        )
        campaign_id = campaign.id
        db.session.remove()
    return ids, campaign_id, by_address


def newsletter_reason(api: Any, contact_id: int) -> str:
    """The reason of the contact's newsletter-by-email decision (consent while allowed)."""
    return str(decision(api, contact_id, "newsletter")["reason"])
