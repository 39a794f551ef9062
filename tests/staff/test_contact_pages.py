"""Search, a contact's page and the actions on it, as a staff member uses them."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from consent.models import ConsentEvent
from crm.models import Activity, AuditEntry, Contact
from extensions import db
from tests.conftest import known_since
from tests.staff.helpers import client_as, make_contact


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def verdicts(page: str) -> dict[tuple[str, str], str]:
    """(topic, channel) -> the verdict line as shown, e.g. "Not allowed: objection"."""
    found = {}
    for topic, channel, body in re.findall(
        r'data-topic="([^"]+)" data-channel="([^"]+)".*?class="verdict">(.*?)</p>', page, re.S
    ):
        found[(topic, channel)] = re.sub(r"<[^>]+>|[✓✕]", "", body).strip()
    return found


def contact_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'href="/staff/contacts/(\d+)"', page)]


def test_search_finds_by_email_name_or_company_start(app) -> None:
    anna = make_contact(app, "anna.kund@kund.example", "Anna Kund", "Kund AB")
    bo = make_contact(app, "bo@bransch.example", "Bo Bransch", "Bransch AB")
    cecilia = make_contact(app, "c.s@example.se", "Cecilia Samtycke", "Annexet AB")
    client = client_as(app, "sales")

    assert contact_ids(text(client.get("/staff/?q=ANNA.kund@kund.example"))) == [anna]
    assert contact_ids(text(client.get("/staff/?q=bo%20bra"))) == [bo]
    # "ann" starts an address, a name and a company name: all three ways find.
    assert sorted(contact_ids(text(client.get("/staff/?q=ann")))) == [anna, cecilia]
    assert contact_ids(text(client.get("/staff/?q=bransch"))) == [bo]
    assert "No contact matches" in text(client.get("/staff/?q=zzz"))


def test_search_treats_like_wildcards_as_text(app) -> None:
    make_contact(app, "anna.kund@kund.example", "Anna Kund", "Kund AB")
    client = client_as(app, "sales")
    assert "No contact matches" in text(client.get("/staff/?q=%25"))
    assert "No contact matches" in text(client.get("/staff/?q=_nna"))


def test_search_is_audited_without_the_search_text(app) -> None:
    make_contact(app)
    client_as(app, "sales").get("/staff/?q=anna")
    with app.app_context():
        entry = db.session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "contact.search")
        ).one()
    assert entry.actor == "user:sales@staff.example"
    assert entry.detail == "1 results"


def test_contact_page_shows_each_decision_with_basis_and_evidence(app) -> None:
    contact_id = make_contact(app)
    page = text(client_as(app, "sales").get(f"/staff/contacts/{contact_id}"))

    shown = verdicts(page)
    assert shown[("product-updates", "email")] == "Allowed: customer"
    assert shown[("newsletter", "email")] == "Not allowed: no basis"
    assert "legitimate interest" in page
    assert "crm-sync" in page  # the source of the customer basis
    assert "Data will be purged on" in page
    with app.app_context():
        read = db.session.scalar(
            sa.select(AuditEntry.contact_id).where(AuditEntry.action == "contact.read")
        )
    assert read == contact_id


def test_objection_by_phone_turns_every_decision_with_who_and_when(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "sales", name="Sara Sälj")

    response = client.post(
        f"/staff/contacts/{contact_id}/objection",
        data={"received_via": "phone", "channel": "all", "note": "Called, wants no mail"},
    )
    assert response.status_code == 303
    page = text(client.get(response.location))

    assert "Objection recorded." in page
    assert set(verdicts(page).values()) == {"Not allowed: objection"}
    with app.app_context():
        event = db.session.scalars(
            sa.select(ConsentEvent).where(ConsentEvent.kind == "objected")
        ).one()
    assert event.recorded_by == "user:sales@staff.example"
    assert event.received_via == "phone"
    assert "Sara Sälj (sales@staff.example)" in page
    assert f'<time datetime="{event.occurred_at.isoformat()}">' in page


def test_activity_logged_on_the_page_appears_and_moves_last_interaction(app) -> None:
    contact_id = make_contact(app)
    known_since(app, contact_id, "2026-01-01T00:00:00")  # before the meeting (X16)
    client = client_as(app, "marketing")
    response = client.post(
        f"/staff/contacts/{contact_id}/activities",
        data={"kind": "meeting", "occurred_at": "2026-03-04T09:30", "note": "Fair in Malmö"},
    )
    page = text(client.get(response.location))
    assert "Activity saved." in page and "Fair in Malmö" in page
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        assert contact.last_interaction_at.isoformat() == "2026-03-04T09:30:00+00:00"


def test_invalid_activity_changes_nothing_and_says_why(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "sales")
    response = client.post(
        f"/staff/contacts/{contact_id}/activities",
        data={"kind": "call", "occurred_at": "2999-01-01T00:00"},
    )
    assert "cannot have occurred in the future" in text(client.get(response.location))
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Activity)) == 0


def test_admin_restricts_and_lifts_processing(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "admin")
    client.post(f"/staff/contacts/{contact_id}/restriction", data={"note": "Disputes data"})
    page = text(client.get(f"/staff/contacts/{contact_id}"))
    assert set(verdicts(page).values()) == {"Not allowed: restricted"}
    assert "Processing restricted since" in page

    client.post(f"/staff/contacts/{contact_id}/restriction/lift", data={})
    page = text(client.get(f"/staff/contacts/{contact_id}"))
    assert verdicts(page)[("product-updates", "email")] == "Allowed: customer"
    with app.app_context():
        kinds = db.session.scalars(sa.select(ConsentEvent.kind).order_by(ConsentEvent.id)).all()
    assert kinds[-2:] == ["restricted", "unrestricted"]


def test_admin_sets_and_lifts_a_legal_hold(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "admin")
    client.post(f"/staff/contacts/{contact_id}/legal-hold", data={"reason": "Tax audit 2026"})
    assert "Tax audit 2026" in text(client.get(f"/staff/contacts/{contact_id}"))
    client.post(f"/staff/contacts/{contact_id}/legal-hold/lift", data={})
    with app.app_context():
        assert db.session.get(Contact, contact_id).legal_hold_reason is None


def test_sales_sees_no_admin_actions_and_is_refused_them(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "sales")
    page = text(client.get(f"/staff/contacts/{contact_id}"))
    assert "Record an objection" in page
    assert "Restrict processing" not in page and "Set a legal hold" not in page
    assert "Erase the contact" not in page

    refused = client.post(f"/staff/contacts/{contact_id}/restriction", data={})
    assert refused.status_code == 403
    assert "Your role may not do this." in text(refused)
    with app.app_context():
        assert db.session.get(Contact, contact_id).restricted_at is None


def test_names_notes_and_companies_with_markup_are_shown_as_text(app) -> None:
    contact_id = make_contact(
        app,
        "evil@example.se",
        '<script>alert("name")</script>',
        "<img src=x onerror=alert(1)> AB",
    )
    client = client_as(app, "sales")
    client.post(
        f"/staff/contacts/{contact_id}/activities",
        data={"kind": "call", "occurred_at": "2026-01-01T10:00", "note": "<b>bold</b>"},
    )
    for page in (
        text(client.get(f"/staff/contacts/{contact_id}")),
        text(client.get("/staff/?q=evil")),
    ):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=alert(1)&gt; AB" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in text(client.get(f"/staff/contacts/{contact_id}"))


def test_the_page_speaks_swedish_after_the_switch(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "sales")
    response = client.post(
        "/staff/language", data={"lang": "sv", "next": f"/staff/contacts/{contact_id}"}
    )
    assert response.location == f"/staff/contacts/{contact_id}"
    page = text(client.get(response.location))
    assert '<html lang="sv">' in page
    assert "Får vi marknadsföra till kontakten?" in page
    assert verdicts(page)[("product-updates", "email")] == "Tillåtet: kund"


def test_unknown_contact_is_a_404_page(app) -> None:
    response = client_as(app, "sales").get("/staff/contacts/999")
    assert response.status_code == 404
    assert "Page not found" in text(response)


def test_the_contact_page_shows_external_ids_and_search_finds_by_one(app) -> None:
    from crm import external_ids

    anna = make_contact(app, "anna.kund@kund.example", "Anna Kund", "Kund AB")
    bo = make_contact(app, "bo@bransch.example", "Bo Bransch", "Bransch AB")
    with app.app_context():
        external_ids.set_for_contact(anna, {"hubspot": "1234", "salesforce": "003AbC<b>"})
        db.session.commit()
    client = client_as(app, "sales")

    page = text(client.get(f"/staff/contacts/{anna}"))
    shown = re.search(r'class="external-ids">(.*?)</dd>', page, re.S)
    assert shown is not None
    assert re.sub(r"<[^>]+>", "", shown.group(1)) == "hubspot: 1234, salesforce: 003AbC&lt;b&gt;"
    assert re.search(r'class="external-ids">—</dd>', text(client.get(f"/staff/contacts/{bo}")))

    # The id as the other system writes it, case kept; found first.
    assert contact_ids(text(client.get("/staff/?q=salesforce:003AbC<b>"))) == [anna]
    assert contact_ids(text(client.get("/staff/?q=hubspot:1234"))) == [anna]
    assert "No contact matches" in text(client.get("/staff/?q=hubspot:9999"))
    assert "No contact matches" in text(client.get("/staff/?q=salesforce:003abc<b>"))
