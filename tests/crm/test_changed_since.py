"""The changed-since read (issue 20, item 6): GET /api/v1/contacts?updated_after=
in keyset pages on (updated_at, id), so that a connector can compare its copy
with ours. Pages miss nothing and repeat nothing, ties in updated_at included;
a change of the contact's decisions or external ids counts as a change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import count_rows, finish_imports

EPOCH = "2000-01-01T00:00:00Z"


def _create(api, email: str, **extra) -> int:  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/contacts", json={"email": email, **extra})
    assert response.status_code in (200, 201), response.json
    return int(response.json["id"])


def _stamp(app, stamps: dict[int, datetime]) -> None:  # type: ignore[no-untyped-def]
    from crm.models import Contact
    from extensions import db

    with app.app_context():
        for contact_id, at in stamps.items():
            db.session.execute(
                sa.update(Contact).where(Contact.id == contact_id).values(updated_at=at)
            )
        db.session.commit()
        db.session.remove()


def _read_all(api, updated_after: str, limit: int) -> tuple[list[int], int]:  # type: ignore[no-untyped-def]
    """Every page, following ``next``; the ids in order and the number of pages."""
    seen: list[int] = []
    page = api.get(
        "/api/v1/contacts", query_string={"updated_after": updated_after, "limit": limit}
    )
    pages = 1
    while pages <= 1000:  # a cursor that does not move on would loop forever
        assert page.status_code == 200, page.json
        assert len(page.json["contacts"]) <= limit
        seen.extend(c["id"] for c in page.json["contacts"])
        if not page.json["has_more"]:
            assert page.json["next"] is None
            return seen, pages
        page = api.get(page.json["next"])
        pages += 1
    raise AssertionError("the pages never end: the cursor does not move on")


def test_pages_with_ties_miss_nothing_and_repeat_nothing(app, admin_api) -> None:
    ids = [_create(admin_api, f"c{n}@kund.se") for n in range(23)]
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    # Seven contacts share one moment, five another: page boundaries fall inside ties.
    stamps = {}
    for n, contact_id in enumerate(ids):
        if n < 7:
            stamps[contact_id] = base
        elif n < 12:
            stamps[contact_id] = base + timedelta(microseconds=1)
        else:
            stamps[contact_id] = base + timedelta(seconds=n)
    _stamp(app, stamps)

    for limit in (1, 2, 3, 5, 7, 23, 1000):
        seen, pages = _read_all(admin_api, EPOCH, limit)
        assert sorted(seen) == sorted(ids), limit
        assert len(seen) == len(set(seen)), limit
        assert seen == sorted(ids, key=lambda i: (stamps[i], i)), limit
        assert pages == -(-len(ids) // limit), limit

    # Strictly after the time: the seven at ``base`` are left out.
    seen, _ = _read_all(admin_api, base.isoformat(), 4)
    assert sorted(seen) == sorted(ids[7:])


def test_a_contact_changed_while_paging_is_read_again_at_the_end(app, admin_api) -> None:
    ids = [_create(admin_api, f"c{n}@kund.se") for n in range(6)]
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    _stamp(app, {contact_id: base + timedelta(seconds=n) for n, contact_id in enumerate(ids)})
    first = admin_api.get("/api/v1/contacts", query_string={"updated_after": EPOCH, "limit": 3})
    assert [c["id"] for c in first.json["contacts"]] == ids[:3]
    admin_api.patch(f"/api/v1/contacts/{ids[0]}", json={"name": "Changed"})
    rest = admin_api.get(
        "/api/v1/contacts",
        query_string={"updated_after": EPOCH, "after": first.json["next_cursor"], "limit": 10},
    )
    assert [c["id"] for c in rest.json["contacts"]] == [*ids[3:], ids[0]]
    assert rest.json["contacts"][-1]["name"] == "Changed"


def test_the_cursor_resumes_later_after_the_last_contact_read(app, admin_api) -> None:
    ids = [_create(admin_api, f"c{n}@kund.se") for n in range(3)]
    page = admin_api.get("/api/v1/contacts", query_string={"updated_after": EPOCH})
    assert page.json["has_more"] is False
    assert page.json["next"] is None
    cursor = page.json["next_cursor"]
    empty = admin_api.get(
        "/api/v1/contacts", query_string={"updated_after": EPOCH, "after": cursor}
    )
    assert empty.json == {"contacts": [], "has_more": False, "next_cursor": None, "next": None}
    later = _create(admin_api, "later@kund.se")
    resumed = admin_api.get(
        "/api/v1/contacts", query_string={"updated_after": EPOCH, "after": cursor}
    )
    assert [c["id"] for c in resumed.json["contacts"]] == [later]
    assert ids


def test_a_change_of_decisions_counts_as_a_change(app, admin_api) -> None:
    contact_id = _create(
        admin_api,
        "anna@kund.se",
        basis={"type": "legitimate_interest", "kind": "customer", "source": "crm"},
    )
    _stamp(app, {contact_id: datetime(2026, 1, 1, tzinfo=UTC)})
    since = "2026-02-01T00:00:00Z"
    before = admin_api.get("/api/v1/contacts", query_string={"updated_after": since})
    assert before.json["contacts"] == []
    objected = admin_api.post(
        f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"}
    )
    assert objected.status_code == 201
    after = admin_api.get("/api/v1/contacts", query_string={"updated_after": since})
    assert [c["id"] for c in after.json["contacts"]] == [contact_id]


def test_a_withdrawal_and_an_import_count_as_changes(app, admin_api, import_worker) -> None:
    contact_id = _create(admin_api, "anna@kund.se")
    other = _create(admin_api, "bo@kund.se")
    _stamp(
        app,
        {contact_id: datetime(2026, 1, 1, tzinfo=UTC), other: datetime(2026, 1, 1, tzinfo=UTC)},
    )
    since = "2026-02-01T00:00:00Z"
    admin_api.post(
        f"/api/v1/contacts/{contact_id}/withdrawals",
        json={"received_via": "phone", "recorded_by": "crm-user-7"},
    )
    # An import that grants bo a basis only (its row unchanged otherwise).
    imported = admin_api.client.post(
        "/api/v1/imports",
        data={
            "basis": "customer",
            "source": "crm-export",
            "file": (__import__("io").BytesIO(b"email\nbo@kund.se\n"), "contacts.csv"),
        },
        headers=admin_api.headers,
        content_type="multipart/form-data",
    )
    assert imported.status_code == 202, imported.json
    finish_imports()
    changed = admin_api.get("/api/v1/contacts", query_string={"updated_after": since})
    assert sorted(c["id"] for c in changed.json["contacts"]) == sorted([contact_id, other])


def test_external_ids_count_as_a_change_and_setting_them_again_does_not(app, admin_api) -> None:
    contact_id = _create(admin_api, "anna@kund.se", external_ids={"hubspot": "1"})
    _stamp(app, {contact_id: datetime(2026, 1, 1, tzinfo=UTC)})
    since = "2026-02-01T00:00:00Z"
    admin_api.post(
        "/api/v1/contacts", json={"email": "anna@kund.se", "external_ids": {"hubspot": "1"}}
    )
    unchanged = admin_api.get("/api/v1/contacts", query_string={"updated_after": since})
    assert unchanged.json["contacts"] == []
    admin_api.post(
        "/api/v1/contacts", json={"email": "anna@kund.se", "external_ids": {"hubspot": "2"}}
    )
    changed = admin_api.get("/api/v1/contacts", query_string={"updated_after": since})
    assert [c["external_ids"] for c in changed.json["contacts"]] == [{"hubspot": "2"}]


def test_a_page_costs_the_same_number_of_queries_for_3_or_60_contacts(app, admin_api) -> None:
    from extensions import db

    def queries_for_page(limit: int) -> int:
        statements: list[str] = []

        def note(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
            statements.append(statement)

        with app.app_context():
            sa.event.listen(db.engine, "before_cursor_execute", note)
        try:
            page = admin_api.get(
                "/api/v1/contacts", query_string={"updated_after": EPOCH, "limit": limit}
            )
        finally:
            with app.app_context():
                sa.event.remove(db.engine, "before_cursor_execute", note)
        assert len(page.json["contacts"]) == limit
        return len(statements)

    for n in range(60):
        _create(
            admin_api,
            f"c{n}@kund.se",
            external_ids={"hubspot": str(n)},
            company={"name": f"Firma {n % 7}", "external_ids": {"hubspot": f"co{n % 7}"}},
        )
    assert queries_for_page(3) == queries_for_page(60)


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({"updated_after": "yesterday"}, 422, "updated_after"),
        ({"updated_after": "2026-12-06T09:00:00"}, 422, "updated_after"),
        ({"updated_after": "2026-12-06"}, 422, "updated_after"),
        ({"updated_after": "0001-01-01T00:00:00Z"}, 422, "updated_after"),
        ({"updated_after": EPOCH, "limit": 0}, 422, "limit"),
        ({"updated_after": EPOCH, "limit": 1001}, 422, "limit"),
        ({"updated_after": EPOCH, "after": "not-a-cursor"}, 400, "after"),
        ({"updated_after": EPOCH, "after": "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAuMQ"}, 400, "after"),
        ({"updated_after": EPOCH, "after": "MTIzLjA"}, 400, "after"),
        ({"updated_after": EPOCH, "after": "x" * 65}, 422, "after"),
    ],
)
def test_bad_times_limits_and_cursors_are_refused_clearly(app, admin_api, query, status, field):
    before = count_rows(app)
    refused = admin_api.get("/api/v1/contacts", query_string=query)
    assert refused.status_code == status, refused.json
    assert field in refused.json["error"]["fields"]
    if field == "updated_after":
        assert "RFC 3339" in str(refused.json["error"]["fields"]) or "year" in str(
            refused.json["error"]["fields"]
        )
    assert count_rows(app) == before


def test_a_time_with_an_offset_is_taken_as_that_instant(app, admin_api) -> None:
    contact_id = _create(admin_api, "anna@kund.se")
    _stamp(app, {contact_id: datetime(2026, 3, 1, 11, 30, tzinfo=UTC)})
    # 12:00+01:00 is 11:00 UTC: the contact changed after it.
    found = admin_api.get(
        "/api/v1/contacts", query_string={"updated_after": "2026-03-01T12:00:00+01:00"}
    )
    assert [c["id"] for c in found.json["contacts"]] == [contact_id]
    later = admin_api.get(
        "/api/v1/contacts", query_string={"updated_after": "2026-03-01T12:00:00Z"}
    )
    assert later.json["contacts"] == []


def test_every_page_read_is_audited_once(app, admin_api) -> None:
    from crm.models import AuditEntry
    from extensions import db

    for n in range(3):
        _create(admin_api, f"c{n}@kund.se")
    admin_api.get("/api/v1/contacts", query_string={"updated_after": EPOCH})
    with app.app_context():
        entries = db.session.scalars(
            sa.select(AuditEntry.detail).where(AuditEntry.action == "contact.list_changed")
        ).all()
    assert entries == ["3 contacts"]


def test_the_bulk_read_is_for_the_roles_that_sync_contacts(app, api_as) -> None:
    """R25: every role may look a contact up; reading every contact changed
    since a time is a bulk read, for marketing and admin (contacts.sync)."""
    admin = api_as("admin")
    _create(admin, "anna@kund.se", external_ids={"hubspot": "1"})
    for role in ("sales", "dpo"):
        caller = api_as(role)
        refused = caller.get("/api/v1/contacts", query_string={"updated_after": EPOCH})
        assert refused.status_code == 403, role
        assert refused.json["error"]["code"] == "forbidden"
        assert caller.get("/api/v1/contacts?external_id=hubspot:1").status_code == 200, role
    listed = api_as("marketing").get("/api/v1/contacts", query_string={"updated_after": EPOCH})
    assert listed.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        {"external_id": "hubspot:" + "9" * 300},
        {"external_id": "hubspot:%00"},
        {"external_id": "hubspot:\u00a01"},
        {"external_id": "hubspot:" + "é" * 200},
        {"updated_after": "2026-13-45T99:99:99Z"},
        {"updated_after": "9" * 40},
        {"updated_after": EPOCH, "after": "OTk5OTk5OTk5OTk5OTk5OTkuMjE0NzQ4MzY0OA"},
        {"updated_after": EPOCH, "after": "MC4w"},
        {"updated_after": EPOCH, "after": "=="},
        {"updated_after": EPOCH, "after": "%ff%fe"},
        {"updated_after": EPOCH, "limit": "99999999999999999999"},
    ],
)
def test_hostile_values_in_each_read_are_answered_4xx_or_200(app, admin_api, query) -> None:
    """The fuzz table (tests/reliability) sends one query with every parameter;
    here each read gets odd values of its own parameters."""
    response = admin_api.get("/api/v1/contacts", query_string=query)
    assert response.status_code in (200, 400, 404, 422), (query, response.status_code)
    if response.status_code != 200:
        assert set(response.json["error"]) >= {"code", "message"}


def test_a_cursor_before_updated_after_starts_at_updated_after(app, admin_api) -> None:
    ids = [_create(admin_api, f"c{n}@kund.se") for n in range(4)]
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    _stamp(app, {contact_id: base + timedelta(days=n) for n, contact_id in enumerate(ids)})
    first = admin_api.get("/api/v1/contacts", query_string={"updated_after": EPOCH, "limit": 1})
    assert [c["id"] for c in first.json["contacts"]] == ids[:1]
    # The same cursor with a later time: the time is the stronger bound.
    later = admin_api.get(
        "/api/v1/contacts",
        query_string={
            "updated_after": (base + timedelta(days=2)).isoformat(),
            "after": first.json["next_cursor"],
        },
    )
    assert [c["id"] for c in later.json["contacts"]] == ids[3:]
    # And a time before the cursor: the cursor is.
    resumed = admin_api.get(
        "/api/v1/contacts",
        query_string={"updated_after": EPOCH, "after": first.json["next_cursor"]},
    )
    assert [c["id"] for c in resumed.json["contacts"]] == ids[1:]


def test_a_change_of_the_contact_s_company_counts_as_a_change(app, admin_api) -> None:
    """Contact A's company is renamed through contact B: A reads differently,
    so the changed-since read lists A (and B)."""
    company = {"name": "Kund AB", "external_ids": {"hubspot": "77"}}
    a = _create(admin_api, "anna@kund.se", company=company)
    b = _create(admin_api, "bo@kund.se", company=company)
    _stamp(app, {a: datetime(2026, 1, 1, tzinfo=UTC), b: datetime(2026, 1, 1, tzinfo=UTC)})
    since = "2026-02-01T00:00:00Z"
    _create(admin_api, "bo@kund.se", company={**company, "name": "Kund Group AB"})
    changed = admin_api.get("/api/v1/contacts", query_string={"updated_after": since})
    assert {c["id"]: c["company"]["name"] for c in changed.json["contacts"]} == {
        a: "Kund Group AB",
        b: "Kund Group AB",
    }
