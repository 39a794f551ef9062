"""Server errors from hostile input (issue 18, item 12): each case that was a 500
on the branch point, answered now with a clear 4xx and nothing written.

``test_fuzz_routes.py`` sends every hostile value to every route; these pin the
cases the issue reported, with what the answer says and that nothing changed.
"""

from __future__ import annotations

import json
import re

from tests.conftest import count_rows
from tests.staff.helpers import client_as, make_contact

DEEP = "[" * 50_000 + "]" * 50_000


def _error(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


def test_a_nul_in_an_objection_note_is_refused_whole_and_the_objection_can_be_sent_again(
    app, admin_api
) -> None:
    """PostgreSQL cannot store NUL: the objection failed with a 500 and was lost."""
    contact_id = make_contact(app)
    before = count_rows(app)
    refused = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection",
        json={"received_via": "phone", "note": "Called\x00 us"},
    )
    assert refused.status_code == 422
    error = _error(refused)
    assert error["code"] == "invalid_characters"
    assert "NUL" in error["message"] and "Nothing was saved" in error["message"]
    assert error["fields"] == {"note": ["Contains a NUL byte."]}
    assert count_rows(app) == before

    taken = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone", "note": "Called"}
    )
    assert taken.status_code == 201


def test_a_nul_in_the_staff_objection_form_is_refused_with_the_reason(app, monkeypatch) -> None:
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    contact_id = make_contact(app)
    client = client_as(app, "sales")
    page = client.get(f"/staff/contacts/{contact_id}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    before = count_rows(app)
    refused = client.post(
        f"/staff/contacts/{contact_id}/objection",
        data={"csrf_token": token, "received_via": "phone", "channel": "all", "note": "a\x00b"},
    )
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert "note" in text and "NUL" in text and "Nothing was saved" in text
    assert count_rows(app) == before


def test_nul_in_searches_filters_and_batch_checks_is_a_clear_422(app, admin_api) -> None:
    """Each was a 500 on PostgreSQL (text cannot hold NUL, not even in a query)."""
    make_contact(app)
    staff = client_as(app, "admin")
    answers = [
        admin_api.get("/api/v1/audit", query_string={"actor": "cli\x00"}),
        admin_api.get("/api/v1/contacts", query_string={"email": "anna\x00@kund.example"}),
        admin_api.post(
            "/api/v1/permissions/check", json={"emails": ["a\x00@kund.example"], "topic": "events"}
        ),
        staff.get("/staff/", query_string={"q": "anna\x00"}),
        staff.get("/staff/admin/audit", query_string={"before": "1\x00"}),
    ]
    assert [a.status_code for a in answers] == [422] * 5
    assert all(_error(a)["code"] == "invalid_characters" for a in answers[:3])
    assert all("NUL" in a.get_data(as_text=True) for a in answers[3:])


def test_nul_in_public_forms_is_refused_and_nothing_stored(app, client) -> None:
    before = count_rows(app)
    html = client.post(
        "/subscribe",
        data={"email": "sam@kund.example", "topics": "newsletter", "form_id": "site\x00"},
    )
    as_json = client.post(
        "/subscribe", json={"email": "sam@kund.example", "topics": ["newsletter"], "name": "S\x00"}
    )
    assert html.status_code == 422 and "NUL" in html.get_data(as_text=True)
    assert as_json.status_code == 422 and _error(as_json)["fields"] == {
        "name": ["Contains a NUL byte."]
    }
    assert count_rows(app) == before


def test_50000_levels_of_json_are_refused_before_any_parser_runs(app, client, admin_api) -> None:
    """Python's JSON parser recurses: Flask's and webargs' parsing both ended in a 500."""
    contact_id = make_contact(app)
    before = count_rows(app)
    answers = [
        client.post("/subscribe", data=DEEP, content_type="application/json"),
        client.post("/privacy/requests", data=DEEP, content_type="application/json"),
        admin_api.post("/api/v1/contacts", data=DEEP, content_type="application/json"),
        admin_api.post(
            f"/api/v1/contacts/{contact_id}/objection",
            data='{"received_via": "phone", "note": ' + DEEP + "}",
            content_type="application/json",
        ),
    ]
    assert [a.status_code for a in answers] == [422] * 4
    assert {_error(a)["code"] for a in answers} == {"json_too_deep"}
    assert count_rows(app) == before


def test_json_that_only_its_parser_refuses_is_a_422(app, admin_api) -> None:
    """An integer of 5,000 digits raises ValueError in json.loads, which webargs let through."""
    answer = admin_api.post(
        "/api/v1/contacts", data='{"email": ' + "9" * 5_000 + "}", content_type="application/json"
    )
    assert answer.status_code == 422 and _error(answer)["code"] == "invalid_json"


def test_a_lone_surrogate_is_refused(app, admin_api) -> None:
    """``"\\ud800"`` is valid JSON but not UTF-8: neither database could store it (a 500)."""
    contact_id = make_contact(app)
    answer = admin_api.post(
        f"/api/v1/contacts/{contact_id}/activities",
        data='{"kind": "call", "occurred_at": "2026-01-15T10:00:00+00:00", "note": "a\\ud800"}',
        content_type="application/json",
    )
    assert answer.status_code == 422
    assert _error(answer)["fields"] == {"note": ["Contains an unpaired surrogate (U+D800)."]}


def test_a_surrogate_sent_as_raw_bytes_is_refused_on_the_public_forms(app, client) -> None:
    """Invalid UTF-8, yet Flask's get_json decodes bytes with "surrogatepass": a
    signup whose name held one was a 500 (the database could not encode it)."""
    signup = {
        "email": "sam@kund.example",
        "topics": ["newsletter"],
        "name": "SURROGATE",
        "form_id": "website",
        "wording": "Yes please.",
        "policy_version": "2026-01",
        "consent": True,
    }
    body = json.dumps(signup).encode().replace(b"SURROGATE", b"S\xed\xa0\x80")
    before = count_rows(app)
    answer = client.post("/subscribe", data=body, content_type="application/json")
    assert answer.status_code == 422
    assert _error(answer)["fields"] == {"name": ["Contains an unpaired surrogate (U+D800)."]}
    assert count_rows(app) == before


def test_row_numbers_beyond_any_id_are_refused_on_the_staff_pages(app) -> None:
    """``contact=99999999999999999999`` on the audit page: SQLite cannot bind it (a
    500); a page cursor is signed (crm.audit_log), so a number is no cursor (400)."""
    staff = client_as(app, "admin")
    for huge in ("99999999999999999999", str(2**63), str(2**31)):
        audit = staff.get("/staff/admin/audit", query_string={"contact": huge})
        assert audit.status_code == 422, huge
        assert "contact" in audit.get_data(as_text=True)
        assert staff.get("/staff/admin/audit", query_string={"before": huge}).status_code == 400
    with app.app_context():
        import io

        from consent import imports
        from kernel.access import CLI_ACTOR

        batch = imports.import_contacts(
            CLI_ACTOR, io.BytesIO(b"email\nnot-an-address\n"), basis="customer", source="t"
        ).batch_id
    page = staff.get(f"/staff/imports/{batch}", query_string={"after_row": "99999999999999999999"})
    assert page.status_code == 200 and "The page is not valid." in page.get_data(as_text=True)
