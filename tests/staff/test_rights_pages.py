"""The person's rights carried out from the staff pages (R20): export, erasure,
restriction, rectification, and the privacy-request inbox whose records
outlive the contact without personal data (issue 19, item 10)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from consent.models import PrivacyRequest
from consent.privacy_requests import add_months
from crm.models import AuditEntry, Contact
from extensions import db
from kernel.addresses import keyed_hash
from tests.staff.helpers import client_as, make_contact

EMAIL = "anna.kund@kund.example"


def text(response: Any) -> str:
    return response.get_data(as_text=True)


def requests() -> list[PrivacyRequest]:
    """Every request row, oldest first, detached (in the caller's app context)."""
    rows = list(db.session.scalars(sa.select(PrivacyRequest).order_by(PrivacyRequest.id)))
    db.session.expunge_all()
    return rows


def public_request(app: Any, contact_id: int, kind: str, verified_at: datetime) -> int:
    """A request from the public form, verified through its link at ``verified_at``."""
    from consent import rights

    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        request = rights.open_privacy_request(contact, kind, verified_at - timedelta(hours=1))
        rights.verify_privacy_request(request.id, verified_at)
        db.session.commit()
        request_id = request.id
        db.session.remove()
    return request_id


def test_admin_exports_the_contact_as_a_json_file_and_the_answer_is_recorded(
    app, admin_api
) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "admin")

    response = client.post(f"/staff/contacts/{contact_id}/export", data={"received_via": "letter"})

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="contact-{contact_id}-export.json"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    exported = json.loads(response.get_data())
    # The same content as the API's access export (consent.rights.export_contact).
    over_api = admin_api.get(f"/api/v1/contacts/{contact_id}/export").json
    assert exported.keys() == over_api.keys()
    assert exported["profile"]["email"] == EMAIL
    assert "emails" in exported  # mailing's section, through collect_export_sections
    with app.app_context():
        [request] = requests()
    assert (request.kind, request.status, request.outcome) == ("access", "completed", "exported")
    assert request.received_via == "letter"
    assert request.handled_by == "user:admin@staff.example"
    assert request.completed_at <= request.due_at


def test_erasure_needs_its_confirmation_and_leaves_only_a_record_without_personal_data(
    app,
) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "admin")
    page = text(client.get(f"/staff/contacts/{contact_id}"))
    assert "Not available yet" not in page
    assert f'href="/staff/contacts/{contact_id}/erase"' in page

    confirm = text(client.get(f"/staff/contacts/{contact_id}/erase"))
    assert "Yes, erase the contact" in confirm and 'name="confirm" value="yes"' in confirm

    # A post without the confirmation's "yes" erases nothing and says why.
    refused = client.post(f"/staff/contacts/{contact_id}/erase", data={"received_via": "phone"})
    assert refused.status_code == 303
    assert "confirm" in text(client.get(refused.location))
    with app.app_context():
        assert db.session.get(Contact, contact_id) is not None

    erased = client.post(
        f"/staff/contacts/{contact_id}/erase", data={"confirm": "yes", "received_via": "phone"}
    )
    assert erased.location == "/staff/admin/privacy-requests?show=closed"
    inbox = text(client.get(erased.location))
    assert "Contact erased." in inbox
    with app.app_context():
        assert db.session.get(Contact, contact_id) is None
        [request] = requests()
        assert (
            db.session.scalar(sa.select(AuditEntry.id).where(AuditEntry.contact_id == contact_id))
            is None
        )
        assert request.address_hash == keyed_hash(EMAIL)
    assert (request.kind, request.outcome, request.received_via) == ("erasure", "erased", "phone")
    assert request.contact_id is None
    assert request.requested_at <= request.completed_at <= request.due_at
    assert request.handled_by == "user:admin@staff.example"
    # Nothing in the record names the person: only the keyed hash, dates and codes.
    values = [str(getattr(request, c.key)) for c in PrivacyRequest.__table__.columns]
    assert not any("anna" in v.lower() or "kund" in v.lower() for v in values)
    assert f"request-{request.id}" in inbox and "erased" in inbox


def test_a_verified_public_erasure_request_is_answered_from_the_inbox_and_outlives_the_contact(
    app,
) -> None:
    contact_id = make_contact(app)
    verified = datetime.now(UTC) - timedelta(days=3)
    request_id = public_request(app, contact_id, "erasure", verified)
    client = client_as(app, "admin")

    inbox = text(client.get("/staff/admin/privacy-requests"))
    row = re.search(rf'<tr id="request-{request_id}".*?</tr>', inbox, re.S).group(0)
    assert "awaiting admin" in row
    assert f'<time datetime="{add_months(verified, 1).isoformat()}">' in row
    assert f'href="/staff/contacts/{contact_id}/erase"' in inbox
    # The contact page names the open request too.
    assert "Open privacy requests" in text(client.get(f"/staff/contacts/{contact_id}"))

    client.post(f"/staff/contacts/{contact_id}/erase", data={"confirm": "yes"})

    with app.app_context():
        [request] = requests()
    assert request.id == request_id  # the public request is answered, not a second one made
    assert (request.status, request.outcome, request.contact_id) == ("completed", "erased", None)
    assert request.received_via == "web"
    assert request.verified_at == verified and request.completed_at <= request.due_at
    closed = text(client.get("/staff/admin/privacy-requests?show=closed"))
    assert f'id="request-{request_id}"' in closed
    assert text(client.get("/staff/admin/privacy-requests")).count('<tr id="request-') == 0


def test_a_legal_hold_refuses_erasure_and_the_inbox_refuses_the_request_with_its_reason(
    app,
) -> None:
    contact_id = make_contact(app)
    request_id = public_request(app, contact_id, "erasure", datetime.now(UTC))
    client = client_as(app, "admin")
    client.post(f"/staff/contacts/{contact_id}/legal-hold", data={"reason": "Tax audit 2026"})

    confirm = text(client.get(f"/staff/contacts/{contact_id}/erase"))
    assert "Erasure is refused while a legal hold is set" in confirm and "erase-form" not in confirm
    refused = client.post(f"/staff/contacts/{contact_id}/erase", data={"confirm": "yes"})
    assert "legal hold" in text(client.get(refused.location))
    with app.app_context():
        assert db.session.get(Contact, contact_id) is not None
        assert requests()[0].status == "awaiting_admin"  # nothing half-done

    client.post(f"/staff/admin/privacy-requests/{request_id}/refuse", data={"reason": " "})
    with app.app_context():
        assert requests()[0].status == "awaiting_admin"
    client.post(
        f"/staff/admin/privacy-requests/{request_id}/refuse",
        data={"reason": "Legal hold: accounting law (GDPR art. 17(3)(b))"},
    )
    with app.app_context():
        [request] = requests()
    assert (request.status, request.outcome) == ("refused", "refused")
    assert request.outcome_note == "Legal hold: accounting law (GDPR art. 17(3)(b))"
    again = client.post(
        f"/staff/admin/privacy-requests/{request_id}/refuse", data={"reason": "Twice"}
    )
    assert "answered already" in text(client.get(again.location))


def test_the_deadline_extends_once_by_two_months_with_its_reason(app) -> None:
    contact_id = make_contact(app)
    verified = datetime.now(UTC) - timedelta(days=1)
    request_id = public_request(app, contact_id, "erasure", verified)
    client = client_as(app, "admin")
    path = f"/staff/admin/privacy-requests/{request_id}/extend"

    assert "reason:" in text(client.get(client.post(path, data={}).location))
    assert "needs its reason" in text(client.get(client.post(path, data={"reason": " "}).location))
    client.post(path, data={"reason": "Two hundred requests after the breach"})
    second = client.post(path, data={"reason": "More"})
    assert "extended already" in text(client.get(second.location))

    with app.app_context():
        [request] = requests()
    assert request.due_at == add_months(verified, 1)
    assert request.extended_until == add_months(verified, 3)
    assert request.extension_reason == "Two hundred requests after the breach"
    row = re.search(
        rf'<tr id="request-{request_id}".*?</tr>',
        text(client.get("/staff/admin/privacy-requests")),
        re.S,
    ).group(0)
    assert "Two hundred requests after the breach" in row
    assert f'<time datetime="{add_months(verified, 3).isoformat()}">' in row


def test_an_overdue_request_is_highlighted_and_listed_apart(app) -> None:
    late = public_request(app, make_contact(app), "erasure", datetime.now(UTC) - timedelta(days=40))
    on_time = public_request(
        app,
        make_contact(app, "bo@bransch.example", "Bo", "Bransch AB"),
        "erasure",
        datetime.now(UTC) - timedelta(days=2),
    )
    client = client_as(app, "dpo")

    inbox = text(client.get("/staff/admin/privacy-requests"))
    assert re.search(rf'<tr id="request-{late}" class="overdue"', inbox)
    assert re.search(rf'<tr id="request-{on_time}" class=""', inbox)
    # Soonest deadline first: the late one leads.
    assert inbox.index(f"request-{late}") < inbox.index(f"request-{on_time}")
    overdue = text(client.get("/staff/admin/privacy-requests?show=overdue"))
    assert f"request-{late}" in overdue and f"request-{on_time}" not in overdue
    # The dpo reads the inbox but takes no admin action from it.
    assert "Refuse the request" not in inbox and "Extend the deadline" not in inbox
    with app.app_context():
        assert (
            db.session.scalar(
                sa.select(AuditEntry.detail).where(AuditEntry.action == "privacy_request.list")
            )
            == "show=open requests=2"
        )


def test_rectification_from_the_contact_page_follows_the_apis_rules(app) -> None:
    contact_id = make_contact(app)
    make_contact(app, "taken@kund.example", "Taken", "Kund AB")
    client = client_as(app, "marketing")
    form = {"email": EMAIL, "name": "Anna Kund", "country": "SE", "language": "en"}
    path = f"/staff/contacts/{contact_id}/rectify"

    unchanged = client.post(path, data=form)
    assert "Nothing to correct" in text(client.get(unchanged.location))
    taken = client.post(path, data={**form, "email": "TAKEN@kund.example", "phone": "+46 8 1"})
    assert "Another contact has that address." in text(client.get(taken.location))
    with app.app_context():
        assert db.session.get(Contact, contact_id).phone is None  # nothing half-written
        assert requests() == []

    done = client.post(
        path,
        data={**form, "name": "Anna Rättad", "phone": "+46 8 123", "received_via": "email"},
    )
    assert "Contact corrected." in text(client.get(done.location))
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        assert (contact.name, contact.phone) == ("Anna Rättad", "+46 8 123")
        [request] = requests()
        assert (
            db.session.scalar(
                sa.select(AuditEntry.detail).where(AuditEntry.action == "contact.rectify")
            )
            == "name,phone"
        )
        assert request.address_hash == keyed_hash(EMAIL)
    assert (request.kind, request.outcome, request.outcome_note) == (
        "rectification",
        "rectified",
        "name,phone",
    )
    assert request.received_via == "email"


def test_rectification_announces_a_deciding_field_like_the_api(app) -> None:
    from kernel.signals import contact_rectified, decisions_changed

    contact_id = make_contact(app)
    heard: list[tuple[str, Any]] = []

    def rectified(sender: Any, **kwargs: Any) -> None:
        heard.append(("rectified", kwargs["fields"]))

    def changed(sender: Any, **kwargs: Any) -> None:
        heard.append(("decisions", kwargs["kind"]))

    contact_rectified.connect(rectified)
    decisions_changed.connect(changed)
    try:
        client_as(app, "admin").post(
            f"/staff/contacts/{contact_id}/rectify",
            data={"email": EMAIL, "name": "Anna Kund", "country": "de", "language": "en"},
        )
    finally:
        contact_rectified.disconnect(rectified)
        decisions_changed.disconnect(changed)
    assert sorted(heard) == [("decisions", "rectified"), ("rectified", ("country",))]
    with app.app_context():
        assert db.session.get(Contact, contact_id).country == "DE"


def test_a_restricted_contact_is_not_rectified_from_the_page(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "admin")
    client.post(f"/staff/contacts/{contact_id}/restriction", data={"received_via": "letter"})
    refused = client.post(
        f"/staff/contacts/{contact_id}/rectify",
        data={"email": EMAIL, "name": "Other", "received_via": "letter"},
    )
    assert "restricted (GDPR art. 18)" in text(client.get(refused.location))
    with app.app_context():
        assert db.session.get(Contact, contact_id).name == "Anna Kund"
        # The restriction was the person's request and is on record; the refused
        # rectification left none.
        assert [(r.kind, r.outcome) for r in requests()] == [("restriction", "restricted")]


def test_restriction_on_the_persons_request_is_recorded_and_can_be_lifted(app) -> None:
    contact_id = make_contact(app)
    client = client_as(app, "admin")
    client.post(
        f"/staff/contacts/{contact_id}/restriction",
        data={"received_via": "phone", "note": "Disputes the data"},
    )
    client.post(f"/staff/contacts/{contact_id}/restriction/lift", data={})
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        [request] = requests()
    assert contact.restricted_at is None
    assert (request.kind, request.outcome, request.received_via) == (
        "restriction",
        "restricted",
        "phone",
    )


def test_an_extended_request_is_not_overdue_until_its_extended_deadline(app) -> None:
    from consent import privacy_requests
    from kernel.access import CLI_ACTOR

    verified = datetime.now(UTC) - timedelta(days=40)
    request_id = public_request(app, make_contact(app), "erasure", verified)
    with app.app_context():
        # Decided within the first month, as GDPR art. 12(3) asks.
        privacy_requests.extend_deadline(
            CLI_ACTOR, request_id, "Complex request", at=verified + timedelta(days=10)
        )
        db.session.remove()
    client = client_as(app, "admin")

    inbox = text(client.get("/staff/admin/privacy-requests"))
    assert re.search(rf'<tr id="request-{request_id}" class=""', inbox)
    overdue = text(client.get("/staff/admin/privacy-requests?show=overdue"))
    assert f"request-{request_id}" not in overdue
