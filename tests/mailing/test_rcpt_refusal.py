"""A recipient refused at ``RCPT TO`` while sending: a 5xx is a hard bounce, a 4xx a retry.

A real SMTP server (aiosmtpd, in this process) answers 550 5.1.1 or 451 4.2.1
to one recipient's ``RCPT TO``, as a mail server does for a mailbox it does
not have or cannot take mail for now.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from extensions import db
from mailing import delivery, transport
from tests.mailing.helpers import consented_contacts, decision, outbox, signup

ANNA, BERIT = "anna.kund@kund.example", "berit.kund@kund.example"


def _queued_campaign(app: Any) -> tuple[int, list[int]]:
    from kernel.access import CLI_ACTOR
    from mailing import campaigns
    from mailing.models import OutboxMessage

    with app.app_context():
        texts = campaigns.CampaignInput("newsletter", "Nyheter", "Hej!", "News", "Hello!")
        campaign = campaigns.create_campaign(CLI_ACTOR, texts)
        campaigns.send_campaign(CLI_ACTOR, campaign.id)
        ids = sorted(
            db.session.scalars(
                sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign.id)
            )
        )
        db.session.remove()
    return campaign.id, ids


def _deliver(app: Any, outbox_ids: list[int]) -> dict[int, delivery.Delivery]:
    with app.app_context():
        try:
            return delivery.deliver_many(outbox_ids)
        finally:
            db.session.remove()


def _reports(app: Any) -> list[dict[str, Any]]:
    from consent.models import BounceReport

    with app.app_context():
        rows = db.session.scalars(sa.select(BounceReport).order_by(BounceReport.id)).all()
        found = [
            {
                "contact_id": r.contact_id,
                "type": r.type,
                "source": r.source,
                "status": r.status,
                "diagnostic": r.diagnostic,
                "outbox_id": r.outbox_id,
                "campaign_id": r.campaign_id,
            }
            for r in rows
        ]
        db.session.remove()
    return found


def test_a_550_at_rcpt_to_is_a_hard_bounce_recorded_through_the_one_path(
    app, smtp, admin_api
) -> None:
    anna, berit = consented_contacts(app, [(ANNA, "Anna", "en"), (BERIT, "Berit", "sv")])
    campaign_id, outbox_ids = _queued_campaign(app)
    smtp.refuse.add(ANNA)

    outcomes = _deliver(app, outbox_ids)

    assert sorted(o.status for o in outcomes.values()) == ["failed", "sent"]
    assert smtp.recipients == [BERIT]
    assert decision(admin_api, anna, "newsletter")["reason"] == "undeliverable"
    assert decision(admin_api, berit, "newsletter")["reason"] == "consent"
    [report] = _reports(app)
    failed = next(i for i, o in outcomes.items() if o.status == "failed")
    assert report == {
        "contact_id": anna,
        "type": "hard",
        "source": "smtp",
        "status": "5.1.1",
        "diagnostic": "smtp; 550 5.1.1 No such mailbox",
        "outbox_id": failed,
        "campaign_id": campaign_id,
    }


def test_the_next_campaign_does_not_try_a_refused_address_again(app, smtp) -> None:
    consented_contacts(app, [(ANNA, "Anna", "en"), (BERIT, "Berit", "sv")])
    _, first = _queued_campaign(app)
    smtp.refuse.add(ANNA)
    _deliver(app, first)
    smtp.refuse.clear()

    _, second = _queued_campaign(app)
    _deliver(app, second)

    assert smtp.recipients == [BERIT, BERIT]


def test_a_451_at_rcpt_to_stays_a_retry_and_records_no_bounce(app, smtp, admin_api) -> None:
    [anna] = consented_contacts(app, [(ANNA, "Anna", "en")])
    _, outbox_ids = _queued_campaign(app)
    smtp.defer.add(ANNA)

    with pytest.raises(transport.TemporaryFailure, match="451"):
        _deliver(app, outbox_ids)

    assert [row.status for row in outbox(app)] == ["queued"]
    assert _reports(app) == []
    assert decision(admin_api, anna, "newsletter")["reason"] == "consent"


def test_a_refused_confirmation_email_is_recorded_too(app, client, smtp, admin_api) -> None:
    """A transactional email (the double opt-in's confirmation) refused at RCPT
    TO is a bounce like any other: the address does not exist."""
    assert signup(client, ANNA).status_code in (200, 202, 303)
    [row] = outbox(app)
    smtp.refuse.add(ANNA)

    _deliver(app, [row.id])

    [report] = _reports(app)
    assert (report["type"], report["source"], report["campaign_id"]) == ("hard", "smtp", None)
    contact = admin_api.get("/api/v1/contacts", query_string={"email": ANNA}).json
    contact_id = contact["id"] if isinstance(contact, dict) else contact[0]["id"]
    assert decision(admin_api, contact_id, "newsletter")["reason"] == "undeliverable"


def test_a_refusal_carries_the_servers_words_in_the_transport_error(app, smtp) -> None:
    from email.message import EmailMessage

    smtp.refuse.add(ANNA)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "no-reply@localhost", ANNA, "Hi"
    message.set_content("Hello")
    with app.app_context(), pytest.raises(transport.RecipientRefused) as refused:
        transport.send(message, "x.eml")
    assert (refused.value.recipient, refused.value.code, refused.value.status) == (
        ANNA,
        550,
        "5.1.1",
    )
    assert isinstance(refused.value, transport.PermanentFailure)
