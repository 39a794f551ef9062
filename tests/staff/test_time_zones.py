"""Times in the reader's zone and language (docs/i18n.md): each staff user's own
zone, the contact's on public pages; stored times stay UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from consent.models import PrivacyRequest
from consent.tokens import Purpose, make_token
from crm.models import AuditEntry, Contact
from extensions import db
from kernel.models import StaffUser
from tests.staff.helpers import make_contact, make_user, sign_in

MOMENT = datetime(2026, 12, 6, 14, 5, tzinfo=UTC)


def _admin_in(app, zone: str, email: str):  # type: ignore[no-untyped-def]
    user_id = make_user(app, "admin", email=email)
    client = app.test_client()
    sign_in(client, app, user_id)
    page = client.post("/staff/account/time-zone", data={"time_zone": zone})
    assert page.status_code == 303
    return client, user_id


def test_each_staff_user_sees_times_in_their_own_zone(app) -> None:
    with app.app_context():
        db.session.add(AuditEntry(at=MOMENT, actor="cli", action="zone.test", detail="x"))
        db.session.commit()
    stockholm, _ = _admin_in(app, "Europe/Stockholm", "sthlm@staff.example")
    new_york, _ = _admin_in(app, "America/New_York", "nyc@staff.example")
    # CLDR puts a narrow no-break space before "PM".
    assert ">Dec 6, 2026, 3:05\u202fPM CET</time>" in _audit(stockholm)
    assert ">Dec 6, 2026, 9:05\u202fAM EST</time>" in _audit(new_york)
    # The stored moment did not move.
    with app.app_context():
        stored = db.session.scalars(db.select(AuditEntry).filter_by(action="zone.test")).one()
        assert stored.at == MOMENT


def _audit(client) -> str:  # type: ignore[no-untyped-def]
    page = client.get("/staff/admin/audit", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_a_new_staff_user_sees_stockholm_time(app) -> None:
    user_id = make_user(app, "admin", email="new@staff.example")
    with app.app_context():
        assert db.session.get(StaffUser, user_id).time_zone == "Europe/Stockholm"


def test_an_unknown_zone_is_refused_with_a_clear_message(app) -> None:
    client, user_id = _admin_in(app, "Europe/Helsinki", "fi@staff.example")
    refusals = {
        "Mars/Olympus_Mons": "Choose a time zone from the list, such as Europe/Stockholm.",
        "../../etc/passwd": "Choose a time zone from the list, such as Europe/Stockholm.",
        "europe/stockholm": "Choose a time zone from the list, such as Europe/Stockholm.",
        "": "time_zone: Length must be between 1 and 64.",
        "x" * 65: "time_zone: Length must be between 1 and 64.",
    }
    for bad, message in refusals.items():
        answer = client.post("/staff/account/time-zone", data={"time_zone": bad})
        page = client.get(answer.location, headers={"Accept-Language": "en"}).get_data(as_text=True)
        assert f'class="flash error">{message}<' in page
    with app.app_context():
        assert db.session.get(StaffUser, user_id).time_zone == "Europe/Helsinki"  # unchanged
    client.post("/staff/language", data={"lang": "sv"})
    client.post("/staff/account/time-zone", data={"time_zone": "Mars/Olympus_Mons"})
    page = client.get("/staff/account").get_data(as_text=True)
    assert "Välj en tidszon i listan, till exempel Europe/Stockholm." in page
    # marshmallow's own message, matched back to its pattern and translated.
    client.post("/staff/account/time-zone", data={"time_zone": ""})
    page = client.get("/staff/account").get_data(as_text=True)
    assert "time_zone: Längden måste vara mellan 1 och 64." in page


def _erasure_due(app, country: str, due: datetime) -> str:  # type: ignore[no-untyped-def]
    contact_id = make_contact(app, email=f"person.{country.lower()}@kund.example")
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        contact.country = country
        contact.language = "en"
        request = PrivacyRequest(
            contact_id=contact_id,
            kind="erasure",
            status="awaiting_admin",
            verified_at=due,
            due_at=due,
        )
        db.session.add(request)
        db.session.commit()
        token = make_token(Purpose.VERIFY_ADDRESS, {"p": request.id})
    return token


def test_a_public_page_shows_the_due_date_in_the_contacts_zone(app, client) -> None:
    # 22:30 UTC on 5 January is already 6 January in Helsinki, still the 5th in Stockholm.
    late = datetime(2027, 1, 5, 22, 30, tzinfo=UTC)
    finnish = client.get(f"/privacy/verify/{_erasure_due(app, 'FI', late)}")
    swedish = client.get(f"/privacy/verify/{_erasure_due(app, 'SE', late)}")
    assert finnish.status_code == swedish.status_code == 200
    assert "Jan 6, 2027" in finnish.get_data(as_text=True)
    assert "Jan 5, 2027" in swedish.get_data(as_text=True)
