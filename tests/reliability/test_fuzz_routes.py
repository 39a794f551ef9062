"""Hostile input at every edge: every route of the app, every parameter position,
every hostile value; no answer is a server error (issue 18, item 12).

The table ``ROUTES`` names, for every endpoint and method in ``app.url_map``, a
valid request: its path ids, query string, form fields, JSON body and upload.
The test fails when a route exists that the table does not name, and when an
API operation's OpenAPI document names a parameter or body field the table
does not send, so a new route or field cannot escape the fuzzing.

For each route and each position (one query field, one form field, one JSON
leaf, the uploaded file, one path id, an extra unknown query field, and the
whole body) the valid request is sent once per hostile value, with that one
value replaced: NUL bytes, other control characters, a lone surrogate (JSON,
escaped and as raw bytes), 50,000-deep nested JSON, huge and negative
numbers (as text and as JSON numbers), and very long strings. Every answer must be below 500; an API error
must have the house shape ``{"error": {"code", "message"}}``.

Deterministic (a fixed table, fixed values), with fresh objects where an
accepted value could remove them (a contact per position of a route on one
contact, a session per position of signing out), so that no value starves
the next one. ``RELIABILITY_LONG=1`` adds more values (every C0 and C1 control,
several surrogates, more sizes) and the whole-form variant: every field hostile at once.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from extensions import db
from tests.reliability.conftest import LONG, figure
from tests.staff.helpers import make_user, sign_in

# Hostile values ---------------------------------------------------------------------

DEEP = 50_000
_DEEP_MARK = "__deep_json__"
_DEEP_JSON = "[" * DEEP + "]" * DEEP

HUGE = "99999999999999999999"
INT64 = str(2**63)


def _text_values(valid: str) -> list[tuple[str, str]]:
    """(label, value) for a text position (query, form, path) whose valid value is ``valid``."""
    values = [
        ("nul", f"{valid}\x00x"),
        ("control", f"{valid}\x01\x08\x0b\x1b\x7f"),
        ("huge", HUGE),
        ("minus-one", "-1"),
        ("int64", INT64),
        ("long", "x" * 100_000),
    ]
    if LONG:
        values += [(f"c0-{n:02x}", f"{valid}{chr(n)}") for n in range(32) if n not in (9, 10, 13)]
        values += [(f"c1-{n:02x}", f"{valid}{chr(n)}") for n in range(0x7F, 0xA0)]
        values += [
            ("nul-only", "\x00"),
            ("long-1k", "y" * 1_000),
            ("long-10k", "z" * 10_000),
            ("zero-width", f"{valid}\u200b\ufeff"),
            ("line-separator", f"{valid}\u2028"),
            ("int64-minus", str(-(2**63) - 1)),
            ("float", "1e400"),
        ]
    return values


def _json_values(valid: Any) -> list[tuple[str, Any]]:
    """(label, value) for a JSON leaf; ``_DEEP_MARK`` becomes 50,000-deep nesting
    and ``_RAW_SURROGATE_MARK`` a surrogate half as raw bytes.

    The numbers go as JSON numbers (a string of digits is what the text
    positions send); a lone surrogate can only come in JSON (form and query
    decoding replace or keep invalid bytes as they are)."""
    text = valid if isinstance(valid, str) else str(valid)
    values: list[tuple[str, Any]] = [
        ("nul", f"{text}\x00x"),
        ("control", f"{text}\x01\x08\x0b\x1b\x7f"),
        ("surrogate", f"{text}\ud800"),
        ("raw-surrogate", _RAW_SURROGATE_MARK),
        ("long", "x" * 100_000),
        ("deep", _DEEP_MARK),
        ("huge", int(HUGE)),
        ("minus-one", -1),
        ("int64", 2**63),
    ]
    if LONG:
        values += [(f"text-{label}", value) for label, value in _text_values(text)]
        values += [
            ("low-surrogate", "\udfff"),
            ("float-number", 1e308),
            ("object", {"a": text}),
            ("list", [text]),
            ("null", None),
            ("true", True),
        ]
    return values


# A surrogate half as raw UTF-8 bytes: invalid UTF-8 that json.loads, given
# bytes, decodes anyway ("surrogatepass", as Flask's get_json does).
_RAW_SURROGATE_MARK = "__raw_surrogate__"


def _dumps(body: Any) -> str | bytes:
    text = json.dumps(body).replace(json.dumps(_DEEP_MARK), _DEEP_JSON)
    if _RAW_SURROGATE_MARK not in text:
        return text
    return text.encode().replace(_RAW_SURROGATE_MARK.encode(), b"a\xed\xa0\x80b")


# The valid request of every route ----------------------------------------------------


@dataclass
class Seed:
    """Objects a route's valid request names, made fresh for each route."""

    contact: int
    email: str
    campaign: int
    segment: int
    batch: int
    webhook: int
    delivery: int
    user: int
    token: int
    confirm: str
    unsubscribe: str
    preferences: str
    verify: str
    undo: str
    privacy_request: int


@dataclass
class Route:
    """A valid request: ``as_`` is "api" (admin token), "staff" (signed-in admin,
    CSRF token) or "public"."""

    path: str  # with {name} for each of path_values
    as_: str
    query: Callable[[Seed], dict[str, str]] = lambda s: {}
    form: Callable[[Seed], dict[str, str]] | None = None
    json: Callable[[Seed], Any] | None = None
    upload: bool = False
    path_values: Callable[[Seed], dict[str, str]] = lambda s: {}
    extra: dict[str, Any] = field(default_factory=dict)


CSV = b"email;name;company;country\nfuzz.row@kund.example;Fuzz Row;Kund AB;SE\n"
NOW = "2026-01-15T10:00:00+00:00"


def _contact_body(s: Seed) -> dict[str, Any]:
    return {
        "email": f"new.{uuid.uuid4().hex[:8]}@kund.example",
        "name": "Lena Kund",
        "phone": "+46 70 123 45 67",
        "country": "SE",
        "language": "sv",
        "company": {
            "name": "Kund AB",
            "org_number": "556000-0000",
            "country": "SE",
            "customer_since": "2020-01-01",
            "relationship_ended_at": "2025-01-01",
            "external_ids": {"hubspot": f"co-{uuid.uuid4().hex[:8]}"},
        },
        "external_ids": {"hubspot": uuid.uuid4().hex[:8], "salesforce": None},
        "basis": {
            "type": "consent",
            "kind": "customer",
            "source": "crm-sync",
            "topics": ["newsletter"],
            "channel": "email",
            "evidence": {
                "obtained_at": NOW,
                "policy_version": "2026-01",
                "wording": "Yes, send me the newsletter.",
                "wording_hash": "a" * 64,
                "ip_address": "192.0.2.1",
                "user_agent": "Mozilla/5.0",
                "form_id": "website",
                "page_url": "https://www.kund.example/",
            },
            "confirmation": {
                "confirmed_at": NOW,
                "ip_address": "192.0.2.2",
                "message_id": "<confirm-1@kund.example>",
                "user_agent": "Mozilla/5.0",
            },
        },
    }


def _rectify_body(s: Seed) -> dict[str, Any]:
    body = _contact_body(s)
    del body["basis"]
    return body


CAMPAIGN = {
    "topic": "newsletter",
    "subject_sv": "Nyheter",
    "body_sv": "Hej!",
    "subject_en": "News",
    "body_en": "Hello!",
}
SIGNUP = {
    "email": "signup@kund.example",
    "topics": "newsletter",
    "name": "Sam Signup",
    "company": "Kund AB",
    "country": "SE",
    "language": "sv",
    "form_id": "website",
    "page_url": "https://www.kund.example/",
    "policy_version": "2026-01",
    "wording": "Yes, send me the newsletter.",
    "wording_hash": "b" * 64,
    "consent": "on",
    "website": "",
}
_C = lambda s: {"contact_id": str(s.contact)}  # noqa: E731
# An SNS notification whose certificate URL is on no SNS host: nothing is fetched.
SNS_TOPIC = "arn:aws:sns:eu-north-1:123456789012:fuzz"
SNS_ENVELOPE = {
    "Type": "Notification",
    "MessageId": "5f1b7c40-0000-4000-8000-000000000000",
    "TopicArn": SNS_TOPIC,
    "Message": json.dumps({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}}),
    "Timestamp": NOW,
    "SignatureVersion": "2",
    "Signature": "c2lnbmF0dXJl",
    "SigningCertURL": "https://sns.example/SimpleNotificationService-fuzz.pem",
}

ROUTES: dict[tuple[str, str], Route] = {
    # The API, as an admin token.
    ("crm_api.list_audit", "GET"): Route(
        "/api/v1/audit",
        "api",
        query=lambda s: {
            "contact_id": str(s.contact),
            "actor": "cli:flask",
            "action": "contact.read",
            "since": "2020-01-01T00:00:00+00:00",
            "until": NOW,
            "before_id": "1000",
            "limit": "10",
        },
    ),
    ("mailing_api.report_bounce", "POST"): Route(
        "/api/v1/bounces",
        "api",
        json=lambda s: {
            "email": s.email,
            "type": "soft",
            "source": "fuzz",
            "status": "4.2.2",
            "diagnostic": "smtp; 452 4.2.2 Mailbox full",
            "message_id": "<fuzz@localhost>",
        },
    ),
    ("mailing_api.create_campaign", "POST"): Route(
        "/api/v1/campaigns", "api", json=lambda s: dict(CAMPAIGN)
    ),
    ("mailing_api.read_campaign", "GET"): Route(
        "/api/v1/campaigns/{campaign_id}",
        "api",
        path_values=lambda s: {"campaign_id": str(s.campaign)},
    ),
    ("mailing_api.send_campaign", "POST"): Route(
        "/api/v1/campaigns/{campaign_id}/send",
        "api",
        path_values=lambda s: {"campaign_id": str(s.campaign)},
    ),
    # Every parameter of the three reads at once (a 422: exactly one read is
    # allowed); tests/crm/test_changed_since.py sends each read's own odd values.
    ("crm_api.find_contact", "GET"): Route(
        "/api/v1/contacts",
        "api",
        query=lambda s: {
            "email": s.email,
            "external_id": "hubspot:1234",
            "updated_after": NOW,
            "after": "MTIzLjQ",
            "limit": "10",
        },
    ),
    ("consent_api.create_or_update_contact", "POST"): Route(
        "/api/v1/contacts", "api", json=_contact_body
    ),
    ("crm_api.read_contact", "GET"): Route("/api/v1/contacts/{contact_id}", "api", path_values=_C),
    ("crm_api.rectify_contact", "PATCH"): Route(
        "/api/v1/contacts/{contact_id}", "api", json=_rectify_body, path_values=_C
    ),
    ("consent_api.erase_contact", "DELETE"): Route(
        "/api/v1/contacts/{contact_id}", "api", path_values=_C
    ),
    ("crm_api.log_activity", "POST"): Route(
        "/api/v1/contacts/{contact_id}/activities",
        "api",
        json=lambda s: {
            "kind": "support_case",
            "occurred_at": NOW,
            "note": "Called about the offer.",
            "product": "ab7000",
            "problem_category": "connection-lost",
            "resolution_code": "firmware-update",
        },
        path_values=_C,
    ),
    ("crm_api.list_activities", "GET"): Route(
        "/api/v1/contacts/{contact_id}/activities", "api", path_values=_C
    ),
    ("crm_api.record_web_visit", "POST"): Route(
        "/api/v1/web-visits",
        "api",
        json=lambda s: {"visitor_id": "visitor-0001", "page": "/products", "visited_at": NOW},
    ),
    ("consent_api.list_web_visits", "GET"): Route(
        "/api/v1/contacts/{contact_id}/web-visits", "api", path_values=_C
    ),
    ("consent_api.link_web_visitor", "PUT"): Route(
        "/api/v1/web-visitors/{visitor_id}/contact",
        "api",
        json=lambda s: {"contact_id": s.contact},
        path_values=lambda s: {"visitor_id": "visitor-0001"},
    ),
    ("consent_api.withdraw_web_tracking", "POST"): Route(
        "/api/v1/contacts/{contact_id}/web-tracking/withdrawal",
        "api",
        json=lambda s: {"received_via": "web"},
        path_values=_C,
    ),
    ("consent_api.list_events", "GET"): Route(
        "/api/v1/contacts/{contact_id}/events", "api", path_values=_C
    ),
    ("consent_api.export_contact", "GET"): Route(
        "/api/v1/contacts/{contact_id}/export", "api", path_values=_C
    ),
    ("crm_api.set_legal_hold", "PUT"): Route(
        "/api/v1/contacts/{contact_id}/legal-hold",
        "api",
        json=lambda s: {"reason": "Dispute 2026-17"},
        path_values=_C,
    ),
    ("crm_api.lift_legal_hold", "DELETE"): Route(
        "/api/v1/contacts/{contact_id}/legal-hold", "api", path_values=_C
    ),
    ("consent_api.record_objection", "POST"): Route(
        "/api/v1/contacts/{contact_id}/objection",
        "api",
        json=lambda s: {"channel": "all", "received_via": "phone", "note": "Called us."},
        path_values=_C,
    ),
    ("consent_api.record_withdrawal", "POST"): Route(
        "/api/v1/contacts/{contact_id}/withdrawals",
        "api",
        json=lambda s: {
            "topic": "newsletter",
            "channel": "all",
            "received_via": "phone",
            "recorded_by": "crm:sara",
            "note": "Said on the phone: stop the newsletter.",
        },
        path_values=_C,
    ),
    ("consent_api.contact_permissions", "GET"): Route(
        "/api/v1/contacts/{contact_id}/permissions",
        "api",
        query=lambda s: {"at": NOW},
        path_values=_C,
    ),
    ("consent_api.restrict_processing", "POST"): Route(
        "/api/v1/contacts/{contact_id}/restriction",
        "api",
        json=lambda s: {"received_via": "letter", "note": "Contests the data."},
        path_values=_C,
    ),
    ("consent_api.lift_restriction", "DELETE"): Route(
        "/api/v1/contacts/{contact_id}/restriction", "api", path_values=_C
    ),
    ("consent_api.run_import", "POST"): Route(
        "/api/v1/imports",
        "api",
        # The CSV's "email" column is also HubSpot's "Email": a preset the fuzzer
        # mutates, and an empty mapping (none) it fills with hostile text.
        form=lambda s: {
            "basis": "customer",
            "source": "Fair 2026",
            "preset": "hubspot",
            "mapping": "",
        },
        upload=True,
    ),
    ("consent_api.read_import", "GET"): Route(
        "/api/v1/imports/{batch_id}",
        "api",
        path_values=lambda s: {"batch_id": str(s.batch)},
    ),
    ("consent_api.list_rejections", "GET"): Route(
        "/api/v1/imports/{batch_id}/rejections",
        "api",
        query=lambda s: {"after_row": "0", "limit": "10"},
        path_values=lambda s: {"batch_id": str(s.batch)},
    ),
    ("api-docs.openapi_json", "GET"): Route("/api/v1/openapi.json", "api"),
    # The interactive reference and its Swagger UI files: public, as the document is.
    ("api_reference.page", "GET"): Route("/api/v1/docs", "public"),
    ("api_reference.asset", "GET"): Route(
        "/api/v1/docs/assets/{filename}",
        "public",
        path_values=lambda s: {"filename": "swagger-ui.css"},
    ),
    ("consent_api.check_permissions", "POST"): Route(
        "/api/v1/permissions/check",
        "api",
        json=lambda s: {
            "emails": [s.email, "unknown@kund.example"],
            "topic": "newsletter",
            "channel": "email",
            "at": NOW,
        },
    ),
    ("consent_api.publish_policy", "POST"): Route(
        "/api/v1/policies",
        "api",
        json=lambda s: {
            "version": f"v-{uuid.uuid4().hex[:6]}",
            "major": False,
            "url": "https://www.kund.example/privacy",
            "text": "We keep your data safe.",
            "summary": "Nothing changed for you.",
            "wordings": [{"key": "newsletter", "language": "sv", "text": "Ja tack."}],
        },
    ),
    ("consent_api.list_policies", "GET"): Route("/api/v1/policies", "api"),
    ("consent_api.list_privacy_requests", "GET"): Route(
        "/api/v1/privacy-requests", "api", query=lambda s: {"status": "verified"}
    ),
    ("crm_api.retention_preview", "GET"): Route(
        "/api/v1/retention/preview",
        "api",
        query=lambda s: {"as_of": "2026-01-15", "limit": "10"},
    ),
    ("crm_api.retention_runs", "GET"): Route("/api/v1/retention/runs", "api"),
    ("consent_api.create_webhook", "POST"): Route(
        "/api/v1/webhooks",
        "api",
        # A public address given as such: no name to resolve, nothing is connected to.
        json=lambda s: {
            "url": "https://93.184.215.14/hooks/consent",
            "description": "CRM",
            "events": ["contact.erased", "contact.purged"],
        },
    ),
    ("consent_api.list_webhooks", "GET"): Route("/api/v1/webhooks", "api"),
    ("consent_api.read_changes", "GET"): Route(
        # A cursor as the feed returns them: position (0, 1), before any item.
        "/api/v1/changes",
        "api",
        query=lambda s: {"limit": "10", "after": "c1.0.1"},
    ),
    ("consent_api.deactivate_webhook", "DELETE"): Route(
        "/api/v1/webhooks/{webhook_id}",
        "api",
        path_values=lambda s: {"webhook_id": str(s.webhook)},
    ),
    # The bounce webhooks, as a provider without its proof (see
    # test_no_route_answers_hostile_input_with_a_server_error for their settings).
    ("bounce_webhooks.ses", "POST"): Route(
        "/webhooks/bounces/ses", "public", json=lambda s: dict(SNS_ENVELOPE)
    ),
    ("bounce_webhooks.postmark", "POST"): Route(
        "/webhooks/bounces/postmark",
        "public",
        json=lambda s: {"RecordType": "Bounce", "Type": "HardBounce", "Email": s.email},
    ),
    ("bounce_webhooks.sendgrid", "POST"): Route(
        "/webhooks/bounces/sendgrid",
        "public",
        json=lambda s: [{"email": s.email, "event": "bounce", "type": "bounce", "status": "5.1.1"}],
    ),
    ("consent_api.list_webhook_deliveries", "GET"): Route(
        "/api/v1/webhooks/{webhook_id}/deliveries",
        "api",
        query=lambda s: {"status": "delivered", "before": str(s.delivery + 1), "limit": "10"},
        path_values=lambda s: {"webhook_id": str(s.webhook)},
    ),
    ("consent_api.replay_webhook_delivery", "POST"): Route(
        "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
        "api",
        path_values=lambda s: {"webhook_id": str(s.webhook), "delivery_id": str(s.delivery)},
    ),
    ("consent_api.replay_webhook", "POST"): Route(
        "/api/v1/webhooks/{webhook_id}/replay",
        "api",
        # Both fields, so that each is fuzzed; a request names one of them.
        json=lambda s: {"after_change": "chg_1", "since": "2026-01-01T00:00:00+00:00"},
        path_values=lambda s: {"webhook_id": str(s.webhook)},
    ),
    # The public pages, as nobody.
    ("healthz", "GET"): Route("/healthz", "public"),
    # Open in testing (no METRICS_TOKEN); production asks for the token.
    ("metrics", "GET"): Route("/metrics", "public"),
    ("static", "GET"): Route(
        "/static/{filename}", "public", path_values=lambda s: {"filename": "app.css"}
    ),
    ("public.confirm", "GET"): Route(
        "/confirm/{token}", "public", path_values=lambda s: {"token": s.confirm}
    ),
    ("public.confirm", "POST"): Route(
        "/confirm/{token}",
        "public",
        form=lambda s: {},
        path_values=lambda s: {"token": s.confirm},
    ),
    ("public.renew_confirmation", "POST"): Route(
        "/confirm/{token}/renew",
        "public",
        form=lambda s: {},
        path_values=lambda s: {"token": s.confirm},
    ),
    ("public.dev_mail", "GET"): Route("/dev/mail", "public"),
    ("public.dev_mail_file", "GET"): Route(
        "/dev/mail/{name}",
        "public",
        path_values=lambda s: {"name": "message.eml"},
    ),
    ("public.undo", "GET"): Route(
        "/undo/{token}", "public", path_values=lambda s: {"token": s.undo}
    ),
    ("public.undo", "POST"): Route(
        "/undo/{token}",
        "public",
        form=lambda s: {},
        path_values=lambda s: {"token": s.undo},
    ),
    ("public.preferences", "GET"): Route(
        "/preferences/{token}",
        "public",
        path_values=lambda s: {"token": s.preferences},
    ),
    ("public.preferences", "POST"): Route(
        "/preferences/{token}",
        "public",
        form=lambda s: {"action": "save", "topics": "newsletter"},
        path_values=lambda s: {"token": s.preferences},
    ),
    ("public.privacy_request", "GET"): Route(
        "/privacy/requests", "public", query=lambda s: {"lang": "sv"}
    ),
    ("public.privacy_request", "POST"): Route(
        "/privacy/requests",
        "public",
        form=lambda s: {"email": s.email, "kind": "access", "website": ""},
        json=lambda s: {"email": s.email, "kind": "access"},
    ),
    ("public.privacy_verify", "GET"): Route(
        "/privacy/verify/{token}", "public", path_values=lambda s: {"token": s.verify}
    ),
    ("public.privacy_verify", "POST"): Route(
        "/privacy/verify/{token}",
        "public",
        form=lambda s: {},
        path_values=lambda s: {"token": s.verify},
    ),
    ("public.subscribe", "GET"): Route(
        "/subscribe", "public", query=lambda s: {"lang": "sv", "topics": "newsletter"}
    ),
    ("public.subscribe", "POST"): Route(
        "/subscribe",
        "public",
        form=lambda s: dict(SIGNUP),
        json=lambda s: {**SIGNUP, "topics": ["newsletter"], "consent": True},
    ),
    ("public.unsubscribe_by_address", "GET"): Route(
        "/unsubscribe", "public", query=lambda s: {"lang": "sv"}
    ),
    ("public.unsubscribe_by_address", "POST"): Route(
        "/unsubscribe",
        "public",
        form=lambda s: {"email": s.email, "website": ""},
        json=lambda s: {"email": s.email},
    ),
    ("public.unsubscribe", "GET"): Route(
        "/unsubscribe/{token}",
        "public",
        path_values=lambda s: {"token": s.unsubscribe},
    ),
    ("public.unsubscribe", "POST"): Route(
        "/unsubscribe/{token}",
        "public",
        form=lambda s: {"scope": "topic"},
        path_values=lambda s: {"token": s.unsubscribe},
    ),
    ("public.one_click", "POST"): Route(
        "/unsubscribe/{token}/one-click",
        "public",
        form=lambda s: {"List-Unsubscribe": "One-Click"},
        path_values=lambda s: {"token": s.unsubscribe},
    ),
    # The staff pages, as a signed-in admin with a CSRF token.
    ("staff_home", "GET"): Route("/", "staff"),
    ("staff_contacts.search", "GET"): Route("/staff/", "staff", query=lambda s: {"q": "anna"}),
    ("staff.audit_log", "GET"): Route(
        "/staff/admin/audit",
        "staff",
        query=lambda s: {"who": "admin", "action": "contact.", "from": "2026-01-01"},
    ),
    ("staff.export_audit_log", "GET"): Route(
        "/staff/admin/audit.csv", "staff", query=lambda s: {"contact": "1", "delimiter": ";"}
    ),
    ("staff_dpo.home", "GET"): Route("/staff/dpo", "staff"),
    ("staff_dpo.processing_records", "GET"): Route("/staff/dpo/records", "staff"),
    ("staff.retention_page", "GET"): Route(
        "/staff/admin/retention", "staff", query=lambda s: {"as_of": "2026-01-15"}
    ),
    ("staff.retention_checklist_done", "POST"): Route(
        "/staff/admin/retention/checklist",
        "staff",
        form=lambda s: {"rule": "server-logs", "done_through": "2020-01-01"},
    ),
    ("staff.tokens", "GET"): Route("/staff/admin/tokens", "staff"),
    ("staff.create_token", "POST"): Route(
        "/staff/admin/tokens",
        "staff",
        form=lambda s: {"name": f"crm-{uuid.uuid4().hex[:6]}", "role": "sales"},
    ),
    ("staff.revoke_token", "POST"): Route(
        "/staff/admin/tokens/{token_id}/revoke",
        "staff",
        form=lambda s: {},
        path_values=lambda s: {"token_id": str(s.token)},
    ),
    ("staff.users", "GET"): Route("/staff/admin/users", "staff"),
    ("staff.create_user", "POST"): Route(
        "/staff/admin/users",
        "staff",
        form=lambda s: {
            "email": f"new.{uuid.uuid4().hex[:6]}@staff.example",
            "name": "New Person",
            "role": "sales",
            "password": "a-long-password-1",
        },
    ),
    ("staff.change_active", "POST"): Route(
        "/staff/admin/users/{user_id}/active",
        "staff",
        form=lambda s: {"active": "true"},
        path_values=lambda s: {"user_id": str(s.user)},
    ),
    ("staff.change_role", "POST"): Route(
        "/staff/admin/users/{user_id}/role",
        "staff",
        form=lambda s: {"role": "marketing"},
        path_values=lambda s: {"user_id": str(s.user)},
    ),
    ("staff_campaigns.campaign_list", "GET"): Route("/staff/campaigns", "staff"),
    ("staff_dashboard.dashboard", "GET"): Route("/staff/dashboard", "staff"),
    ("dashboard_charts.chart", "GET"): Route("/staff/dashboard/charts/reach.svg", "staff"),
    ("staff_campaigns.compose", "POST"): Route(
        "/staff/campaigns", "staff", form=lambda s: dict(CAMPAIGN)
    ),
    ("staff_campaigns.campaign_page", "GET"): Route(
        "/staff/campaigns/{campaign_id}",
        "staff",
        query=lambda s: {"preview": "1"},
        path_values=lambda s: {"campaign_id": str(s.campaign)},
    ),
    ("staff_campaigns.send_repermission", "POST"): Route(
        "/staff/campaigns/repermission", "staff", form=lambda s: {"confirm": "yes"}
    ),
    ("staff_campaigns.send", "POST"): Route(
        "/staff/campaigns/{campaign_id}/send",
        "staff",
        form=lambda s: {"confirm": "yes"},
        path_values=lambda s: {"campaign_id": str(s.campaign)},
    ),
    ("staff_campaigns.target", "POST"): Route(
        "/staff/campaigns/{campaign_id}/segment",
        "staff",
        form=lambda s: {"segment_id": str(s.segment)},
        path_values=lambda s: {"campaign_id": str(s.campaign)},
    ),
    ("staff_segments.segment_list", "GET"): Route("/staff/segments", "staff"),
    ("staff_segments.create", "POST"): Route(
        "/staff/segments",
        "staff",
        form=lambda s: {"name": "Fuzzed", "country": "SE", "created_from": "2026-01-01"},
    ),
    ("staff_segments.segment_page", "GET"): Route(
        "/staff/segments/{segment_id}",
        "staff",
        path_values=lambda s: {"segment_id": str(s.segment)},
    ),
    ("staff_segments.update", "POST"): Route(
        "/staff/segments/{segment_id}",
        "staff",
        form=lambda s: {"name": "Fuzz", "country": "SE", "active_within_days": "30"},
        path_values=lambda s: {"segment_id": str(s.segment)},
    ),
    ("staff_segments.delete", "POST"): Route(
        "/staff/segments/{segment_id}/delete",
        "staff",
        form=lambda s: {"confirm": "yes"},
        path_values=lambda s: {"segment_id": str(s.segment)},
    ),
    ("staff_contacts.contact", "GET"): Route(
        "/staff/contacts/{contact_id}", "staff", path_values=_C
    ),
    ("staff_contacts.log_activity", "POST"): Route(
        "/staff/contacts/{contact_id}/activities",
        "staff",
        form=lambda s: {"kind": "call", "occurred_at": "2026-01-15T10:00", "note": "Called."},
        path_values=_C,
    ),
    ("staff_contacts.set_legal_hold", "POST"): Route(
        "/staff/contacts/{contact_id}/legal-hold",
        "staff",
        form=lambda s: {"reason": "Dispute 2026-17"},
        path_values=_C,
    ),
    ("staff_contacts.lift_legal_hold", "POST"): Route(
        "/staff/contacts/{contact_id}/legal-hold/lift",
        "staff",
        form=lambda s: {},
        path_values=_C,
    ),
    ("staff_contacts.record_objection", "POST"): Route(
        "/staff/contacts/{contact_id}/objection",
        "staff",
        form=lambda s: {"received_via": "phone", "channel": "all", "note": "Called us."},
        path_values=_C,
    ),
    ("staff_contacts.record_withdrawal", "POST"): Route(
        "/staff/contacts/{contact_id}/withdrawal",
        "staff",
        form=lambda s: {"received_via": "phone", "topic": "newsletter", "channel": "all"},
        path_values=_C,
    ),
    ("staff_contacts.restrict", "POST"): Route(
        "/staff/contacts/{contact_id}/restriction",
        "staff",
        form=lambda s: {"note": "Contests the data.", "received_via": "letter"},
        path_values=_C,
    ),
    ("staff_contacts.export_contact", "POST"): Route(
        "/staff/contacts/{contact_id}/export",
        "staff",
        form=lambda s: {"received_via": "email"},
        path_values=_C,
    ),
    ("contact_list.contacts", "GET"): Route(
        "/staff/contacts",
        "staff",
        query=lambda s: {
            "topic": "events",
            "channel": "email",
            "decision": "allowed",
            "country": "SE",
            "created_from": "2026-01-01",
            "after": "0",
        },
    ),
    ("contact_list.export", "GET"): Route(
        "/staff/contacts/export.csv",
        "staff",
        query=lambda s: {"format": "excel", "country": "SE", "company": "Kund"},
    ),
    ("contact_list.confirm_bulk", "GET"): Route(
        "/staff/contacts/bulk",
        "staff",
        query=lambda s: {"action": "set_legal_hold", "country": "SE"},
    ),
    ("contact_list.start_bulk", "POST"): Route(
        "/staff/contacts/bulk",
        "staff",
        form=lambda s: {
            "action": "set_legal_hold",
            "reason": "Fuzz",
            "external_system": "nowhere",
            "confirmed": "0",
            "as_of": NOW,
        },
    ),
    ("contact_list.bulk_run", "GET"): Route(
        "/staff/contacts/bulk/{run}", "staff", path_values=lambda s: {"run": "1"}
    ),
    ("staff_contacts.confirm_erasure", "GET"): Route(
        "/staff/contacts/{contact_id}/erase", "staff", path_values=_C
    ),
    ("staff_contacts.erase_contact", "POST"): Route(
        "/staff/contacts/{contact_id}/erase",
        "staff",
        form=lambda s: {"confirm": "yes", "received_via": "phone"},
        path_values=_C,
    ),
    ("staff_contacts.rectify", "POST"): Route(
        "/staff/contacts/{contact_id}/rectify",
        "staff",
        form=lambda s: {
            "email": s.email,
            "name": "Fuzz Rättad",
            "phone": "+46 8 123",
            "country": "SE",
            "language": "sv",
            "received_via": "letter",
        },
        path_values=_C,
    ),
    ("staff_connectors.connector_list", "GET"): Route("/staff/connectors", "staff"),
    ("staff_connectors.resume", "POST"): Route(
        "/staff/connectors/{name}/resume",
        "staff",
        form=lambda s: {},
        path_values=lambda s: {"name": "hubspot"},
    ),
    ("staff_connectors.full_resync", "POST"): Route(
        "/staff/connectors/{name}/full-resync",
        "staff",
        form=lambda s: {},
        path_values=lambda s: {"name": "hubspot"},
    ),
    ("staff_webhooks.webhook_list", "GET"): Route("/staff/admin/webhooks", "staff"),
    ("staff_webhooks.webhook_log", "GET"): Route(
        "/staff/admin/webhooks/{webhook_id}",
        "staff",
        query=lambda s: {"status": "delivered", "before": str(s.delivery + 1)},
        path_values=lambda s: {"webhook_id": str(s.webhook)},
    ),
    ("staff_webhooks.replay_delivery", "POST"): Route(
        "/staff/admin/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
        "staff",
        form=lambda s: {},
        path_values=lambda s: {"webhook_id": str(s.webhook), "delivery_id": str(s.delivery)},
    ),
    ("staff_webhooks.replay_since", "POST"): Route(
        "/staff/admin/webhooks/{webhook_id}/replay",
        "staff",
        form=lambda s: {"after_change": "chg_1", "since": ""},
        path_values=lambda s: {"webhook_id": str(s.webhook)},
    ),
    ("staff_requests.inbox", "GET"): Route(
        "/staff/admin/privacy-requests", "staff", query=lambda s: {"show": "all"}
    ),
    ("staff_requests.extend_request", "POST"): Route(
        "/staff/admin/privacy-requests/{request_id}/extend",
        "staff",
        form=lambda s: {"reason": "Many requests this month."},
        path_values=lambda s: {"request_id": str(s.privacy_request)},
    ),
    ("staff_requests.refuse_request", "POST"): Route(
        "/staff/admin/privacy-requests/{request_id}/refuse",
        "staff",
        form=lambda s: {"reason": "Legal hold: accounting law."},
        path_values=lambda s: {"request_id": str(s.privacy_request)},
    ),
    ("staff_contacts.lift_restriction", "POST"): Route(
        "/staff/contacts/{contact_id}/restriction/lift",
        "staff",
        form=lambda s: {"note": "Settled."},
        path_values=_C,
    ),
    ("staff_contacts.address_fixed", "POST"): Route(
        "/staff/contacts/{contact_id}/address-fixed",
        "staff",
        form=lambda s: {"note": "Typo corrected."},
        path_values=_C,
    ),
    ("staff_imports.import_list", "GET"): Route("/staff/imports", "staff"),
    ("staff_imports.upload", "POST"): Route(
        "/staff/imports",
        "staff",
        form=lambda s: {
            "basis": "customer",
            "source": "Fair 2026",
            "mapping": '{"email": "email"}',
        },
        upload=True,
    ),
    ("staff_imports.import_page", "GET"): Route(
        "/staff/imports/{batch_id}",
        "staff",
        query=lambda s: {"after_row": "0"},
        path_values=lambda s: {"batch_id": str(s.batch)},
    ),
    ("staff.set_language", "POST"): Route(
        "/staff/language", "staff", form=lambda s: {"lang": "sv", "next": "/staff/"}
    ),
    ("staff.login", "GET"): Route("/staff/login", "public", query=lambda s: {"next": "/staff/"}),
    ("staff.login", "POST"): Route(
        "/staff/login",
        "public",
        form=lambda s: {
            "email": "admin@staff.example",
            "password": "wrong-password-1",
            "next": "/staff/",
        },
    ),
    ("staff.logout", "POST"): Route("/staff/logout", "staff", form=lambda s: {}),
    ("accounts.account", "GET"): Route("/staff/account", "staff"),
    # A wrong current password: the valid request changes nothing the next one needs.
    ("accounts.change_password", "POST"): Route(
        "/staff/account/password",
        "staff",
        form=lambda s: {
            "current_password": "not-the-password",
            "new_password": "a-new-long-password",
            "new_password_again": "a-new-long-password",
        },
    ),
    ("accounts.set_time_zone", "POST"): Route(
        "/staff/account/time-zone", "staff", form=lambda s: {"time_zone": "America/New_York"}
    ),
    ("accounts.enrol", "GET"): Route("/staff/account/two-factor", "staff"),
    ("accounts.confirm_enrolment", "POST"): Route(
        "/staff/account/two-factor",
        "staff",
        form=lambda s: {"enrolment": "forged.enrolment", "code": "123456"},
    ),
    ("accounts.send_reset", "POST"): Route(
        "/staff/admin/users/{user_id}/password-reset",
        "staff",
        form=lambda s: {},
        path_values=lambda s: {"user_id": str(s.user)},
    ),
    ("accounts.remove_factor", "POST"): Route(
        "/staff/admin/users/{user_id}/two-factor/remove",
        "staff",
        form=lambda s: {},
        path_values=lambda s: {"user_id": str(s.user)},
    ),
    ("accounts.second_factor", "GET"): Route("/staff/login/code", "public"),
    ("accounts.second_factor", "POST"): Route(
        "/staff/login/code", "public", form=lambda s: {"code": "123456"}
    ),
    ("accounts.enrol_at_sign_in", "GET"): Route("/staff/login/two-factor", "public"),
    ("accounts.enrol_at_sign_in", "POST"): Route(
        "/staff/login/two-factor",
        "public",
        form=lambda s: {"enrolment": "forged.enrolment", "code": "123456"},
    ),
    ("accounts.forgot_password", "GET"): Route("/staff/password-reset", "public"),
    ("accounts.forgot_password", "POST"): Route(
        "/staff/password-reset", "public", form=lambda s: {"email": "nobody@staff.example"}
    ),
    ("accounts.reset_password", "GET"): Route(
        "/staff/password-reset/{token}",
        "public",
        path_values=lambda s: {"token": "not-a-link"},
    ),
    ("accounts.reset_password", "POST"): Route(
        "/staff/password-reset/{token}",
        "public",
        form=lambda s: {"password": "a-new-long-password", "password_again": "a-new-long-password"},
        path_values=lambda s: {"token": "not-a-link"},
    ),
}

ENDS_THE_SESSION = {("staff.logout", "POST")}

# Hostile file contents for the two import routes (the file is a position too).
FILES = [
    ("nul", b"email;name\nnul@kund.example;A\x00B\n"),
    ("control", b"email;name\nctl@kund.example;A\x01\x1bB\n"),
    ("huge-number", b"email;name;last interaction\nn@kund.example;N;99999999999999999999\n"),
    ("unterminated-quote", b'email;name\nq@kund.example;"Open\nr@kund.example;R\n'),
    ("deep", b"email;name\nd@kund.example;" + _DEEP_JSON.encode()[:60_000] + b"\n"),
    ("long-line", b"email;name\nl@kund.example;" + b"x" * 100_000 + b"\n"),
    ("not-utf8", b"email;name\nu@kund.example;\xff\xfe\n"),
]


# Fixtures and helpers --------------------------------------------------------------


@dataclass
class Outcome:
    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    bad_shapes: list[str] = field(default_factory=list)


@pytest.fixture
def seeds(app: Any) -> Iterator[Callable[[], Seed]]:
    """``seeds()``: a fresh contact, and the objects every route may name.

    The contact is new at each call (``Fuzzer.fuzz`` calls it for every
    position of a route on one contact); the rest is made once, as no route
    removes it (a campaign sent or a token revoked twice is only refused)."""
    from consent import imports, rights, services
    from consent.models import (
        Basis,
        InterestKind,
        SubscriptionRequest,
        WebhookDelivery,
        WebhookEndpoint,
    )
    from consent.tokens import Purpose, make_token
    from crm.models import Contact
    from crm.services import CompanyInput
    from kernel.access import CLI_ACTOR, create_api_token
    from kernel.models import StaffUser
    from mailing import campaigns, segments

    counter = itertools.count()

    def contact(email: str) -> int:
        found = services.register_contact(
            CLI_ACTOR,
            email,
            {"name": "Fuzz Kund", "country": "SE"},
            company=CompanyInput(name="Kund AB"),
            basis=services.BasisInput(
                type=Basis.LEGITIMATE_INTEREST,
                source="crm-sync",
                interest_kind=InterestKind.CUSTOMER,
            ),
        ).contact
        return found.id

    with app.app_context():
        holder = contact("link.holder@kund.example")
        campaign = campaigns.create_campaign(CLI_ACTOR, campaigns.CampaignInput(**CAMPAIGN))
        segment = segments.create_segment(
            CLI_ACTOR, segments.SegmentInput("Fuzz", {"country": "SE"})
        )
        report = imports.import_contacts(
            CLI_ACTOR,
            io.BytesIO(b"email;name\nnot-an-address;X\nrow@kund.example;R\n"),
            basis="customer",
            source="fuzz",
        )
        # Inactive: an active receiver would be owed a delivery for every change.
        webhook = WebhookEndpoint(
            url="https://93.184.215.14/hooks", description="fuzz", secret="whsec_f", is_active=False
        )
        pending = SubscriptionRequest(
            contact_id=holder, open_for_contact=holder, topics="newsletter"
        )
        user = StaffUser(
            email="target@staff.example",
            name="Target",
            role="sales",
            password_hash="x",
            is_active=True,
        )
        db.session.add_all([webhook, pending, user])
        db.session.flush()
        delivery = WebhookDelivery(
            endpoint_id=webhook.id,
            event_type="contact.created",
            contact_id=holder,
            status="delivered",
        )
        db.session.add(delivery)
        db.session.commit()
        privacy = rights.open_privacy_request(
            db.session.get(Contact, holder), "access", datetime.now(UTC)
        )
        erasure = rights.open_privacy_request(
            db.session.get(Contact, holder), "erasure", datetime.now(UTC)
        )
        rights.verify_privacy_request(erasure.id, datetime.now(UTC))
        db.session.commit()
        token, _raw = create_api_token("fuzz-target", "sales")
        shared = {
            "campaign": campaign.id,
            "segment": segment.id,
            "batch": report.batch_id,
            "webhook": webhook.id,
            "delivery": delivery.id,
            "user": user.id,
            "token": token.id,
            "confirm": make_token(Purpose.CONFIRM, {"r": pending.id}),
            "unsubscribe": make_token(Purpose.UNSUBSCRIBE, {"c": holder, "t": "newsletter"}),
            "preferences": make_token(Purpose.PREFERENCES, {"c": holder}),
            "verify": make_token(Purpose.VERIFY_ADDRESS, {"p": privacy.id}),
            # A signup notice's undo link; its event ids need not exist to be fuzzed.
            "undo": make_token(Purpose.UNDO_SIGNUP, {"c": holder, "e": [1]}),
            "privacy_request": erasure.id,
        }
        db.session.remove()

    def make() -> Seed:
        email = f"fuzz.{next(counter)}@kund.example"
        with app.app_context():
            contact_id = contact(email)
            db.session.remove()
        return Seed(contact=contact_id, email=email, **shared)

    yield make


def _csrf_token(client: Any) -> str:
    page = client.get("/staff/").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the staff page carries a CSRF token"
    return found.group(1)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every leaf of a JSON body with its path (keys and list indexes)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path, value


def _replaced(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(body))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def _spec_leaves(spec: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Leaf field paths of an OpenAPI request schema (list items as ``[]``)."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for combined in ("allOf", "anyOf", "oneOf"):
        # Nullable nested schemas are written as anyOf [a bare nullable object, the schema].
        shaped = [s for s in schema.get(combined, ()) if {"$ref", "properties", "items"} & set(s)]
        if shaped:
            return set().union(*(_spec_leaves(spec, s, prefix) for s in shaped))
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return _spec_leaves(spec, schema["items"], prefix + "[]")
    properties = schema.get("properties")
    if not properties:
        return {prefix}
    found: set[str] = set()
    for name, sub in properties.items():
        if sub.get("readOnly"):
            continue
        found |= _spec_leaves(spec, sub, f"{prefix}.{name}" if prefix else name)
    return found


def _path_label(path: tuple[Any, ...]) -> str:
    label = ""
    for step in path:
        if isinstance(step, int):
            label += "[]"
        else:
            label += f".{step}" if label else str(step)
    return label


class Fuzzer:
    def __init__(self, app: Any, seeds: Callable[[], Seed], api_token: str, admin: int) -> None:
        self.app = app
        self.seeds = seeds
        self.api_token = api_token
        self.admin = admin
        self.outcome = Outcome()

    def _client(self, route: Route) -> tuple[Any, dict[str, str], dict[str, str]]:
        client = self.app.test_client()
        headers: dict[str, str] = {}
        form_extra: dict[str, str] = {}
        if route.as_ == "api":
            headers["Authorization"] = f"Bearer {self.api_token}"
        elif route.as_ == "staff":
            sign_in(client, self.app, self.admin)
            form_extra["csrf_token"] = _csrf_token(client)
        return client, headers, form_extra

    def send(
        self,
        label: str,
        client: Any,
        method: str,
        path: str,
        headers: dict[str, str],
        **kwargs: Any,
    ) -> None:
        response = client.open(path, method=method, headers=headers, **kwargs)
        self.outcome.requests += 1
        where = f"{method} {path[:80]} {label} -> {response.status_code}"
        if response.status_code >= 500:
            self.outcome.server_errors.append(where)
        elif response.status_code >= 400 and path.startswith("/api/"):
            body = response.get_json(silent=True)
            error = body.get("error") if isinstance(body, dict) else None
            if not (isinstance(error, dict) and "code" in error and "message" in error):
                self.outcome.bad_shapes.append(where)

    def fuzz(self, endpoint: str, method: str, route: Route) -> None:
        # A hostile value that was accepted must not change what the next one
        # meets: a route on one contact gets a fresh contact for each position
        # (erasure, a restriction or a legal hold would end or narrow it), and
        # signing out a fresh session. Other routes share one of each.
        seed = self.seeds()
        client, headers, form_extra = self._client(route)
        for n, (position, variants) in enumerate(self._positions(route)):
            if n and "{contact_id}" in route.path:
                seed = self.seeds()
            if n and (endpoint, method) in ENDS_THE_SESSION:
                client, headers, form_extra = self._client(route)
            for value_label, build in variants:
                kwargs = build(seed, form_extra)
                self.send(
                    f"{endpoint} {position}={value_label}",
                    client,
                    method,
                    kwargs.pop("path"),
                    headers,
                    **kwargs,
                )

    def _positions(
        self, route: Route
    ) -> Iterator[tuple[str, list[tuple[str, Callable[[Seed, dict[str, str]], dict[str, Any]]]]]]:
        """(position, [(value label, request builder)]) for every position of ``route``."""

        def request(
            seed: Seed,
            form_extra: dict[str, str],
            *,
            query: dict[str, str] | None = None,
            form: dict[str, str] | None = None,
            body: str | bytes | None = None,
            file: bytes | None = None,
            path: str | None = None,
        ) -> dict[str, Any]:
            kwargs: dict[str, Any] = {
                "path": path or route.path.format(**route.path_values(seed)),
                "query_string": query if query is not None else route.query(seed),
            }
            if body is not None:
                kwargs["data"] = body
                kwargs["content_type"] = "application/json"
                return kwargs
            fields = form if form is not None else (route.form(seed) if route.form else None)
            if fields is None and not route.upload:
                if route.json is not None:
                    kwargs["data"] = _dumps(route.json(seed))
                    kwargs["content_type"] = "application/json"
                return kwargs
            data: dict[str, Any] = {**form_extra, **(fields or {})}
            if route.upload:
                data["file"] = (io.BytesIO(file if file is not None else CSV), "list.csv")
            kwargs["data"] = data
            return kwargs

        sample = self.seeds_sample
        # Query string fields, and an unknown one every route may be sent.
        for name in [*route.query(sample), "unknown"]:
            valid = route.query(sample).get(name, "x")
            yield (
                f"query.{name}",
                [
                    (
                        label,
                        lambda s, f, name=name, value=value: request(
                            s, f, query={**route.query(s), name: value}
                        ),
                    )
                    for label, value in _text_values(valid)
                ],
            )
        # Form fields (public and staff pages, the import forms).
        if route.form is not None:
            for name in [*route.form(sample), "unknown"]:
                valid = route.form(sample).get(name, "x")
                yield (
                    f"form.{name}",
                    [
                        (
                            label,
                            lambda s, f, name=name, value=value: request(
                                s, f, form={**(route.form(s) if route.form else {}), name: value}
                            ),
                        )
                        for label, value in _text_values(valid)
                    ],
                )
        # JSON body leaves (the API, and the public forms that take JSON too).
        if route.json is not None:
            for leaf, valid in _leaves(route.json(sample)):
                yield (
                    f"json.{_path_label(leaf)}",
                    [
                        (
                            label,
                            lambda s, f, leaf=leaf, value=value: request(
                                s, f, body=_dumps(_replaced(route.json(s), leaf, value))
                            ),
                        )
                        for label, value in _json_values(valid)
                    ],
                )
        # The uploaded file of the import routes.
        if route.upload:
            yield (
                "file",
                [
                    (label, lambda s, f, content=content: request(s, f, file=content))
                    for label, content in FILES
                ],
            )
        # Path ids and tokens.
        for name, valid in route.path_values(sample).items():
            yield (
                f"path.{name}",
                [
                    (
                        label,
                        lambda s, f, name=name, value=value: request(
                            s,
                            f,
                            path=route.path.format(
                                **{**route.path_values(s), name: _quote_path(value)}
                            ),
                        ),
                    )
                    for label, value in _text_values(valid)
                ],
            )
        # The whole body: 50,000-deep JSON, and a JSON object whose one field is NUL,
        # to every route and method alike.
        yield (
            "body",
            [
                ("deep", lambda s, f: request(s, f, body=_DEEP_JSON)),
                ("nul-field", lambda s, f: request(s, f, body=json.dumps({"email": "a\x00b"}))),
                ("huge-number", lambda s, f: request(s, f, body="9" * 5_000)),
            ],
        )

    seeds_sample: Seed


def _quote_path(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _table_covers_every_route(app: Any) -> None:
    routes = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert routes - set(ROUTES) == set(), "routes the fuzz table does not name"
    assert set(ROUTES) - routes == set(), "the fuzz table names routes that do not exist"


def _table_covers_every_api_field(app: Any, sample: Seed) -> None:
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    paths = {
        (rule.endpoint, method): re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
    }
    missing = []
    for (endpoint, method), route in ROUTES.items():
        if route.as_ != "api" or endpoint == "api-docs.openapi_json":
            continue
        operation = spec["paths"][paths[(endpoint, method)]][method.lower()]
        for parameter in operation.get("parameters", []):
            if "$ref" in parameter:  # a reusable one (the Idempotency-Key header)
                parameter = spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
            if parameter["in"] == "query" and parameter["name"] not in route.query(sample):
                missing.append(f"{endpoint} query {parameter['name']}")
        content = operation.get("requestBody", {}).get("content", {})
        for media, described in content.items():
            schema = described["schema"]
            wanted = _spec_leaves(spec, schema)
            if media == "multipart/form-data":
                sent = {*(route.form(sample) if route.form else {}), *(["file"] * route.upload)}
            else:
                # A free-form object (external ids) is covered by any key sent in it.
                sent = {
                    _path_label(p[:end])
                    for p, _ in _leaves(route.json(sample) if route.json else {})
                    for end in range(1, len(p) + 1)
                }
            missing += [f"{endpoint} body {name}" for name in sorted(wanted - sent)]
    assert missing == [], "API fields the fuzz table does not send"


def test_no_route_answers_hostile_input_with_a_server_error(
    app, seeds, token_for, monkeypatch
) -> None:
    # As in production: CSRF on, so the staff forms are fuzzed with their token,
    # and webhook receivers only at public addresses.
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
    # The bounce webhooks configured, so that their checks run past "not configured".
    monkeypatch.setitem(app.config, "SES_SNS_TOPIC_ARNS", SNS_TOPIC)
    monkeypatch.setitem(app.config, "POSTMARK_WEBHOOK_AUTH", "postmark:fuzz-password")
    monkeypatch.setitem(
        app.config,
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYijgnoXxkiSC1l/wcU8J1DTqOmkvT86mbnXbZAzl7EH+qZS5oI"
        "LoZi25tuhLZZd5VJJJrfEx39Z3Yhedrt50xQ==",
    )
    started = time.monotonic()
    _table_covers_every_route(app)
    admin = make_user(app, "admin", email="admin@staff.example")
    fuzzer = Fuzzer(app, seeds, token_for("admin"), admin)
    fuzzer.seeds_sample = seeds()
    _table_covers_every_api_field(app, fuzzer.seeds_sample)

    for (endpoint, method), route in ROUTES.items():
        fuzzer.fuzz(endpoint, method, route)

    outcome = fuzzer.outcome
    with app.app_context():
        dialect = db.engine.dialect.name
        db.session.execute(sa.text("SELECT 1"))
    figure(
        f"fuzz:every route ({dialect})",
        routes=len(ROUTES),
        requests=outcome.requests,
        server_errors=len(outcome.server_errors),
        bad_error_shapes=len(outcome.bad_shapes),
        seconds=round(time.monotonic() - started, 1),
    )
    assert not outcome.server_errors, "server errors:\n" + "\n".join(outcome.server_errors)
    assert not outcome.bad_shapes, "errors without the house shape:\n" + "\n".join(
        outcome.bad_shapes
    )
