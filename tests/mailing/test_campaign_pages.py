"""Campaign pages for marketing staff: compose, preview by reason, send with a confirmation."""

from __future__ import annotations

import re

import sqlalchemy as sa

from consent.services import record_objection
from extensions import db
from kernel.access import Actor
from tests.mailing.test_campaigns import _consented_contacts
from tests.staff.helpers import client_as

FORM = {
    "topic": "newsletter",
    "subject_sv": "Vårens nyheter",
    "body_sv": "Hej!",
    "subject_en": "Spring news",
    "body_en": "Hello!",
}


def test_marketing_composes_previews_and_sends_a_campaign(app, mail_worker, smtp) -> None:
    ids = _consented_contacts(app, 3)
    with app.app_context():
        record_objection(Actor(kind="user", name="s", role="sales"), ids[0], received_via="phone")
        db.session.remove()
    client = client_as(app, "marketing")

    created = client.post("/staff/campaigns", data=FORM)
    assert created.status_code == 303
    page_url = created.location
    preview = client.get(page_url + "?preview=1").get_data(as_text=True)
    assert re.search(r'class="preview-audience">2<', preview)
    assert re.search(r'class="preview-reason"><td>(objection|suppressed)</td><td>1<', preview)

    unconfirmed = client.post(page_url + "/send", data={}, follow_redirects=True)
    assert "Tick the box to confirm" in unconfirmed.get_data(as_text=True)
    assert smtp.messages == []

    client.post(page_url + "/send", data={"confirm": "yes"})
    mail_worker.drain()
    page = client.get(page_url).get_data(as_text=True)
    assert re.search(r'class="sent">2<', page)
    assert re.search(r'class="audience">2<', page)
    assert len(smtp.messages) == 2
    listing = client.get("/staff/campaigns").get_data(as_text=True)
    assert "Spring news" in listing


def _statements(app, client, url: str) -> int:
    seen: list[str] = []
    with app.app_context():
        engine = db.engine

        def count(_conn, _cursor, statement, *_rest) -> None:
            seen.append(statement)

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            assert client.get(url).status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_the_campaign_list_shows_each_campaigns_own_counts_in_a_fixed_number_of_queries(
    app, mail_worker, smtp
) -> None:
    _consented_contacts(app, 2)
    client = client_as(app, "marketing")
    sent_url = client.post("/staff/campaigns", data=FORM).location
    client.post(sent_url + "/send", data={"confirm": "yes"})
    mail_worker.drain()
    client.post("/staff/campaigns", data={**FORM, "subject_en": "Draft only"})
    client.get("/staff/campaigns")  # the sign-in's own first reads are not the page's

    rows = re.findall(
        r'<tr class="campaign">.*?>([^<]+)</a>.*?data-label="Sent">([^<]+)<',
        client.get("/staff/campaigns").get_data(as_text=True),
        re.S,
    )
    assert rows == [("Draft only", "0"), ("Spring news", "2")]

    two = _statements(app, client, "/staff/campaigns")
    for n in range(4):
        client.post("/staff/campaigns", data={**FORM, "subject_en": f"More {n}"})
    assert _statements(app, client, "/staff/campaigns") == two
