"""Every staff route against every role: the expected status, no exceptions.

The matrix is checked against ``app.url_map``: a new route under /staff
without an entry here fails ``test_every_staff_route_is_in_the_matrix``.
"""

from __future__ import annotations

from typing import Any

import pytest

from extensions import db
from kernel.access import Actor, create_api_token, may
from tests.staff.helpers import ROLES, client_as, make_contact, make_user

ANONYMOUS = "anonymous"
EVERYONE = (ANONYMOUS, *ROLES)
# Routes anyone may reach (signing in, out, choosing a language); all others
# are guarded by ``staff_requires`` with one action of kernel.access.ACTIONS.
PUBLIC = {
    "staff.login",
    "staff.logout",
    "staff.set_language",
    # The steps of a sign-in halfway (password given, second factor owed) and
    # the reset links: they serve whom kernel.access.pending_staff_user or a
    # valid link names, and send anyone else to the sign-in page.
    "accounts.second_factor",
    "accounts.enrol_at_sign_in",
    "accounts.forgot_password",
    "accounts.reset_password",
}


def _guarded(action: str, ok: int) -> dict[str, int]:
    """Anonymous: to the sign-in page; a role that ``may``: ``ok``; others: 403."""
    return {ANONYMOUS: 302} | {role: ok if may(role, action) else 403 for role in ROLES}


# (endpoint, method): (path, form, {role: status})
MATRIX: dict[tuple[str, str], tuple[str, dict[str, str] | None, dict[str, int]]] = {
    ("staff.login", "GET"): ("/staff/login", None, dict.fromkeys(EVERYONE, 200)),
    ("staff.login", "POST"): (
        "/staff/login",
        {"email": "nobody@example.com", "password": "wrong-password"},
        dict.fromkeys(EVERYONE, 401),
    ),
    ("staff.logout", "POST"): ("/staff/logout", {}, dict.fromkeys(EVERYONE, 303)),
    ("staff.set_language", "POST"): (
        "/staff/language",
        {"lang": "sv", "next": "/staff/"},
        dict.fromkeys(EVERYONE, 303),
    ),
    ("staff.users", "GET"): ("/staff/admin/users", None, _guarded("users.manage", 200)),
    ("staff.create_user", "POST"): (
        "/staff/admin/users",
        {"email": "new@staff.example", "role": "sales", "password": "a-long-password"},
        _guarded("users.manage", 303),
    ),
    ("staff.change_role", "POST"): (
        "/staff/admin/users/{user_id}/role",
        {"role": "marketing"},
        _guarded("users.manage", 303),
    ),
    ("staff.change_active", "POST"): (
        "/staff/admin/users/{user_id}/active",
        {"active": "false"},
        _guarded("users.manage", 303),
    ),
    ("staff.tokens", "GET"): ("/staff/admin/tokens", None, _guarded("tokens.manage", 200)),
    ("staff.create_token", "POST"): (
        "/staff/admin/tokens",
        {"name": "matrix-token", "role": "sales"},
        _guarded("tokens.manage", 200),
    ),
    ("staff.revoke_token", "POST"): (
        "/staff/admin/tokens/{token_id}/revoke",
        {},
        _guarded("tokens.manage", 303),
    ),
    ("staff.audit_log", "GET"): ("/staff/admin/audit", None, _guarded("audit.read", 200)),
    ("staff.export_audit_log", "GET"): (
        "/staff/admin/audit.csv?action=contact.",
        None,
        _guarded("audit.export", 200),
    ),
    ("staff_dpo.home", "GET"): ("/staff/dpo", None, _guarded("processing_records.read", 200)),
    ("staff_dpo.processing_records", "GET"): (
        "/staff/dpo/records",
        None,
        _guarded("processing_records.read", 200),
    ),
    ("staff.retention_page", "GET"): (
        "/staff/admin/retention?as_of=2027-01-01",
        None,
        _guarded("retention.read", 200),
    ),
    ("staff.retention_checklist_done", "POST"): (
        "/staff/admin/retention/checklist",
        {"rule": "server-logs", "done_through": "2020-01-01"},
        _guarded("retention.run", 303),
    ),
    ("staff_campaigns.campaign_list", "GET"): (
        "/staff/campaigns",
        None,
        _guarded("campaigns.manage", 200),
    ),
    ("staff_campaigns.compose", "POST"): (
        "/staff/campaigns",
        {
            "topic": "newsletter",
            "subject_sv": "Nyheter",
            "body_sv": "Hej!",
            "subject_en": "News",
            "body_en": "Hello!",
        },
        _guarded("campaigns.manage", 303),
    ),
    ("staff_campaigns.campaign_page", "GET"): (
        "/staff/campaigns/{campaign_id}?preview=1",
        None,
        _guarded("campaigns.manage", 200),
    ),
    ("staff_campaigns.send_repermission", "POST"): (
        "/staff/campaigns/repermission",
        {"confirm": "yes"},
        _guarded("campaigns.manage", 303),
    ),
    ("staff_campaigns.send", "POST"): (
        "/staff/campaigns/{campaign_id}/send",
        {"confirm": "yes"},
        _guarded("campaigns.manage", 303),
    ),
    ("staff_campaigns.target", "POST"): (
        "/staff/campaigns/{campaign_id}/segment",
        {"segment_id": "{segment_id}"},
        _guarded("campaigns.manage", 303),
    ),
    ("staff_segments.segment_list", "GET"): (
        "/staff/segments",
        None,
        _guarded("segments.manage", 200),
    ),
    ("staff_segments.create", "POST"): (
        "/staff/segments",
        {"name": "Norway", "country": "NO"},
        _guarded("segments.manage", 303),
    ),
    ("staff_segments.segment_page", "GET"): (
        "/staff/segments/{segment_id}",
        None,
        _guarded("segments.manage", 200),
    ),
    ("staff_segments.update", "POST"): (
        "/staff/segments/{segment_id}",
        {"name": "Swedes", "country": "SE"},
        _guarded("segments.manage", 303),
    ),
    ("staff_segments.delete", "POST"): (
        "/staff/segments/{segment_id}/delete",
        {"confirm": "yes"},
        _guarded("segments.manage", 303),
    ),
    ("staff_imports.import_list", "GET"): ("/staff/imports", None, _guarded("imports.run", 200)),
    # No file: the page says so (the guard is what this matrix checks).
    ("staff_imports.upload", "POST"): (
        "/staff/imports",
        {"basis": "customer", "source": "CRM"},
        _guarded("imports.run", 303),
    ),
    ("staff_imports.import_page", "GET"): (
        "/staff/imports/{batch_id}?after_row=1",
        None,
        _guarded("imports.run", 200),
    ),
    ("staff_contacts.search", "GET"): ("/staff/?q=anna", None, _guarded("contacts.read", 200)),
    ("staff_contacts.contact", "GET"): (
        "/staff/contacts/{contact_id}",
        None,
        _guarded("contacts.read", 200),
    ),
    ("staff_contacts.log_activity", "POST"): (
        "/staff/contacts/{contact_id}/activities",
        {"kind": "call", "occurred_at": "2026-01-02T10:00", "note": "Called"},
        _guarded("activities.create", 303),
    ),
    ("staff_contacts.record_objection", "POST"): (
        "/staff/contacts/{contact_id}/objection",
        {"received_via": "phone", "channel": "all"},
        _guarded("objections.record", 303),
    ),
    ("staff_contacts.record_withdrawal", "POST"): (
        "/staff/contacts/{contact_id}/withdrawal",
        {"received_via": "phone", "topic": "newsletter", "channel": "all"},
        _guarded("withdrawals.record", 303),
    ),
    ("staff_contacts.restrict", "POST"): (
        "/staff/contacts/{contact_id}/restriction",
        {"note": "Disputes accuracy"},
        _guarded("contacts.restrict", 303),
    ),
    ("staff_contacts.lift_restriction", "POST"): (
        "/staff/contacts/{contact_id}/restriction/lift",
        {},
        _guarded("contacts.restrict", 303),
    ),
    ("staff_contacts.address_fixed", "POST"): (
        "/staff/contacts/{contact_id}/address-fixed",
        {"note": "Typo corrected"},
        _guarded("contacts.write", 303),
    ),
    ("staff_contacts.set_legal_hold", "POST"): (
        "/staff/contacts/{contact_id}/legal-hold",
        {"reason": "Tax audit 2026"},
        _guarded("contacts.legal_hold", 303),
    ),
    ("staff_contacts.export_contact", "POST"): (
        "/staff/contacts/{contact_id}/export",
        {"received_via": "letter"},
        _guarded("contacts.export", 200),
    ),
    ("staff_contacts.confirm_erasure", "GET"): (
        "/staff/contacts/{contact_id}/erase",
        None,
        _guarded("contacts.erase", 200),
    ),
    ("staff_contacts.erase_contact", "POST"): (
        "/staff/contacts/{contact_id}/erase",
        {"confirm": "yes", "received_via": "phone"},
        _guarded("contacts.erase", 303),
    ),
    ("staff_contacts.rectify", "POST"): (
        "/staff/contacts/{contact_id}/rectify",
        {"email": "anna.kund@kund.example", "name": "Anna Rättad"},
        _guarded("contacts.write", 303),
    ),
    ("staff_dashboard.dashboard", "GET"): (
        "/staff/dashboard",
        None,
        _guarded("dashboard.read", 200),
    ),
    ("dashboard_charts.chart", "GET"): (
        "/staff/dashboard/charts/reach.svg",
        None,
        _guarded("dashboard.read", 200),
    ),
    ("staff_requests.inbox", "GET"): (
        "/staff/admin/privacy-requests?show=all",
        None,
        _guarded("privacy_requests.read", 200),
    ),
    ("staff_requests.extend_request", "POST"): (
        "/staff/admin/privacy-requests/{request_id}/extend",
        {"reason": "Many requests this month"},
        _guarded("privacy_requests.manage", 303),
    ),
    ("staff_requests.refuse_request", "POST"): (
        "/staff/admin/privacy-requests/{request_id}/refuse",
        {"reason": "Legal hold: tax audit"},
        _guarded("privacy_requests.manage", 303),
    ),
    ("staff_contacts.lift_legal_hold", "POST"): (
        "/staff/contacts/{contact_id}/legal-hold/lift",
        {},
        _guarded("contacts.legal_hold", 303),
    ),
    ("staff_connectors.connector_list", "GET"): (
        "/staff/connectors",
        None,
        _guarded("connectors.read", 200),
    ),
    # A connector that is not stopped: refused with a message, back to the page.
    ("staff_connectors.resume", "POST"): (
        "/staff/connectors/hubspot/resume",
        {},
        _guarded("connectors.manage", 303),
    ),
    # A connector that has not run: refused with a message, back to the page.
    ("staff_connectors.full_resync", "POST"): (
        "/staff/connectors/hubspot/full-resync",
        {},
        _guarded("connectors.manage", 303),
    ),
    ("staff_webhooks.webhook_list", "GET"): (
        "/staff/admin/webhooks",
        None,
        _guarded("webhooks.manage", 200),
    ),
    ("staff_webhooks.webhook_log", "GET"): (
        "/staff/admin/webhooks/{webhook_id}",
        None,
        _guarded("webhooks.manage", 200),
    ),
    ("staff_webhooks.replay_delivery", "POST"): (
        "/staff/admin/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
        {},
        _guarded("webhooks.manage", 303),
    ),
    ("accounts.account", "GET"): ("/staff/account", None, _guarded("account.manage", 200)),
    ("accounts.change_password", "POST"): (
        "/staff/account/password",
        {
            "current_password": "not-the-password",
            "new_password": "a-new-long-password",
            "new_password_again": "a-new-long-password",
        },
        _guarded("account.manage", 303),
    ),
    ("accounts.set_time_zone", "POST"): (
        "/staff/account/time-zone",
        {"time_zone": "America/New_York"},
        _guarded("account.manage", 303),
    ),
    ("accounts.enrol", "GET"): ("/staff/account/two-factor", None, _guarded("account.manage", 200)),
    ("accounts.confirm_enrolment", "POST"): (
        "/staff/account/two-factor",
        {"enrolment": "forged", "code": "123456"},
        _guarded("account.manage", 303),
    ),
    ("accounts.send_reset", "POST"): (
        "/staff/admin/users/{user_id}/password-reset",
        {},
        _guarded("users.manage", 303),
    ),
    ("accounts.remove_factor", "POST"): (
        "/staff/admin/users/{user_id}/two-factor/remove",
        {},
        _guarded("users.manage", 303),
    ),
    # Without a sign-in halfway: back to the sign-in page, whoever asks.
    ("accounts.second_factor", "GET"): ("/staff/login/code", None, dict.fromkeys(EVERYONE, 303)),
    ("accounts.second_factor", "POST"): (
        "/staff/login/code",
        {"code": "123456"},
        dict.fromkeys(EVERYONE, 303),
    ),
    ("accounts.enrol_at_sign_in", "GET"): (
        "/staff/login/two-factor",
        None,
        dict.fromkeys(EVERYONE, 303),
    ),
    ("accounts.enrol_at_sign_in", "POST"): (
        "/staff/login/two-factor",
        {"enrolment": "forged", "code": "123456"},
        dict.fromkeys(EVERYONE, 303),
    ),
    ("accounts.forgot_password", "GET"): (
        "/staff/password-reset",
        None,
        dict.fromkeys(EVERYONE, 200),
    ),
    ("accounts.forgot_password", "POST"): (
        "/staff/password-reset",
        {"email": "nobody@staff.example"},
        dict.fromkeys(EVERYONE, 200),
    ),
    # A link that is not genuine: the same 400 page for everyone.
    ("accounts.reset_password", "GET"): (
        "/staff/password-reset/not-a-link",
        None,
        dict.fromkeys(EVERYONE, 400),
    ),
    ("accounts.reset_password", "POST"): (
        "/staff/password-reset/not-a-link",
        {"password": "a-new-long-password", "password_again": "a-new-long-password"},
        dict.fromkeys(EVERYONE, 400),
    ),
    ("contact_list.contacts", "GET"): (
        "/staff/contacts?country=SE",
        None,
        _guarded("contacts.list", 200),
    ),
    ("contact_list.export", "GET"): (
        "/staff/contacts/export.csv?format=excel",
        None,
        _guarded("contacts.list_export", 200),
    ),
    ("contact_list.confirm_bulk", "GET"): (
        "/staff/contacts/bulk?action=set_legal_hold&company=Kund AB",
        None,
        _guarded("contacts.bulk", 200),
    ),
    ("contact_list.start_bulk", "POST"): (
        "/staff/contacts/bulk",
        {
            "action": "set_legal_hold",
            "reason": "Matrix",
            "company": "Kund AB",
            "confirmed": "1",
            "as_of": "2030-01-01T00:00:00+00:00",
        },
        _guarded("contacts.bulk", 303),
    ),
    ("contact_list.bulk_run", "GET"): (
        "/staff/contacts/bulk/{run_id}",
        None,
        _guarded("contacts.bulk", 200),
    ),
    ("staff_webhooks.replay_since", "POST"): (
        "/staff/admin/webhooks/{webhook_id}/replay",
        {"after_change": "chg_0"},
        _guarded("webhooks.manage", 303),
    ),
}


def make_campaign() -> int:
    """A draft campaign, in the caller's app context."""
    from mailing.campaigns import CampaignInput, create_campaign

    texts = CampaignInput("newsletter", "Nyheter", "Hej!", "News", "Hello!")
    return create_campaign(Actor(kind="cli", name="matrix"), texts).id


def make_segment() -> int:
    """A segment no campaign targets, in the caller's app context."""
    from mailing.segments import SegmentInput, create_segment

    return create_segment(
        Actor(kind="cli", name="matrix"), SegmentInput("Sweden", {"country": "SE"})
    ).id


def make_import() -> int:
    """An import batch with one contact and one rejected row, in the caller's app context."""
    import io

    from consent.imports import import_contacts

    content = b"email,name\nimported@kund.se,Imported\nnot-an-address,X\n"
    report = import_contacts(
        Actor(kind="cli", name="matrix"), io.BytesIO(content), basis="customer", source="CRM"
    )
    return report.batch_id


def make_bulk_run() -> int:
    """A bulk action run already done, in the caller's app context."""
    from datetime import UTC, datetime

    from consent.models import BulkAction

    run = BulkAction(
        action="lift_legal_hold", filter={}, as_of=datetime.now(UTC), actor="cli:matrix"
    )
    run.status = "done"
    db.session.add(run)
    db.session.commit()
    return run.id


def make_privacy_request(contact_id: int) -> int:
    """A verified erasure request awaiting an admin, in the caller's app context."""
    from datetime import UTC, datetime

    from consent import rights
    from crm.models import Contact

    now = datetime.now(UTC)
    request = rights.open_privacy_request(db.session.get(Contact, contact_id), "erasure", now)
    rights.verify_privacy_request(request.id, now)
    db.session.commit()
    return request.id


def make_webhook(contact_id: int) -> tuple[int, int]:
    """An active receiver (never posted to: no broker runs) and one delivery owed to it."""
    from consent import webhooks
    from consent.models import WebhookDelivery

    endpoint, _secret = webhooks.create_endpoint(
        Actor(kind="cli", name="matrix"), "https://93.184.215.14/hooks", events=["contact.erased"]
    )
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id, event_type="contact.erased", contact_id=contact_id
    )
    db.session.add(delivery)
    db.session.commit()
    return endpoint.id, delivery.id


def _staff_routes(app: Any) -> set[tuple[str, str]]:
    return {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/staff")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_staff_route_is_in_the_matrix(app) -> None:
    routes = _staff_routes(app)
    assert routes - MATRIX.keys() == set(), "staff routes without a role-matrix entry"
    assert MATRIX.keys() - routes == set(), "matrix entries for routes that do not exist"


def test_every_staff_route_but_sign_in_is_guarded_by_one_action(app) -> None:
    for endpoint, _method in _staff_routes(app):
        action = getattr(app.view_functions[endpoint], "_required_action", None)
        if endpoint in PUBLIC:
            assert action is None
        else:
            assert action is not None, f"{endpoint} has no staff_requires(action)"


@pytest.mark.parametrize("role", EVERYONE)
@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[1]} {r[0]}")
def test_role_gets_the_expected_status(app, role: str, route: tuple[str, str]) -> None:
    path, form, expected = MATRIX[route]
    contact_id = make_contact(app)
    other_user = make_user(app, "sales", email="someone@staff.example")
    with app.app_context():
        token, _ = create_api_token("matrix-existing", "sales")
        token_id = token.id
        db.session.remove()
        campaign_id = make_campaign()
        batch_id = make_import()
        request_id = make_privacy_request(contact_id)
        webhook_id, delivery_id = make_webhook(contact_id)
        run_id = make_bulk_run()
        segment_id = make_segment()
    client = app.test_client() if role == ANONYMOUS else client_as(app, role)
    url = path.format(
        contact_id=contact_id,
        user_id=other_user,
        token_id=token_id,
        campaign_id=campaign_id,
        batch_id=batch_id,
        request_id=request_id,
        webhook_id=webhook_id,
        delivery_id=delivery_id,
        run_id=run_id,
        segment_id=segment_id,
    )
    if form is not None:
        form = {k: v.replace("{segment_id}", str(segment_id)) for k, v in form.items()}

    _endpoint, method = route
    response = client.get(url) if method == "GET" else client.post(url, data=form)

    assert response.status_code == expected[role], response.get_data(as_text=True)[:500]
    if expected[role] == 302:
        assert response.location.startswith("/staff/login")
    if expected[role] == 403:
        assert "Not allowed" in response.get_data(as_text=True)
