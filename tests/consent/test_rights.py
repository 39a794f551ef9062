"""The rights of the person over the API: export, erasure, restriction, legal hold."""

from __future__ import annotations

import io
from contextlib import contextmanager

import sqlalchemy as sa

from tests.conftest import count_rows, finish_imports
from tests.crm.test_remove_contact import rows_mentioning

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
CONSENT = {
    "type": "consent",
    "source": "webinar-form",
    "topics": ["newsletter"],
    "evidence": {
        "obtained_at": "2026-10-01T10:00:00+00:00",
        "policy_version": "1.0",
        "wording": "Yes, send me the newsletter.",
        "ip_address": "192.0.2.7",
    },
    # The newsletter always needs the double opt-in (R8): confirmed by the webinar's tool.
    "confirmation": {
        "confirmed_at": "2026-10-01T10:05:00+00:00",
        "ip_address": "192.0.2.8",
        "message_id": "<confirm-1@webinar.example>",
    },
}


def create(api, email="eva@kund.se", **extra):  # type: ignore[no-untyped-def]
    body = {"email": email, "name": "Eva Lind", "phone": "+46 70 123 45 67", "country": "SE"}
    response = api.post("/api/v1/contacts", json={**body, **extra})
    assert response.status_code in (200, 201), response.json
    return response.json["id"]


def decision(api, email: str, topic: str = "events") -> dict:  # type: ignore[no-untyped-def]
    body = {"emails": [email], "topic": topic}
    return api.post("/api/v1/permissions/check", json=body).json["decisions"][0]


@contextmanager
def signals_received(app):  # type: ignore[no-untyped-def]
    """decisions_changed as a receiver sees it, with whether the change was committed."""
    from extensions import db
    from kernel.signals import decisions_changed

    seen: list[tuple[int, str, int]] = []

    def receiver(sender, kind, contact_id=None, contact_ids=()):  # type: ignore[no-untyped-def]
        # One contact, or an import batch's contacts in one announcement.
        for one in [contact_id] if contact_id is not None else contact_ids:
            # Read through a separate connection: only committed rows are visible.
            with db.engine.connect() as conn:
                events = conn.execute(
                    sa.text("SELECT count(*) FROM consent_event WHERE contact_id = :id"),
                    {"id": one},
                ).scalar_one()
            seen.append((one, kind, events))

    decisions_changed.connect(receiver)
    try:
        yield seen
    finally:
        decisions_changed.disconnect(receiver)


def test_export_holds_profile_company_activities_ledger_and_decisions(app, admin_api) -> None:
    contact_id = create(
        admin_api, basis=CONSENT, company={"name": "Kund AB", "org_number": "556000-1111"}
    )
    admin_api.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "meeting", "occurred_at": "2026-05-01T09:00:00+00:00", "note": "Demo"},
    )
    export = admin_api.get(f"/api/v1/contacts/{contact_id}/export")
    assert export.status_code == 200
    data = export.json
    assert data["profile"]["email"] == "eva@kund.se"
    assert data["profile"]["phone"] == "+46 70 123 45 67"
    assert data["company"]["org_number"] == "556000-1111"
    assert [a["note"] for a in data["activities"]] == ["Demo"]
    requested, confirmed = data["consent_events"][:2]
    assert (requested["kind"], requested["ip_address"], requested["policy_version"]) == (
        "requested",
        "192.0.2.7",
        "1.0",
    )
    assert (confirmed["kind"], confirmed["ip_address"], confirmed["source"]) == (
        "confirmed",
        "192.0.2.8",
        "external_confirmation",
    )
    assert len(confirmed["wording_hash"]) == 64
    newsletter = next(d for d in data["decisions"] if d["topic"] == "newsletter")
    assert (newsletter["allowed"], newsletter["reason"]) == (True, "consent")
    assert data["suppressed"] is False
    audit = admin_api.get(f"/api/v1/audit?contact_id={contact_id}&action=contact.export").json
    assert len(audit) == 1


def test_a_higher_layer_can_add_a_section_to_the_export(app, admin_api) -> None:
    from kernel.signals import collect_export_sections

    def greetings(sender, contact):  # type: ignore[no-untyped-def]
        return "greetings", [{"to": contact.email}]

    collect_export_sections.connect(greetings)
    try:
        contact_id = create(admin_api)
        data = admin_api.get(f"/api/v1/contacts/{contact_id}/export").json
        assert data["greetings"] == [{"to": "eva@kund.se"}]
    finally:
        collect_export_sections.disconnect(greetings)


def test_the_export_lists_the_emails_sent(app, admin_api) -> None:
    contact_id = create(admin_api)
    with app.app_context():
        from crm.models import Contact
        from extensions import db
        from mailing.models import MailKind
        from mailing.outbox import queue_email

        queue_email(
            db.session.get(Contact, contact_id),
            kind=MailKind.MARKETING,
            template="campaign",
            topic="events",
            idempotency_key="test-1",
        )
        db.session.commit()
    emails = admin_api.get(f"/api/v1/contacts/{contact_id}/export").json["emails"]
    assert [(e["kind"], e["topic"], e["status"]) for e in emails] == [
        ("marketing", "events", "queued")
    ]


def test_export_and_erasure_are_for_admins_only(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = create(marketing)
    assert marketing.get(f"/api/v1/contacts/{contact_id}/export").status_code == 403
    assert marketing.delete(f"/api/v1/contacts/{contact_id}").status_code == 403
    assert count_rows(app)["contact"] == 1


def test_erased_objector_stays_blocked_when_recreated_by_api_and_import(
    app, admin_api, tmp_path
) -> None:
    contact_id = create(admin_api, basis=CUSTOMER, company={"name": "Kund AB"})
    admin_api.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "call", "occurred_at": "2026-01-01T00:00:00+00:00", "note": "Eva Lind rang"},
    )
    admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    erased = admin_api.delete(f"/api/v1/contacts/{contact_id}")
    assert erased.status_code == 200
    assert erased.json["suppression_kept"] is True
    # Nothing about the person is left but the keyed hash.
    assert rows_mentioning(app, ["eva@kund.se", "Eva Lind", "+46 70 123 45 67"]) == []
    assert count_rows(app)["suppression"] == 1
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").status_code == 404
    entry = admin_api.get("/api/v1/audit?action=contact.erase").json[0]
    assert entry["contact_id"] is None
    with app.app_context():
        from crm.models import AuditEntry
        from extensions import db

        assert not db.session.scalar(
            sa.select(sa.func.count()).where(AuditEntry.contact_id == contact_id)
        )

    # Re-created through the API, as a CRM sync would: stored, never allowed.
    again = create(admin_api, basis=CUSTOMER)
    assert again != contact_id
    blocked = decision(admin_api, "eva@kund.se")
    assert (blocked["allowed"], blocked["reason"]) == (False, "suppressed")
    kinds = [e["kind"] for e in admin_api.get(f"/api/v1/contacts/{again}/events").json]
    assert kinds[0] == "created_while_suppressed"

    # Erased again, then re-created by an import as a customer.
    admin_api.delete(f"/api/v1/contacts/{again}")
    path = tmp_path / "crm.csv"
    path.write_text("email,name,country\neva@kund.se,Eva Lind,SE\n", encoding="utf-8")
    result = app.test_cli_runner().invoke(
        args=["contacts", "import", str(path), "--basis", "customer", "--source", "crm"]
    )
    assert "created              1" in result.output, result.output
    imported = admin_api.get("/api/v1/contacts?email=eva@kund.se").json["id"]
    events = admin_api.get(f"/api/v1/contacts/{imported}/events").json
    assert (events[0]["kind"], events[0]["source"]) == ("created_while_suppressed", "import")
    for topic in ("events", "product-updates", "newsletter", "surveys"):
        assert decision(admin_api, "eva@kund.se", topic)["allowed"] is False


def test_an_unsubscribe_from_everything_keeps_the_hash_whatever_path_records_it(
    app, admin_api
) -> None:
    """R22: the ledger itself puts a "no" to everything on the suppression list,
    in the same transaction, so that a path that records the unsubscribe
    without asking for it (here the ledger's writer called directly) still
    keeps it through the erasure."""
    contact_id = create(admin_api)
    with app.app_context():
        from consent.ledger import record
        from consent.models import EventKind
        from crm.models import Contact
        from extensions import db
        from kernel.access import SYSTEM_ACTOR

        contact = db.session.get(Contact, contact_id)
        record(contact, EventKind.UNSUBSCRIBED, actor=SYSTEM_ACTOR, source="email_link")
        db.session.commit()
    assert count_rows(app)["suppression"] == 1
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}").json["suppression_kept"] is True
    assert count_rows(app)["suppression"] == 1


def test_erasing_a_contact_who_never_said_no_keeps_the_hash(app, admin_api) -> None:
    """R22 (issue 19): an erasure leaves the keyed hash even when the person never
    said no, so that the same purchased list or CRM sync does not bring them back."""
    contact_id = create(admin_api, basis=CUSTOMER)
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}").json["suppression_kept"] is True
    assert count_rows(app)["suppression"] == 1
    create(admin_api, basis=CUSTOMER)
    assert decision(admin_api, "eva@kund.se")["reason"] == "suppressed"


def test_legal_hold_refuses_erasure_with_its_reason(app, admin_api) -> None:
    contact_id = create(admin_api)
    hold = admin_api.put(
        f"/api/v1/contacts/{contact_id}/legal-hold", json={"reason": "Invoice dispute 2026-17"}
    )
    assert hold.json["legal_hold_reason"] == "Invoice dispute 2026-17"
    refused = admin_api.delete(f"/api/v1/contacts/{contact_id}")
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "legal_hold"
    assert "Invoice dispute 2026-17" in refused.json["error"]["message"]
    assert count_rows(app)["contact"] == 1
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}/legal-hold").status_code == 200
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}").status_code == 200
    assert count_rows(app)["contact"] == 0


def test_restriction_blocks_marketing_and_edits_until_lifted(app, admin_api) -> None:
    contact_id = create(admin_api, basis=CUSTOMER)
    restricted = admin_api.post(
        f"/api/v1/contacts/{contact_id}/restriction",
        json={"received_via": "letter", "note": "Contests accuracy"},
    )
    assert restricted.status_code == 201
    assert restricted.json["kind"] == "restricted"
    assert decision(admin_api, "eva@kund.se")["reason"] == "restricted"
    edit = admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"name": "Other"})
    assert (edit.status_code, edit.json["error"]["code"]) == (409, "restricted")
    again = admin_api.post(f"/api/v1/contacts/{contact_id}/restriction", json={})
    assert again.status_code == 409
    lifted = admin_api.delete(f"/api/v1/contacts/{contact_id}/restriction")
    assert lifted.json["kind"] == "unrestricted"
    assert decision(admin_api, "eva@kund.se")["reason"] == "customer"
    assert (
        admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"name": "Eva L"}).status_code == 200
    )
    kinds = [e["kind"] for e in admin_api.get(f"/api/v1/contacts/{contact_id}/events").json]
    assert kinds == ["basis_granted", "restricted", "unrestricted"]


def test_every_change_of_a_decision_is_signalled_after_commit(
    app, admin_api, import_worker
) -> None:
    with signals_received(app) as seen:
        contact_id = create(admin_api, basis=CUSTOMER)
        admin_api.post(f"/api/v1/contacts/{contact_id}/restriction", json={})
        admin_api.delete(f"/api/v1/contacts/{contact_id}/restriction")
        admin_api.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
        admin_api.delete(f"/api/v1/contacts/{contact_id}")
        admin_api.client.post(
            "/api/v1/imports",
            headers=admin_api.headers,
            data={
                "basis": "industry_list",
                "source": "fair",
                "file": (io.BytesIO(b"email,country\nny@lista.se,SE\n"), "l.csv"),
            },
        )
        finish_imports()
    kinds = [kind for _, kind, _ in seen]
    assert kinds == ["basis", "restricted", "unrestricted", "objected", "erased", "import"]
    # Each receiver saw the committed ledger: 1, 2, 3, then 5 events (objection + suppressed).
    assert [events for _, _, events in seen[:4]] == [1, 2, 3, 5]
    assert seen[4][2] == 0  # erased: nothing left
    assert seen[5][2] == 1


def test_a_rectified_country_or_company_is_signalled_but_a_name_is_not(app, admin_api) -> None:
    contact_id = create(admin_api, basis=CUSTOMER)
    with signals_received(app) as seen:
        admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"name": "Eva Lindqvist"})
        admin_api.patch(f"/api/v1/contacts/{contact_id}", json={"country": "DE"})
    assert [(cid, kind) for cid, kind, _ in seen] == [(contact_id, "rectified")]
    assert decision(admin_api, "eva@kund.se")["allowed"] is False


def test_an_industry_list_contact_from_the_api_is_owed_the_art14_notice(app, admin_api) -> None:
    """So is a customer contact: its employer, not the person, gave us the data."""
    listed = {"type": "legitimate_interest", "kind": "industry_list", "source": "partner"}
    contact_id = create(admin_api, basis=listed)
    customer_id = create(admin_api, email="kund@kund.se", basis=CUSTOMER)
    signed_up = create(admin_api, email="self@kund.se")
    with app.app_context():
        from crm.models import Contact
        from crm.services import note_art14_notice_given
        from extensions import db

        assert db.session.get(Contact, contact_id).art14_notice_owed_since is not None
        assert db.session.get(Contact, customer_id).art14_notice_owed_since is not None
        assert db.session.get(Contact, signed_up).art14_notice_owed_since is None
        note_art14_notice_given([contact_id], "source_notice")
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(Contact, contact_id).art14_notice_owed_since is None
