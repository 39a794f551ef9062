"""A campaign's report counts what came back for its messages: hard and soft
bounces and complaints, with their share of the messages tried (sent, or
refused by the mail server while sending)."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from extensions import db
from tests.mailing.helpers import consented_contacts
from tests.staff.helpers import client_as

PEOPLE = [f"person{n}@kund.example" for n in range(5)]


def _send_campaign(app: Any) -> tuple[int, dict[str, str]]:
    from crm.models import Contact
    from kernel.access import CLI_ACTOR
    from mailing import campaigns, delivery
    from mailing.models import OutboxMessage

    with app.app_context():
        texts = campaigns.CampaignInput("newsletter", "Nyheter", "Hej!", "News", "Hello!")
        campaign = campaigns.create_campaign(CLI_ACTOR, texts)
        campaigns.send_campaign(CLI_ACTOR, campaign.id)
        rows = dict(
            db.session.execute(
                sa.select(Contact.email, OutboxMessage.message_id)
                .join(Contact, Contact.id == OutboxMessage.contact_id)
                .where(OutboxMessage.campaign_id == campaign.id)
            ).all()
        )
        ids = db.session.scalars(
            sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign.id)
        ).all()
        delivery.deliver_many(list(ids))
        campaign_id = campaign.id
        db.session.remove()
    return campaign_id, rows


def test_the_report_counts_bounces_and_complaints_with_their_rates(app, smtp, api_as) -> None:
    consented_contacts(app, [(address, None, "en") for address in PEOPLE])
    smtp.refuse.add(PEOPLE[0])  # refused at RCPT TO while sending: hard
    campaign_id, message_ids = _send_campaign(app)
    other_campaign, other_ids = _send_campaign(app)
    marketing = api_as("marketing")
    reports = [
        (PEOPLE[1], "soft"),
        (PEOPLE[1], "soft"),  # the same message twice: recorded once
        (PEOPLE[2], "complaint"),
        (PEOPLE[3], "hard"),
    ]
    for address, kind in reports:
        answer = marketing.post(
            "/api/v1/bounces",
            json={
                "email": address,
                "type": kind,
                "source": "esp",
                "message_id": message_ids[address],
            },
        )
        assert answer.status_code == 200
    # A bounce of another campaign's message does not count for this one.
    marketing.post(
        "/api/v1/bounces",
        json={
            "email": PEOPLE[4],
            "type": "hard",
            "source": "esp",
            "message_id": other_ids[PEOPLE[4]],
        },
    )

    report = marketing.get(f"/api/v1/campaigns/{campaign_id}").json

    assert (report["sent"], report["failed"]) == (4, 1)
    assert (report["hard_bounces"], report["soft_bounces"], report["complaints"]) == (2, 1, 1)
    assert (report["hard_bounce_rate"], report["soft_bounce_rate"], report["complaint_rate"]) == (
        0.4,
        0.2,
        0.2,
    )
    other = marketing.get(f"/api/v1/campaigns/{other_campaign}").json
    assert (other["hard_bounces"], other["soft_bounces"], other["complaints"]) == (1, 0, 0)

    page = client_as(app, "marketing").get(f"/staff/campaigns/{campaign_id}").get_data(as_text=True)
    assert re.search(
        r'class="bounce-hard"><td>Hard bounces</td><td class="count">2</td><td class="rate">40.0 %',
        page,
    )
    assert re.search(
        r'class="bounce-soft">.*?<td class="count">1</td><td class="rate">20.0 %', page
    )
    assert re.search(
        r'class="bounce-complaints">.*?<td class="count">1</td><td class="rate">20.0 %', page
    )


def test_a_draft_has_no_rates(app, api_as) -> None:
    marketing = api_as("marketing")
    created = marketing.post(
        "/api/v1/campaigns",
        json={
            "topic": "newsletter",
            "subject_sv": "Nyheter",
            "body_sv": "Hej!",
            "subject_en": "News",
            "body_en": "Hello!",
        },
    ).json
    assert (created["hard_bounces"], created["hard_bounce_rate"], created["complaint_rate"]) == (
        0,
        None,
        None,
    )
    page = (
        client_as(app, "marketing").get(f"/staff/campaigns/{created['id']}").get_data(as_text=True)
    )
    assert re.search(r'class="bounce-hard">.*?<td class="rate">-</td>', page)
