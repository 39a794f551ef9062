"""Campaign pages for marketing staff: compose, preview by reason, send with a confirmation."""

from __future__ import annotations

import re

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
