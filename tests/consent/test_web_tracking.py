"""R19: web visits are linked to a contact only with the contact's explicit consent.

Through the API as a website and a CRM use it: visits recorded under an
anonymous visitor id, a link refused without the consent, visits anonymous
again after a withdrawal or an objection, and deleted after the policy's period.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from crm.models import WebVisit, WebVisitorLink
from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import count_rows

VISITOR = "cookie-4f2a9c"
WEB_CONSENT = {
    "type": "consent",
    "source": "cookie-banner",
    "topics": ["web-tracking"],
    "evidence": {
        "obtained_at": "2026-10-01T10:00:00+00:00",
        "policy_version": "1.0",
        "wording": "Allow functional cookies, which link my visits to me.",
    },
}


def _contact(api: Any, email: str = "webb@kund.se", basis: dict | None = None) -> int:
    body: dict[str, Any] = {"email": email, "country": "SE", "language": "sv"}
    if basis is not None:
        body["basis"] = basis
    response = api.post("/api/v1/contacts", json=body)
    assert response.status_code in (200, 201), response.json
    return int(response.json["id"])


def _visit(api: Any, page: str = "/products/sensors", visitor: str = VISITOR) -> Any:
    moment = (utcnow() - timedelta(hours=1)).isoformat()
    return api.post(
        "/api/v1/web-visits", json={"visitor_id": visitor, "page": page, "visited_at": moment}
    )


def _link(api: Any, contact_id: int, visitor: str = VISITOR) -> Any:
    return api.put(f"/api/v1/web-visitors/{visitor}/contact", json={"contact_id": contact_id})


def _pages(api: Any, contact_id: int) -> list[str]:
    response = api.get(f"/api/v1/contacts/{contact_id}/web-visits")
    assert response.status_code == 200, response.json
    return [v["page"] for v in response.json]


def test_a_visit_is_recorded_under_its_visitor_id_and_names_no_contact(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = _contact(marketing)
    recorded = _visit(marketing)
    assert recorded.status_code == 201, recorded.json
    assert recorded.json["visitor_id"] == VISITOR and "contact_id" not in recorded.json
    assert _pages(marketing, contact_id) == []


def test_linking_a_visitor_without_the_contacts_consent_is_refused(app, api_as) -> None:
    """A customer basis or a newsletter consent is not consent to web tracking."""
    marketing = api_as("marketing")
    customer = {"type": "legitimate_interest", "kind": "customer", "source": "crm"}
    contact_id = _contact(marketing, basis=customer)
    _visit(marketing)
    before = count_rows(app)
    refused = _link(marketing, contact_id)
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "no_web_tracking_consent"
    assert count_rows(app) == before
    assert _pages(marketing, contact_id) == []


def test_with_the_consent_the_visits_are_linked_to_the_contact(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = _contact(marketing, basis=WEB_CONSENT)
    _visit(marketing, "/products/sensors")
    linked = _link(marketing, contact_id)
    assert linked.status_code == 200, linked.json
    assert linked.json["contact_id"] == contact_id
    _visit(marketing, "/contact-us")  # later visits of the linked id count too
    assert _pages(marketing, contact_id) == ["/contact-us", "/products/sensors"]


def test_the_linked_visits_are_part_of_the_persons_export(app, api_as, admin_api) -> None:
    marketing = api_as("marketing")
    contact_id = _contact(marketing, basis=WEB_CONSENT)
    _visit(marketing, "/pricing")
    assert _link(marketing, contact_id).status_code == 200
    export = admin_api.get(f"/api/v1/contacts/{contact_id}/export")
    assert export.status_code == 200, export.json
    assert [v["page"] for v in export.json["web_visits"]] == ["/pricing"]


def test_a_withdrawal_makes_the_visits_anonymous_again(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = _contact(marketing, basis=WEB_CONSENT)
    _visit(marketing)
    assert _link(marketing, contact_id).status_code == 200
    withdrawn = marketing.post(
        f"/api/v1/contacts/{contact_id}/web-tracking/withdrawal", json={"received_via": "web"}
    )
    assert withdrawn.status_code == 200, withdrawn.json
    assert withdrawn.json["unlinked"] == 1
    assert _pages(marketing, contact_id) == []
    kinds = [
        (e["kind"], e["topic"]) for e in marketing.get(f"/api/v1/contacts/{contact_id}/events").json
    ]
    assert ("withdrawn", "web-tracking") in kinds
    assert _link(marketing, contact_id).status_code == 409
    with app.app_context():
        # The visits stay, anonymous: only the link went.
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebVisit)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(WebVisitorLink)) == 0


def test_an_objection_unlinks_the_visitor(app, api_as) -> None:
    """R11: an objection ends profiling for marketing too."""
    marketing = api_as("marketing")
    contact_id = _contact(marketing, basis=WEB_CONSENT)
    _visit(marketing)
    assert _link(marketing, contact_id).status_code == 200
    objected = marketing.post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"}
    )
    assert objected.status_code in (200, 201), objected.json
    assert _pages(marketing, contact_id) == []


def test_the_daily_run_unlinks_a_lapsed_consent_and_deletes_old_visits(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = _contact(marketing, basis=WEB_CONSENT)
    _visit(marketing)
    assert _link(marketing, contact_id).status_code == 200
    with app.app_context():
        from consent.web_tracking import enforce_daily

        # Still consenting, visits within the period: nothing changes.
        assert enforce_daily() == (0, 0)
        # A change no signal announced (a row written behind the use cases' back).
        from consent.models import PermissionState

        state = db.session.get(PermissionState, (contact_id, "web-tracking", "email"))
        state.consent_since = None
        db.session.commit()
        # Three years (the policy's keep_visits_days) and a day later.
        assert enforce_daily(utcnow() + timedelta(days=1096)) == (1, 1)
        db.session.remove()
    assert _pages(marketing, contact_id) == []


def test_web_tracking_is_not_a_marketing_topic(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = _contact(marketing, basis=WEB_CONSENT)
    campaign = {
        "topic": "web-tracking",
        "subject_sv": "x",
        "body_sv": "x",
        "subject_en": "x",
        "body_en": "x",
    }
    refused = marketing.post("/api/v1/campaigns", json=campaign)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "not_a_marketing_topic"
    listed = marketing.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]
    topics = {d["topic"] for d in listed}
    assert "web-tracking" not in topics and "newsletter" in topics


def test_bad_visits_and_links_are_refused_with_nothing_written(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = _contact(marketing, basis=WEB_CONSENT)
    before = count_rows(app)
    assert _visit(marketing, visitor="a b").status_code == 422
    assert _visit(marketing, page="").status_code == 422
    assert _link(marketing, contact_id, visitor="x" * 65).status_code == 422
    assert _link(marketing, 999_999).status_code == 404
    assert count_rows(app) == before
    sales = api_as("sales")
    assert _visit(sales).status_code == 403


def _consent_again(api: Any, email: str) -> Any:
    response = api.post("/api/v1/contacts", json={"email": email, "basis": WEB_CONSENT})
    assert response.status_code == 200, response.json
    return response.json["consent"]


def _web_events(app: Any, contact_id: int) -> list[str]:
    from consent.models import ConsentEvent

    with app.app_context():
        kinds = db.session.scalars(
            sa.select(ConsentEvent.kind).where(
                ConsentEvent.contact_id == contact_id, ConsentEvent.topic == "web-tracking"
            )
        ).all()
        db.session.remove()
    return list(kinds)


def test_a_cookie_consent_from_a_double_opt_in_country_counts_at_once_without_mail(
    app, api_as
) -> None:
    """R19: the cookie banner's consent is a purpose, not a newsletter signup:
    R8's emailed confirmation is not asked for it."""
    marketing = api_as("marketing")
    response = marketing.post(
        "/api/v1/contacts",
        json={"email": "web@firma.de", "country": "DE", "basis": WEB_CONSENT},
    )
    assert response.status_code == 201, response.json
    assert response.json["consent"]["status"] == "consent"
    assert response.json["consent"]["confirmation_email"] is None
    assert count_rows(app)["outbox_message"] == 0
    contact_id = int(response.json["id"])
    assert _web_events(app, contact_id) == ["confirmed"]
    _visit(marketing)
    assert _link(marketing, contact_id).status_code == 200


def test_a_cookie_consent_after_an_unsubscribe_from_all_is_recorded_without_mail(
    app, api_as, admin_api
) -> None:
    """An unsubscribe from all marketing is not a "no" to the website's cookies."""
    contact_id = _contact(admin_api, "ut@firma.de")
    withdrawn = admin_api.post(
        f"/api/v1/contacts/{contact_id}/withdrawals",
        json={"received_via": "email", "recorded_by": "crm:olle"},
    )
    assert withdrawn.status_code == 201, withdrawn.json
    consent = _consent_again(admin_api, "ut@firma.de")
    assert consent["topics"] == [
        {"topic": "web-tracking", "status": "consent", "reason": "recorded"}
    ]
    assert consent["confirmation_email"] is None
    assert count_rows(app)["outbox_message"] == 0
    assert _web_events(app, contact_id) == ["confirmed"]


def test_a_cookie_consent_after_an_objection_is_refused_and_records_nothing(app, admin_api) -> None:
    """R11: after an objection to direct marketing no profiling for it."""
    contact_id = _contact(admin_api, "nej@firma.de")
    objected = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"}
    )
    assert objected.status_code in (200, 201), objected.json
    before = count_rows(app)
    consent = _consent_again(admin_api, "nej@firma.de")
    assert consent["status"] == "refused"
    assert consent["topics"] == [
        {"topic": "web-tracking", "status": "refused", "reason": "person_objected"}
    ]
    assert consent["confirmation_email"] is None
    after = count_rows(app)
    assert after.pop("audit_entry") == before.pop("audit_entry") + 1
    assert after == before


def _withdraw_web(api: Any, contact_id: int, body: dict[str, Any] | None = None) -> Any:
    return api.post(f"/api/v1/contacts/{contact_id}/web-tracking/withdrawal", json=body or {})


def test_a_web_tracking_withdrawal_is_recorded_like_every_withdrawal(app, api_as) -> None:
    """GDPR art. 7(3): never refused, not even before the consent is recorded
    (the cookie banner's "no" may reach us first), and it says how it was received."""
    marketing = api_as("marketing")
    contact_id = _contact(marketing)
    withdrawn = _withdraw_web(marketing, contact_id)
    assert withdrawn.status_code == 200, withdrawn.json
    ledger = marketing.get(f"/api/v1/contacts/{contact_id}/events").json
    received = {
        (e["topic"], e["channel"], e["received_via"]) for e in ledger if e["kind"] == "withdrawn"
    }
    assert received == {("web-tracking", "email", "web"), ("web-tracking", "phone", "web")}


def test_whoever_may_take_a_withdrawal_may_take_the_web_tracking_one(app, api_as) -> None:
    """Withdrawing is as easy as consenting: a sales token, which may not edit
    contacts, takes it as it takes any other withdrawal."""
    contact_id = _contact(api_as("marketing"), basis=WEB_CONSENT)
    withdrawn = _withdraw_web(api_as("sales"), contact_id, {"received_via": "phone"})
    assert withdrawn.status_code == 200, withdrawn.json
    assert _web_events(app, contact_id)[-1] == "withdrawn"


def test_visits_before_the_consent_stay_unlinked(app, api_as, admin_api) -> None:
    """The consent covers what follows it: the visitor id's earlier visits are
    not the contact's, neither in the API nor in the person's export."""
    marketing = api_as("marketing")
    contact_id = _contact(marketing, basis=WEB_CONSENT)  # obtained 2026-10-01 10:00
    for page, at in (
        ("/before", "2026-09-30T12:00:00+00:00"),
        ("/after", "2026-10-02T12:00:00+00:00"),
    ):
        recorded = marketing.post(
            "/api/v1/web-visits", json={"visitor_id": VISITOR, "page": page, "visited_at": at}
        )
        assert recorded.status_code == 201, recorded.json
    assert _link(marketing, contact_id).status_code == 200
    assert _pages(marketing, contact_id) == ["/after"]
    export = admin_api.get(f"/api/v1/contacts/{contact_id}/export")
    assert [v["page"] for v in export.json["web_visits"]] == ["/after"]


def test_an_import_batchs_one_announcement_unlinks_its_contacts_without_consent(
    app, api_as
) -> None:
    """An import announces a committed batch once (``decisions_changed`` with
    ``contact_ids``); the receiver still unlinks every contact of it whose
    consent no longer holds, and leaves the others linked."""
    marketing = api_as("marketing")
    lapsed = _contact(marketing, "lapsed@kund.se", basis=WEB_CONSENT)
    kept = _contact(marketing, "kept@kund.se", basis=WEB_CONSENT)
    for contact_id, visitor in ((lapsed, "cookie-lapsed"), (kept, "cookie-kept")):
        _visit(marketing, visitor=visitor)
        assert _link(marketing, contact_id, visitor).status_code == 200
    with app.app_context():
        from consent.models import PermissionState
        from kernel.signals import decisions_changed, sender

        state = db.session.get(PermissionState, (lapsed, "web-tracking", "email"))
        state.consent_since = None
        db.session.commit()
        decisions_changed.send(sender(), contact_ids=(lapsed, kept), kind="import")
        linked = set(db.session.scalars(sa.select(WebVisitorLink.contact_id)))
        db.session.remove()
    assert linked == {kept}
