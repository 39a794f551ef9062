"""A stranger posting the public form cannot create a consent behind a person's back.

Anyone can post ``/subscribe`` with anyone's address (a script needs no
browser). R8 lets a ticked box count at once in some countries; these tests
prove that the country deciding that is the one we hold for the person, and
that a consent recorded at once is told to the address's owner at once, with
a link whose button undoes it as their own act.
"""

from __future__ import annotations

import pytest

from tests.conftest import count_rows
from tests.mailing.conftest import link, text_of
from tests.mailing.helpers import contact_id_of, decision, events, outbox

SITE = "https://www.example.se"
# What an attacker's script posts: the hosted form's fields, any country it
# likes, and (ignored now) a wording of its own. No Origin: not a browser.
FORGED = {
    "form_id": "hosted",
    "consent": "on",
    "language": "en",
    "topics": "events",
    "wording": "Whatever the script wants recorded.",
}


def _forge(client, address: str, **extra: str):  # type: ignore[no-untyped-def]
    return client.post("/subscribe", data={**FORGED, "email": address, **extra})


def test_a_posted_country_never_overrides_the_stored_one(app, client, admin_api) -> None:
    # Dieter is stored in Germany, where a ticked box still needs his confirmation (R8).
    created = admin_api.post(
        "/api/v1/contacts", json={"email": "dieter@example.de", "country": "DE"}
    )
    contact_id = created.json["id"]

    response = _forge(client, "dieter@example.de", country="SE")

    assert response.status_code == 200
    waiting = decision(admin_api, contact_id, "events")
    assert (waiting["allowed"], waiting["reason"]) == (False, "pending_confirmation")
    assert "confirmed" not in [e["kind"] for e in events(admin_api, contact_id)]
    assert [row.template for row in outbox(app)] == ["confirm"]
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").json["country"] == "DE"


def test_a_posted_country_only_fills_an_empty_one_and_the_person_is_told(
    app, client, admin_api
) -> None:
    # Known, with no country: the posted one stands in for this decision only.
    created = admin_api.post("/api/v1/contacts", json={"email": "nils@example.se"})
    contact_id = created.json["id"]

    _forge(client, "nils@example.se", country="SE")

    assert decision(admin_api, contact_id, "events")["reason"] == "consent"
    assert [row.template for row in outbox(app)] == ["subscribed"]
    # The unverified form did not edit the contact (a stored SE would also
    # open legitimate interest, X19).
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").json["country"] is None


def test_a_single_opt_in_is_told_at_once_and_undone_by_the_persons_button(
    app, client, admin_api, smtp, mail_worker, monkeypatch
) -> None:
    monkeypatch.setitem(app.config, "BRAND_NAME", "Acme Nordic")
    response = _forge(client, "lena@example.se", country="SE")
    assert response.status_code == 200
    contact_id = contact_id_of(app, "lena@example.se")
    assert decision(admin_api, contact_id, "events")["reason"] == "consent"

    mail_worker.drain()
    [notice] = smtp.wait_for(1)
    assert notice["To"].addresses[0].addr_spec == "lena@example.se"
    assert "Acme Nordic" in notice["Subject"]
    body = text_of(notice)
    assert "Events, seminars and webinars" in body
    assert notice["List-Unsubscribe"] is None  # transactional: it goes whatever the decision
    undo_path = link(notice, "/undo/")

    # Opening the link (a mail scanner does) changes nothing.
    before = count_rows(app)
    page = client.get(undo_path)
    assert page.status_code == 200
    assert b"Undo the subscription</button>" in page.data
    assert b"Events, seminars and webinars" in page.data
    assert count_rows(app) == before
    assert decision(admin_api, contact_id, "events")["reason"] == "consent"

    done = client.post(undo_path, headers={"User-Agent": "Mozilla/5.0 (phone)"})
    assert done.status_code == 200 and b"Subscription undone" in done.data
    refused = decision(admin_api, contact_id, "events")
    assert (refused["allowed"], refused["reason"]) == (False, "unsubscribed")
    [withdrawn] = [e for e in events(admin_api, contact_id) if e["kind"] == "withdrawn"]
    assert withdrawn["topic"] == "events"
    assert withdrawn["source"] == "email_link"
    assert withdrawn["recorded_by"] == "person:email-owner"
    assert withdrawn["user_agent"] == "Mozilla/5.0 (phone)"
    assert withdrawn["page_url"] == "http://localhost/undo/<token>"  # never a working link

    # Pressing again records nothing.
    before = count_rows(app)
    assert client.post(undo_path).status_code == 200
    assert count_rows(app) == before

    # The person's "no" now stands: the same forged post cannot open it at once again.
    _forge(client, "lena@example.se", country="SE")
    assert decision(admin_api, contact_id, "events")["reason"] == "unsubscribed"


def test_an_undo_link_leaves_a_consent_given_since_alone(
    app, client, admin_api, smtp, mail_worker
) -> None:
    _forge(client, "maja@example.se", country="SE")
    contact_id = contact_id_of(app, "maja@example.se")
    mail_worker.drain()
    undo_path = link(smtp.wait_for(1)[0], "/undo/")
    client.post(undo_path)
    # Later Maja subscribes again and confirms by email herself.
    _forge(client, "maja@example.se", country="SE")
    mail_worker.drain()
    confirmation = next(m for m in smtp.wait_for(2) if "/confirm/" in text_of(m))
    client.post(link(confirmation, "/confirm/"))
    assert decision(admin_api, contact_id, "events")["reason"] == "consent"

    # The old notice's button undoes only the consent it told of.
    before = count_rows(app)
    assert b"nothing left to undo" in client.get(undo_path).data
    assert client.post(undo_path).status_code == 200
    assert count_rows(app) == before
    assert decision(admin_api, contact_id, "events")["reason"] == "consent"


@pytest.mark.parametrize("country", ["DE", None])
def test_no_notice_where_nothing_was_recorded_at_once(app, client, country) -> None:
    # A country that needs the confirmation, or none: the confirmation email only.
    extra = {"country": country} if country else {}
    _forge(client, "erik@example.se", **extra)
    assert [row.template for row in outbox(app)] == ["confirm"]
