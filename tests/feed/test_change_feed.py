"""The change feed as a CRM reads it (GET /api/v1/changes): every item type for
its cause, tombstones without personal data, a cursor that resumes exactly,
its bad input, and the feed's own retention."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from crm import external_ids, retention
from crm.models import Change, ChangeFeedHorizon
from extensions import db
from kernel.timestamps import utcnow
from tests.conftest import finish_imports
from tests.crm.retention_helpers import add_contact, day


@pytest.fixture(autouse=True)
def _import_worker(import_worker: Any) -> None:
    """The API and the staff page hand their imports to a worker."""


CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
EMAIL, NAME = "anna.andersson@kund.se", "Anna Andersson"


def create(api, email=EMAIL, name=NAME, **extra):  # type: ignore[no-untyped-def]
    body = {"email": email, "name": name, "country": "SE", "language": "sv", **extra}
    response = api.post("/api/v1/contacts", json=body)
    assert response.status_code in (200, 201), response.json  # 200: known, updated
    return response.json["id"]


def page(api, after=None, limit=100):  # type: ignore[no-untyped-def]
    settle(api.client.application)
    query = f"/api/v1/changes?limit={limit}" + (f"&after={after}" if after else "")
    return api.get(query)


def settle(app) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: wait until no writing transaction of this database older than
    the newest item runs, since the feed serves an item only then
    (consent.feed; a request's own after-commit work may still be running).
    Immediate on SQLite."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return
        for _ in range(300):
            from consent.feed import _SETTLED

            pending = db.session.scalar(
                sa.select(sa.func.count()).select_from(Change).where(Change.txid >= _SETTLED)
            )
            db.session.rollback()
            if not pending:
                return
            time.sleep(0.1)
        raise AssertionError("a transaction held the feed back for 30 s")


def read_all(api, after=None, limit=100):  # type: ignore[no-untyped-def]
    """Every item after ``after``, page by page; and the cursor to continue."""
    settle(api.client.application)
    items, cursor = [], after
    while True:
        response = page(api, cursor, limit)
        assert response.status_code == 200, response.json
        items.extend(response.json["items"])
        cursor = response.json["next_cursor"]
        if not response.json["has_more"]:
            return items, cursor


def of_type(items: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [i for i in items if i["type"] == type_]


def set_external_ids(app, contact_id: int, ids: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        external_ids.set_for_contact(contact_id, ids)
        db.session.commit()


# Every item type for its cause -----------------------------------------------------------


def test_a_new_contact_is_created_and_its_decisions_are_told_with_the_decisions(
    app, api_as
) -> None:
    marketing = api_as("marketing")
    contact_id = create(marketing, basis=CUSTOMER, company={"name": "Kund AB"})
    items, _ = read_all(marketing)
    created = of_type(items, "contact.created")
    assert [i["contact_id"] for i in created] == [contact_id]
    assert created[0]["contact"]["email"] == EMAIL
    assert created[0]["contact"]["company"]["name"] == "Kund AB"
    assert created[0]["tombstone"] is False
    decided = of_type(items, "contact.decisions_changed")
    assert [i["contact_id"] for i in decided] == [contact_id]
    events = next(
        d for d in decided[0]["decisions"] if d["topic"] == "events" and d["channel"] == "email"
    )
    assert (events["allowed"], events["reason"]) == (True, "customer")


def test_decisions_are_rendered_as_they_are_when_read(app, api_as) -> None:
    """A reader overwrites what it holds: the item carries the current decisions."""
    marketing = api_as("marketing")
    contact_id = create(marketing, basis=CUSTOMER)
    marketing.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    items, _ = read_all(marketing)
    for item in of_type(items, "contact.decisions_changed"):
        assert {d["reason"] for d in item["decisions"]} == {"objection"}


def test_one_decisions_item_per_contact_per_transaction(app, api_as) -> None:
    """An objection writes two ledger events (objected, suppressed) in one
    transaction: the CRM is told once."""
    marketing = api_as("marketing")
    contact_id = create(marketing)
    _, cursor = read_all(marketing)
    marketing.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
    items, _ = read_all(marketing, cursor)
    assert [i["type"] for i in items] == ["contact.decisions_changed"]


def test_rectification_and_an_upsert_are_updates_naming_the_fields(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = create(marketing)
    _, cursor = read_all(marketing)
    assert (
        marketing.patch(f"/api/v1/contacts/{contact_id}", json={"name": "Anna Berg"}).status_code
        == 200
    )
    create(marketing, name="Anna Berg", language="en")  # the same address: an update
    create(marketing, name="Anna Berg", language="en")  # nothing changes: no item
    items, _ = read_all(marketing, cursor)
    updates = of_type(items, "contact.updated")
    assert [u["fields"] for u in updates] == [["name"], ["language"]]
    assert updates[-1]["contact"]["name"] == "Anna Berg"
    assert of_type(items, "contact.decisions_changed") == []  # neither field decides


def test_a_new_address_or_country_is_also_a_decisions_change(app, api_as) -> None:
    """The decision reads the address (suppression) and the country (where
    legitimate interest holds); changing them writes nothing to the ledger."""
    marketing = api_as("marketing")
    contact_id = create(marketing, basis=CUSTOMER)
    _, cursor = read_all(marketing)
    marketing.patch(f"/api/v1/contacts/{contact_id}", json={"country": "US"})
    items, _ = read_all(marketing, cursor)
    assert sorted(i["type"] for i in items) == ["contact.decisions_changed", "contact.updated"]
    assert of_type(items, "contact.updated")[0]["fields"] == ["country"]


def test_an_import_writes_created_and_updated_items_set_based(app, api_as) -> None:
    """Bulk writers write items with multi-row INSERTs, not one statement per contact."""
    marketing = api_as("marketing")
    create(marketing, email="known@kund.se", name="Old Name")
    _, cursor = read_all(marketing)
    rows = "".join(f"row{n}@kund.se;Row {n};SE\n" for n in range(60))
    csv = f"email;name;country\nknown@kund.se;New Name;SE\n{rows}".encode()
    statements: list[str] = []

    def count(conn, cursor_, statement, *args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(
            'INSERT INTO "CHANGE"'
        ) or statement.lstrip().upper().startswith("INSERT INTO CHANGE"):
            statements.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        response = marketing.client.post(
            "/api/v1/imports",
            headers=marketing.headers,
            data={"basis": "customer", "source": "crm", "file": (io.BytesIO(csv), "c.csv")},
        )
        assert response.status_code == 202, response.json
        finish_imports()
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    items, _ = read_all(marketing, cursor, limit=1000)
    assert len(of_type(items, "contact.created")) == 60
    assert [u["fields"] for u in of_type(items, "contact.updated")] == [["name"]]
    assert len(of_type(items, "contact.decisions_changed")) == 61
    # created, updated, decisions: a handful of statements for 61 contacts.
    assert 0 < len(statements) <= 6, statements


def test_erasure_is_a_tombstone_with_external_ids_and_no_personal_data(
    app, api_as, admin_api
) -> None:
    marketing = api_as("marketing")
    contact_id = create(marketing, basis=CUSTOMER, phone="+46 70 111 22 33")
    set_external_ids(app, contact_id, {"hubspot": "1234"})
    assert admin_api.delete(f"/api/v1/contacts/{contact_id}").status_code in (200, 204)
    items, _ = read_all(marketing)
    erased = of_type(items, "contact.erased")
    assert [(i["contact_id"], i["external_ids"], i["tombstone"]) for i in erased] == [
        (contact_id, {"hubspot": "1234"}, True)
    ]
    # Earlier items of the contact are tombstones now too: nothing personal anywhere.
    text = json.dumps(items)
    for personal in (EMAIL, "Anna", "Andersson", "+46 70 111 22 33", "kund.se"):
        assert personal not in text
    mine = [i for i in items if i["contact_id"] == contact_id]
    assert {i["type"] for i in mine} >= {"contact.created", "contact.erased"}
    assert all(i["tombstone"] and i["external_ids"] == {"hubspot": "1234"} for i in mine)
    assert all("contact" not in i and "decisions" not in i for i in mine)


def _purge_setup(app) -> int:  # type: ignore[no-untyped-def]
    """A contact seven years gone, held by two CRMs: a run on 2026-01-01 purges it."""
    with app.app_context():
        gone = add_contact(
            "greta.borta@kund.se", created="2010-01-01", last_interaction="2018-02-02"
        )
        db.session.commit()
        external_ids.set_for_contact(gone.id, {"hubspot": "42", "salesforce": "003A"})
        db.session.commit()
        return gone.id


def test_a_purge_is_a_tombstone_naming_the_rule(app, admin_api) -> None:
    gone = _purge_setup(app)
    with app.app_context():
        retention.run(day("2026-01-01"), started_by="test")
    items, _ = read_all(admin_api)
    purged = of_type(items, "contact.purged")
    assert [(i["contact_id"], i["rule"], i["external_ids"]) for i in purged] == [
        (gone, "crm-contacts", {"hubspot": "42", "salesforce": "003A"})
    ]
    text = json.dumps(items)
    assert "greta" not in text.lower() and "borta" not in text.lower()


def test_activities_anonymised_are_told_per_contact_with_rule_and_count(app, admin_api) -> None:
    with app.app_context():
        stays = add_contact(
            "kvar@kund.se",
            created="2010-01-01",
            last_interaction="2018-06-01",
            activities=[("support_case", "2017-03-03T10:00:00", "Router broken")],
        ).id
        db.session.commit()
        # support-cases is due 2025-06-02, the contact itself on 2026-01-01.
        retention.run(day("2025-07-01"), started_by="test")
    items, _ = read_all(admin_api)
    told = of_type(items, "activities.purged")
    assert [(i["contact_id"], i["rule"], i["action"], i["count"]) for i in told] == [
        (stays, "support-cases", "anonymised", 1)
    ]
    assert told[0]["tombstone"] is False
    assert "router" not in json.dumps(items).lower()


def test_activities_deleted_by_an_activity_rule_are_told(app, admin_api) -> None:
    policy = retention.RetentionPolicy.from_mapping(
        {
            "retention": {
                "rules": [
                    {
                        "name": "old-calls",
                        "category": "activity",
                        "kinds": ["call"],
                        "years": 2,
                        "counts_from": "record_date",
                    }
                ]
            }
        }
    )
    with app.app_context():
        contact = add_contact(
            "ringd@kund.se",
            last_interaction="2026-02-02",
            activities=[
                ("call", "2020-01-01T10:00:00", "one"),
                ("call", "2020-02-01T10:00:00", "two"),
                ("call", "2026-02-01T10:00:00", "recent"),
            ],
        )
        db.session.commit()
        contact_id = contact.id
        retention.run(day("2026-06-01"), started_by="test", policy=policy)
    items, _ = read_all(admin_api)
    told = of_type(items, "activities.purged")
    assert [(i["contact_id"], i["rule"], i["action"], i["count"]) for i in told] == [
        (contact_id, "old-calls", "deleted", 2)
    ]


def test_an_undeliverable_event_in_the_ledger_is_an_item(app, admin_api) -> None:
    contact_id = create(admin_api, basis=CUSTOMER)
    _, cursor = read_all(admin_api)
    with app.app_context():
        from consent.ledger import record
        from consent.models import EventKind
        from crm.models import Contact
        from kernel.access import SYSTEM_ACTOR

        record(
            db.session.get(Contact, contact_id),
            EventKind.UNDELIVERABLE,
            actor=SYSTEM_ACTOR,
            source="bounce",
        )
        db.session.commit()
    items, _ = read_all(admin_api, cursor)
    assert sorted(i["type"] for i in items) == [
        "contact.decisions_changed",
        "contact.undeliverable",
    ]
    decided = of_type(items, "contact.decisions_changed")[0]
    assert {d["reason"] for d in decided["decisions"] if d["channel"] == "email"} == {
        "undeliverable"
    }


def test_items_are_announced_inside_the_transaction(app, admin_api) -> None:
    """kernel.signals.change_recorded carries the new ids while they are uncommitted,
    so that webhook deliveries can be written with them."""
    from kernel.signals import change_recorded

    seen: list[tuple[int, ...]] = []

    def receiver(sender: Any, *, change_ids: tuple[int, ...], **_: Any) -> None:
        visible = db.session.scalars(sa.select(Change.id).where(Change.id.in_(change_ids)))
        assert sorted(visible) == sorted(change_ids)
        seen.append(change_ids)

    change_recorded.connect(receiver)
    try:
        create(admin_api)
    finally:
        change_recorded.disconnect(receiver)
    items, _ = read_all(admin_api)
    assert sorted(i for ids in seen for i in ids) == sorted(
        int(i["id"].removeprefix("chg_")) for i in items
    )


# The cursor -----------------------------------------------------------------------------


def test_the_cursor_resumes_with_nothing_missed_or_repeated(app, api_as) -> None:
    marketing = api_as("marketing")
    for n in range(7):
        create(marketing, email=f"c{n}@kund.se", basis=CUSTOMER)
    whole, _ = read_all(marketing, limit=1000)
    in_pages, cursor = read_all(marketing, limit=3)
    assert [i["id"] for i in in_pages] == [i["id"] for i in whole]
    assert len({i["id"] for i in whole}) == len(whole) == 14
    # A reader that stops and comes back later gets exactly what came after.
    empty = page(marketing, cursor).json
    assert (empty["items"], empty["next_cursor"], empty["has_more"]) == ([], cursor, False)
    later = create(marketing, email="later@kund.se", basis=CUSTOMER)
    items, _ = read_all(marketing, cursor)
    assert [(i["type"], i["contact_id"]) for i in items] == [
        ("contact.created", later),
        ("contact.decisions_changed", later),
    ]


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense",
        "c1.",
        "c1.!!!!",
        "c1.1",
        "c1.01.2",
        "c1.-1.2",
        "c1.1.0",
        "c1.1.2.3",
        "c2.1.2",
        "c1." + "9" * 19 + ".1",
        "1:2",
    ],
)
def test_a_malformed_cursor_is_a_400(app, api_as, cursor) -> None:
    response = page(api_as("marketing"), cursor)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_cursor"


def test_the_documented_cursor_pattern_is_the_one_checked(app) -> None:
    from consent.feed import CURSOR_PATTERN, encode_cursor
    from consent.schemas import FEED_CURSOR_PATTERN

    assert FEED_CURSOR_PATTERN == CURSOR_PATTERN
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    parameters = spec["paths"]["/api/v1/changes"]["get"]["parameters"]
    after = next(p for p in parameters if p["name"] == "after")
    assert after["schema"]["pattern"] == CURSOR_PATTERN
    assert re.fullmatch(CURSOR_PATTERN, encode_cursor(2**40, 10**17))


@pytest.mark.parametrize("limit", ["1001", "0", "-1", "many"])
def test_a_limit_out_of_bounds_is_a_422(app, api_as, limit) -> None:
    response = api_as("marketing").get(f"/api/v1/changes?limit={limit}")
    assert response.status_code == 422


def test_the_limit_bounds_the_page_and_defaults_to_100(app, api_as) -> None:
    marketing = api_as("marketing")
    with app.app_context():
        from crm.changes import DECISIONS_CHANGED, record

        record(DECISIONS_CHANGED, list(range(1, 1102)))
        db.session.commit()
    settle(app)
    assert len(marketing.get("/api/v1/changes").json["items"]) == 100
    full = page(marketing, limit=1000).json
    assert (len(full["items"]), full["has_more"]) == (1000, True)


# The feed's own retention ---------------------------------------------------------------


def _age_items(app, days: int) -> None:  # type: ignore[no-untyped-def]
    with app.app_context():
        db.session.execute(sa.update(Change).values(occurred_at=utcnow() - timedelta(days=days)))
        db.session.commit()


def test_pruning_drops_old_items_and_an_older_cursor_gets_410(app, api_as) -> None:
    marketing = api_as("marketing")
    create(marketing, email="first@kund.se", basis=CUSTOMER)
    first_page = page(marketing, limit=1).json["next_cursor"]  # a reader that stopped early
    _, caught_up = read_all(marketing)
    _age_items(app, 91)
    fresh = create(marketing, email="fresh@kund.se")
    with app.app_context():
        assert retention.run_daily() is not None  # the daily run prunes first
        assert db.session.get(ChangeFeedHorizon, "change_feed") is not None
    # A reader that stopped in the pruned stretch is told to resync, and how.
    gone = page(marketing, first_page)
    assert gone.status_code == 410
    assert gone.json["error"]["code"] == "cursor_expired"
    assert "updated_after" in gone.json["error"]["message"]
    # A reader that had read everything pruned resumes as if nothing happened.
    items, _ = read_all(marketing, caught_up)
    assert {i["contact_id"] for i in items} == {fresh}
    # And the feed read from its start begins after the horizon.
    whole, _ = read_all(marketing)
    assert {i["contact_id"] for i in whole} == {fresh}


def test_pruning_keeps_items_younger_than_the_configured_days(app, api_as) -> None:
    marketing = api_as("marketing")
    create(marketing)
    _age_items(app, 30)
    app.config["CHANGE_FEED_KEEP_DAYS"] = 20
    try:
        with app.app_context():
            from crm.changes import prune

            assert prune() >= 1
    finally:
        del app.config["CHANGE_FEED_KEEP_DAYS"]
    create(marketing, email="other@kund.se")
    _age_items(app, 30)
    with app.app_context():
        from crm.changes import prune

        assert prune() == 0  # 90 days by default
    assert [i["contact_id"] for i in read_all(marketing)[0]][:1] != []


# Who is told: the retention preview -------------------------------------------------------


def test_the_retention_preview_names_the_systems_told(app, admin_api) -> None:
    _purge_setup(app)
    admin_api.post("/api/v1/webhooks", json={"url": "https://crm.kund.example/hooks"})
    # Subscribed to purges, and to something else only: only the first is told.
    admin_api.post(
        "/api/v1/webhooks",
        json={"url": "https://lager.kund.example/hooks", "events": ["activities.purged"]},
    )
    admin_api.post(
        "/api/v1/webhooks",
        json={"url": "https://mejl.kund.example/hooks", "events": ["contact.created"]},
    )
    preview = admin_api.get("/api/v1/retention/preview?as_of=2026-01-01").json
    assert preview["told"] == {"hubspot": 1, "salesforce": 1}
    assert preview["receivers"] == ["webhook crm.kund.example", "webhook lager.kund.example"]
    contacts = next(r for r in preview["rules"] if r["rule"]["name"] == "crm-contacts")
    assert contacts["told"] == {"hubspot": 1, "salesforce": 1}
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["retention", "preview", "--as-of", "2026-01-01"])
    assert "hubspot: 1 contacts" in shown.output
    assert "webhook crm.kund.example: every item" in shown.output
    from tests.staff.helpers import client_as

    page_ = client_as(app, "admin").get("/staff/admin/retention?as_of=2026-01-01")
    told = page_.get_data(as_text=True).split('id="told-h"')[1].split("</section>")[0]
    assert "<code>hubspot</code>" in told and "webhook crm.kund.example" in told


def test_a_page_renders_the_same_decisions_as_the_permissions_api(app, api_as) -> None:
    """The feed decides a page of contacts at once (consent.services.decisions_for_contacts);
    each contact's decisions are exactly those GET .../permissions answers."""
    marketing = api_as("marketing")
    ids = [
        create(marketing, email="kund@kund.se", basis=CUSTOMER),
        create(marketing, email="ingen@kund.se"),
        create(marketing, email="nej@kund.se", basis=CUSTOMER),
    ]
    marketing.post(f"/api/v1/contacts/{ids[2]}/objection", json={"received_via": "phone"})
    items, _ = read_all(marketing)
    for contact_id in ids:
        permissions = marketing.get(f"/api/v1/contacts/{contact_id}/permissions").json
        rendered = [
            i for i in of_type(items, "contact.decisions_changed") if i["contact_id"] == contact_id
        ]
        for item in rendered:
            assert item["decisions"] == permissions["decisions"]


def test_new_external_ids_are_an_update(app, api_as) -> None:
    marketing = api_as("marketing")
    contact_id = create(marketing)
    _, cursor = read_all(marketing)
    patched = marketing.patch(
        f"/api/v1/contacts/{contact_id}", json={"external_ids": {"hubspot": "77"}}
    )
    assert patched.status_code == 200, patched.json
    items, _ = read_all(marketing, cursor)
    updates = of_type(items, "contact.updated")
    assert [(u["fields"], u["external_ids"]) for u in updates] == [
        (["external_ids"], {"hubspot": "77"})
    ]


# A company's change is a change of every contact of it -------------------------------------


def _updates_by_contact(items: list[dict[str, Any]]) -> dict[int, list[str]]:
    return {u["contact_id"]: u["fields"] for u in of_type(items, "contact.updated")}


def test_a_company_changed_through_another_contact_is_an_update_of_its_contacts(
    app, api_as
) -> None:
    """Contact B renames the company that A works for (found by its HubSpot
    id): A now renders another company, so A gets an item naming ``company``
    (no decisions item: a name decides nothing); B, new, is told once."""
    marketing = api_as("marketing")
    company = {"name": "Kund AB", "external_ids": {"hubspot": "77"}}
    a = create(marketing, email="a@kund.se", company=company)
    _, cursor = read_all(marketing)
    b = create(marketing, email="b@kund.se", company={**company, "name": "Kund Group AB"})
    items, _ = read_all(marketing, cursor)
    assert _updates_by_contact(items) == {a: ["company"]}
    assert of_type(items, "contact.updated")[0]["contact"]["company"]["name"] == "Kund Group AB"
    assert [i["contact_id"] for i in of_type(items, "contact.created")] == [b]
    assert a not in [i["contact_id"] for i in of_type(items, "contact.decisions_changed")]


def test_a_company_changed_with_a_contact_s_own_change_is_one_item_naming_both(app, api_as) -> None:
    """B's own name and its company's country change in one request: B has one
    item naming both; A one naming the company; the company's country decides
    for a contact without its own, so both are told their decisions too."""
    marketing = api_as("marketing")
    company = {"name": "Kund AB", "org_number": "556000-0001", "country": "SE"}
    a = create(marketing, email="a@kund.se", company=company)
    b = create(marketing, email="b@kund.se", company=company)
    _, cursor = read_all(marketing)
    patched = marketing.patch(
        f"/api/v1/contacts/{b}", json={"name": "Bo Berg", "company": {**company, "country": "NO"}}
    )
    assert patched.status_code == 200, patched.json
    create(marketing, email="a@kund.se", company={**company, "country": "NO"})  # no change
    items, _ = read_all(marketing, cursor)
    assert _updates_by_contact(items) == {a: ["company"], b: ["company", "name"]}
    assert sorted(i["contact_id"] for i in of_type(items, "contact.decisions_changed")) == [a, b]


def test_a_company_s_new_external_ids_are_an_update_of_its_contacts(app, api_as) -> None:
    marketing = api_as("marketing")
    company = {"name": "Kund AB", "org_number": "556000-0001"}
    a = create(marketing, email="a@kund.se", company=company)
    _, cursor = read_all(marketing)
    create(marketing, email="b@kund.se", company={**company, "external_ids": {"hubspot": "9"}})
    items, _ = read_all(marketing, cursor)
    assert _updates_by_contact(items) == {a: ["company"]}


def _import(api, csv: bytes) -> None:  # type: ignore[no-untyped-def]
    response = api.client.post(
        "/api/v1/imports",
        headers=api.headers,
        data={"basis": "customer", "source": "crm", "file": (io.BytesIO(csv), "c.csv")},
    )
    assert response.status_code == 202, response.json
    finish_imports()


def test_an_import_that_renames_a_company_updates_its_other_contacts(app, api_as) -> None:
    """crm.bulk.ensure_companies: a row's org number names a known company
    (a customer already) under a new name; a contact of it that is not in
    the file is told, without a decisions item (a name decides nothing)."""
    marketing = api_as("marketing")
    company = {"name": "Kund AB", "org_number": "556000-0001", "customer_since": "2020-01-01"}
    a = create(marketing, email="a@kund.se", company=company)
    b = create(marketing, email="b@kund.se", company=company)
    _, cursor = read_all(marketing)
    _import(
        marketing, b"email;name;company;org_number\nb@kund.se;Bo Berg;Kund Group AB;556000-0001\n"
    )
    items, _ = read_all(marketing, cursor)
    assert _updates_by_contact(items) == {a: ["company"], b: ["company", "name"]}
    rendered = {u["contact_id"]: u["contact"] for u in of_type(items, "contact.updated")}
    assert rendered[a]["company"]["name"] == "Kund Group AB"
    assert a not in [i["contact_id"] for i in of_type(items, "contact.decisions_changed")]


def test_an_import_that_makes_a_company_a_customer_updates_its_other_contacts(app, api_as) -> None:
    """A customer import's row makes a known company a customer: its other
    contacts read a new customer relationship and may be decided otherwise."""
    marketing = api_as("marketing")
    a = create(
        marketing, email="a@kund.se", company={"name": "Kund AB", "org_number": "556000-0001"}
    )
    _, cursor = read_all(marketing)
    _import(marketing, b"email;company;org_number\nc@kund.se;Kund AB;556000-0001\n")
    items, _ = read_all(marketing, cursor)
    assert _updates_by_contact(items) == {a: ["company"]}
    assert a in [i["contact_id"] for i in of_type(items, "contact.decisions_changed")]
