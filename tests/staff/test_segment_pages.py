"""The segment pages: create with a live count, edit, delete (refused while a draft
targets it), and a campaign composed for a segment with its preview per reason."""

from __future__ import annotations

import re

import sqlalchemy as sa

from extensions import db
from tests.mailing.test_segments import PEOPLE, _contacts, _object
from tests.staff.helpers import client_as


def _segment_count(app) -> int:
    from mailing.models import Segment

    with app.app_context():
        found = db.session.scalar(sa.select(sa.func.count()).select_from(Segment))
        db.session.remove()
    return found or 0


def test_marketing_saves_a_segment_and_sees_how_many_are_in_it(app) -> None:
    _contacts(app, PEOPLE)
    client = client_as(app, "marketing")

    created = client.post("/staff/segments", data={"name": "Sweden", "country": "se"})
    assert created.status_code == 303
    page = client.get(created.location).get_data(as_text=True)
    assert re.search(r'class="segment-count">3<', page)
    listed = client.get("/staff/segments").get_data(as_text=True)
    assert re.search(r'>Sweden</a></td>.*?<code>country=SE</code>.*?class="count">3<', listed, re.S)

    client.post(created.location, data={"name": "Norway", "country": "NO"})
    assert re.search(
        r'class="segment-count">1<', client.get(created.location).get_data(as_text=True)
    )


def test_a_filter_that_is_not_valid_is_refused_with_its_reason(app) -> None:
    client = client_as(app, "marketing")
    answer = client.post(
        "/staff/segments",
        data={"name": "Bad", "created_from": "last week"},
        follow_redirects=True,
    )
    assert "YYYY-MM-DD" in answer.get_data(as_text=True)
    assert _segment_count(app) == 0


def test_a_segment_refusal_reads_in_swedish(app) -> None:
    client = client_as(app, "marketing")
    client.post("/staff/language", data={"lang": "sv", "next": "/staff/segments"})
    empty = client.post("/staff/segments", data={"name": "Alla"}, follow_redirects=True)
    assert "Välj minst ett filter" in empty.get_data(as_text=True)
    client.post("/staff/segments", data={"name": "Sverige", "country": "SE"})
    taken = client.post(
        "/staff/segments", data={"name": "sverige", "country": "NO"}, follow_redirects=True
    )
    assert "Det finns redan ett segment som heter &#39;sverige&#39;" in taken.get_data(as_text=True)
    assert _segment_count(app) == 1


def test_a_campaign_for_a_segment_previews_its_allowed_and_the_rest_per_reason(app) -> None:
    ids = _contacts(app, PEOPLE)
    _object(app, ids["objector.se@kund.example"])
    client = client_as(app, "marketing")
    segment = client.post("/staff/segments", data={"name": "Sweden", "country": "SE"})
    segment_id = segment.location.rpartition("/")[2]
    form = {
        "topic": "newsletter",
        "subject_sv": "Nytt",
        "body_sv": "Hej!",
        "subject_en": "News",
        "body_en": "Hello!",
        "segment_id": segment_id,
    }
    campaign = client.post("/staff/campaigns", data=form).location

    preview = client.get(campaign + "?preview=1").get_data(as_text=True)
    assert re.search(r'class="preview-in-segment">3<', preview)
    assert re.search(r'class="preview-audience">1<', preview)
    reasons = dict(re.findall(r'class="preview-reason"><td>([^<]+)</td><td>(\d+)<', preview))
    assert reasons == {"no basis": "1", "objection": "1"}

    # Deleting the segment a draft targets is refused, and says why.
    refused = client.post(
        f"/staff/segments/{segment_id}/delete", data={"confirm": "yes"}, follow_redirects=True
    )
    assert "not yet sent" in refused.get_data(as_text=True)
    assert _segment_count(app) == 1
    # Retargeted to the whole topic, the segment can go.
    client.post(campaign + "/segment", data={"segment_id": ""})
    client.post(f"/staff/segments/{segment_id}/delete", data={"confirm": "yes"})
    assert _segment_count(app) == 0


def test_the_segment_pages_speak_swedish(app) -> None:
    client = client_as(app, "marketing")
    client.post("/staff/language", data={"lang": "sv", "next": "/staff/"})
    page = client.get("/staff/segments").get_data(as_text=True)
    assert "Segment" in page and "Spara segmentet" in page
