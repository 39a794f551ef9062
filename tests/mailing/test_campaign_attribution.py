"""Unsubscribes, objections, bounces and complaints are attributed to the campaign
whose email caused them, through the message id its links and headers carry;
``mailing.campaign_report`` counts them per campaign."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa

from extensions import db
from tests.mailing.conftest import link
from tests.mailing.helpers import consented_contacts, decision
from tests.staff.helpers import client_as

PEOPLE = [f"reader{n}@kund.example" for n in range(6)]


def _send(app: Any, smtp: Any, subject: str) -> tuple[int, dict[str, EmailMessage]]:
    """A newsletter campaign sent to everyone allowed; its message per address."""
    from kernel.access import CLI_ACTOR
    from mailing import campaigns, delivery
    from mailing.models import OutboxMessage

    with app.app_context():
        texts = campaigns.CampaignInput("newsletter", subject, "Hej!", subject, "Hello!")
        campaign_id = campaigns.create_campaign(CLI_ACTOR, texts).id
        campaigns.send_campaign(CLI_ACTOR, campaign_id)
        ids = db.session.scalars(
            sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign_id)
        ).all()
        delivery.deliver_many(list(ids))
        db.session.remove()
    mine = {str(m["To"]).strip("<>"): m for m in smtp.messages if m["Subject"] == subject}
    return campaign_id, mine


def _outcomes(app: Any, *ids: int) -> dict[int, tuple[int, int, int, int, int]]:
    from mailing.campaign_report import campaign_outcomes

    with app.app_context():
        found = campaign_outcomes(list(ids) if ids else None)
        db.session.remove()
    return {
        o.campaign_id: (o.sent, o.bounced, o.complaints, o.unsubscribes, o.objections)
        for o in found
    }


def _one_click(message: EmailMessage) -> str:
    url = str(message["List-Unsubscribe"]).split(",")[0].strip().strip("<>")
    return url.removeprefix("http://localhost")


def test_each_outcome_is_counted_for_the_campaign_whose_email_caused_it(
    app, client, smtp, api_as
) -> None:
    consented_contacts(app, [(address, None, "en") for address in PEOPLE])
    first, mail = _send(app, smtp, "Autumn news")
    second, other_mail = _send(app, smtp, "Winter news")
    marketing = api_as("marketing")

    # One unsubscribes on the page behind the link, one by the one-click header.
    client.post(link(mail[PEOPLE[0]], "/unsubscribe/"), data={"scope": "topic"})
    fresh = app.test_client(use_cookies=False)
    fresh.post(_one_click(mail[PEOPLE[1]]), data={"List-Unsubscribe": "One-Click"})
    # One objects in the preference centre the email links to.
    client.post(link(mail[PEOPLE[2]], "/preferences/"), data={"action": "object"})
    # One hard-bounces, one complains: the provider names the returned Message-ID.
    for address, kind in ((PEOPLE[3], "hard"), (PEOPLE[4], "complaint")):
        answer = marketing.post(
            "/api/v1/bounces",
            json={
                "email": address,
                "type": kind,
                "source": "esp",
                "message_id": str(mail[address]["Message-ID"]),
            },
        )
        assert answer.json["outcome"] == "recorded"
    # The last one leaves through the other campaign's email: not the first's.
    client.post(link(other_mail[PEOPLE[5]], "/unsubscribe/"), data={"scope": "all"})

    assert _outcomes(app, first, second) == {
        first: (6, 1, 1, 2, 1),
        second: (6, 0, 0, 1, 0),
    }
    # Every campaign at once gives the same figures.
    assert _outcomes(app) == _outcomes(app, first, second)

    report = marketing.get(f"/api/v1/campaigns/{first}").json
    assert (report["unsubscribes"], report["objections"], report["complaints"]) == (2, 1, 1)
    page = client_as(app, "marketing").get(f"/staff/campaigns/{first}").get_data(as_text=True)
    assert re.search(r'class="caused-unsubscribes">.*?<td class="count">2</td>', page)
    assert re.search(r'class="caused-objections">.*?<td class="count">1</td>', page)


def test_the_ledger_keeps_the_message_and_campaign_of_the_link(
    app, client, smtp, admin_api
) -> None:
    from mailing.models import OutboxMessage

    [contact_id] = consented_contacts(app, [(PEOPLE[0], None, "sv")])
    campaign_id, mail = _send(app, smtp, "Nyheter")
    client.post(link(mail[PEOPLE[0]], "/unsubscribe/"), data={"scope": "object"})
    with app.app_context():
        outbox_id = db.session.scalar(
            sa.select(OutboxMessage.id).where(OutboxMessage.campaign_id == campaign_id)
        )
        db.session.remove()
    events = admin_api.get(f"/api/v1/contacts/{contact_id}/events").json
    objected = [e for e in events if e["kind"] == "objected"]
    assert [(e["campaign_id"], e["outbox_id"]) for e in objected] == [(campaign_id, outbox_id)]


def _forged_link(app: Any, contact_id: int, message: object) -> str:
    from consent.tokens import Purpose, make_token

    with app.app_context():
        token = make_token(Purpose.UNSUBSCRIBE, {"c": contact_id, "t": "newsletter", "m": message})
    return f"/unsubscribe/{token}"


def test_a_foreign_or_broken_message_id_attributes_nothing_and_still_unsubscribes(
    app, client, smtp, admin_api
) -> None:
    from mailing.models import OutboxMessage

    ids = consented_contacts(app, [(address, None, "en") for address in PEOPLE[:4]])
    campaign_id, _mail = _send(app, smtp, "Spring news")
    with app.app_context():
        someone_elses = db.session.scalar(
            sa.select(OutboxMessage.id).where(
                OutboxMessage.campaign_id == campaign_id, OutboxMessage.contact_id == ids[3]
            )
        )
        db.session.remove()
    # A message of the campaign, but sent to another contact; one that does not
    # exist; and values that are not a message id at all.
    for contact_id, message in zip(ids, [someone_elses, 999_999, "12", True], strict=False):
        answer = client.post(_forged_link(app, contact_id, message), data={"scope": "topic"})
        assert answer.status_code == 200
        assert decision(admin_api, contact_id, "newsletter")["reason"] == "unsubscribed"
    assert _outcomes(app, campaign_id) == {campaign_id: (4, 0, 0, 0, 0)}


def test_a_link_changed_by_hand_unsubscribes_nobody(app, client, smtp, admin_api) -> None:
    [contact_id] = consented_contacts(app, [(PEOPLE[0], None, "en")])
    campaign_id, mail = _send(app, smtp, "Summer news")
    path = link(mail[PEOPLE[0]], "/unsubscribe/")
    token = path.rpartition("/")[2]
    tampered = path[: -len(token)] + token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert client.post(tampered, data={"scope": "topic"}).status_code == 400
    assert decision(admin_api, contact_id, "newsletter")["allowed"] is True
    assert _outcomes(app, campaign_id) == {campaign_id: (1, 0, 0, 0, 0)}


def test_an_objection_through_the_unsubscribe_pages_preferences_link_counts_for_the_campaign(
    app, client, smtp
) -> None:
    """The unsubscribe page links to the preference centre; that link carries
    the email's message id on, so the objection made there is the campaign's."""
    consented_contacts(app, [(PEOPLE[0], None, "en")])
    campaign_id, mail = _send(app, smtp, "Spring news")
    page = client.get(link(mail[PEOPLE[0]], "/unsubscribe/")).get_data(as_text=True)
    (preferences,) = set(re.findall(r'href="(?:http://localhost)?(/preferences/[^"]+)"', page))
    client.post(preferences, data={"action": "object"})
    assert _outcomes(app, campaign_id)[campaign_id][4] == 1
