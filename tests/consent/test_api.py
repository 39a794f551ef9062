"""The permission API as a CRM or a script uses it."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from tests.conftest import count_rows, known_since

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}


def create(api, email="anna@kund.se", **extra):  # type: ignore[no-untyped-def]
    body = {"email": email, "name": "Anna", "country": "SE", "language": "sv", **extra}
    return api.post("/api/v1/contacts", json=body)


def permission(api, contact_id, topic="events", channel="email"):  # type: ignore[no-untyped-def]
    decisions = api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]
    return next(d for d in decisions if d["topic"] == topic and d["channel"] == channel)


def test_customer_is_allowed_then_objection_blocks_with_its_time(app, api_as) -> None:
    marketing, sales = api_as("marketing"), api_as("sales")
    created = create(
        marketing, basis=CUSTOMER, company={"name": "Kund AB", "org_number": "556000-1111"}
    )
    assert created.status_code == 201
    contact_id = created.json["id"]

    before = permission(sales, contact_id)
    assert before["allowed"] is True
    assert before["basis"] == "legitimate_interest"
    assert before["reason"] == "customer"

    objection = sales.post(
        f"/api/v1/contacts/{contact_id}/objection",
        json={"received_via": "phone", "note": "Rang us"},
    )
    assert objection.status_code == 201

    after = permission(sales, contact_id)
    assert after["allowed"] is False
    assert after["reason"] == "objection"
    assert after["since"] == objection.json["occurred_at"]
    assert after["basis"] is None

    events = sales.get(f"/api/v1/contacts/{contact_id}/events").json
    kinds = [(e["kind"], e["recorded_by"]) for e in events]
    assert any(k == "basis_granted" and r.startswith("token:marketing") for k, r in kinds)
    assert any(k == "objected" and r.startswith("token:sales") for k, r in kinds)
    objected = next(e for e in events if e["kind"] == "objected")
    assert objected["received_via"] == "phone"


def test_an_objection_answers_with_the_ledger_entry_it_wrote(app, api_as) -> None:
    """The 201 body is the event exactly as the ledger lists it afterwards
    (the objection serialises without marshmallow; the ledger list with it)."""
    sales = api_as("sales")
    contact_id = create(api_as("marketing"), basis=CUSTOMER).json["id"]
    for body in (
        {"received_via": "letter", "channel": "email", "note": "Skriv inte mer"},
        {"received_via": "phone", "channel": "all"},
    ):
        objection = sales.post(f"/api/v1/contacts/{contact_id}/objection", json=body)
        assert objection.status_code == 201
        events = sales.get(f"/api/v1/contacts/{contact_id}/events").json
        assert objection.json in events
        assert objection.json["kind"] == "objected"
        assert objection.json["channel"] == ("*" if body["channel"] == "all" else "email")


def test_the_json_of_an_event_is_what_its_schema_dumps(app_ctx) -> None:
    """Objections answer with ``ConsentEvent.as_json``; the OpenAPI document
    describes ``ConsentEventSchema``. They must not drift apart."""
    from consent.evidence import Evidence
    from consent.ledger import record
    from consent.models import EventKind
    from consent.schemas import ConsentEventSchema
    from crm.models import Contact
    from extensions import db
    from kernel.access import SYSTEM_ACTOR

    contact = Contact(email="eva@kund.se")
    db.session.add(contact)
    db.session.flush()
    evidence = Evidence(
        ip_address="192.0.2.1",
        user_agent="Firefox",
        policy_version="2.0",
        wording_hash="a" * 64,
        form_id="signup",
        page_url="https://kund.se/nyhetsbrev",
        language="sv",
    )
    full = record(contact, EventKind.CONFIRMED, actor=SYSTEM_ACTOR, source="form",
                  topic="newsletter", channel="email", basis="consent", evidence=evidence,
                  source_ref="form-1", received_via="web", note="hej")  # fmt: skip
    bare = record(contact, EventKind.OBJECTED, actor=SYSTEM_ACTOR, source="staff")
    db.session.commit()
    for event in (full, bare):
        assert event.as_json() == ConsentEventSchema().dump(event)
    assert full.as_json()["ip_address"] == "192.0.2.1"
    assert full.as_json()["occurred_at"].endswith("+00:00")


def test_update_by_email_returns_200_and_keeps_one_contact(app, admin_api) -> None:
    first = create(admin_api)
    second = create(admin_api, email="ANNA@Kund.se", name="Anna Andersson")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json["id"] == first.json["id"]
    assert second.json["email"] == "anna@kund.se"
    assert second.json["name"] == "Anna Andersson"


def test_repeated_sync_of_the_same_basis_adds_nothing_to_the_ledger(app, admin_api) -> None:
    contact_id = create(admin_api, basis=CUSTOMER).json["id"]
    create(admin_api, basis=CUSTOMER)
    events = admin_api.get(f"/api/v1/contacts/{contact_id}/events").json
    assert [e["kind"] for e in events] == ["basis_granted"]


def test_consent_with_evidence_is_allowed_and_shows_its_evidence(app, admin_api) -> None:
    basis = {
        "type": "consent",
        "source": "webinar-2026-10",
        # Swedish and events: counts at once, as a ticked box would (R8).
        "topics": ["events"],
        "evidence": {
            "obtained_at": "2026-10-01T10:00:00+00:00",
            "policy_version": "1.0",
            "wording": "Yes please",
            "form_id": "webinar",
        },
    }
    contact_id = create(admin_api, basis=basis).json["id"]
    decision = permission(admin_api, contact_id, topic="events")
    assert (decision["allowed"], decision["basis"], decision["reason"]) == (
        True,
        "consent",
        "consent",
    )
    assert decision["since"].startswith("2026-10-01T10:00:00")
    event = admin_api.get(f"/api/v1/contacts/{contact_id}/events").json[0]
    assert event["id"] == decision["event_id"]
    assert (
        event["policy_version"] == "1.0"
        and event["form_id"] == "webinar"
        and len(event["wording_hash"]) == 64
    )


def test_consent_without_evidence_is_refused_and_stores_nothing(app, admin_api) -> None:
    before = count_rows(app)
    response = create(admin_api, basis={"type": "consent", "source": "x", "topics": ["newsletter"]})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "missing_evidence"
    assert count_rows(app) == before


def test_legitimate_interest_needs_its_kind(app, admin_api) -> None:
    response = create(admin_api, basis={"type": "legitimate_interest", "source": "x"})
    assert response.status_code == 422
    assert "kind" in response.json["error"]["fields"]["basis"]


def test_suppressed_address_is_stored_but_never_allowed_on_any_path(
    app, admin_api, runner_for
) -> None:
    first = create(admin_api, email="gone@kund.se", basis=CUSTOMER)
    admin_api.post(
        f"/api/v1/contacts/{first.json['id']}/objection", json={"received_via": "letter"}
    )
    # Simulate what erasure leaves: the contact gone, only the suppression hash.
    with app.app_context():
        from crm.models import Contact
        from extensions import db

        db.session.execute(sa.delete(Contact))
        db.session.commit()
    again = create(admin_api, email="Gone@Kund.se", basis=CUSTOMER, company={"name": "Kund AB"})
    assert again.status_code == 201
    contact_id = again.json["id"]

    for decision in admin_api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]:
        assert decision["allowed"] is False and decision["reason"] == "suppressed"
    batch = admin_api.post(
        "/api/v1/permissions/check", json={"emails": ["gone@kund.se"], "topic": "events"}
    ).json
    assert batch["decisions"][0]["reason"] == "suppressed"
    cli = runner_for(app).invoke(
        args=["permissions", "check", "gone@kund.se", "--topic", "events", "--json"]
    )
    assert '"reason": "suppressed"' in cli.output
    events = admin_api.get(f"/api/v1/contacts/{contact_id}/events").json
    assert events[0]["kind"] == "created_while_suppressed"


def test_batch_check_answers_ten_thousand_addresses_in_few_statements(app, admin_api) -> None:
    for i in range(5):
        create(admin_api, email=f"known{i}@kund.se", basis=CUSTOMER)
    emails = (
        [f"known{i}@kund.se" for i in range(5)]
        + [f"stranger{i}@example.com" for i in range(9_994)]
        + ["not an address"]
    )
    statements: list[str] = []
    with app.app_context():
        from extensions import db

        def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
            statements.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", count)
        try:
            response = admin_api.post(
                "/api/v1/permissions/check", json={"emails": emails, "topic": "events"}
            )
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", count)
    assert response.status_code == 200
    decisions = response.json["decisions"]
    assert len(decisions) == 10_000
    assert [d["allowed"] for d in decisions[:5]] == [True] * 5
    assert {d["reason"] for d in decisions[5:]} == {"unknown_contact"}
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # token lookup, contacts, projection, suppression
    assert len(reads) <= 4, reads


def test_batch_over_ten_thousand_is_refused(app, admin_api) -> None:
    response = admin_api.post(
        "/api/v1/permissions/check", json={"emails": ["a@b.se"] * 10_001, "topic": "events"}
    )
    assert response.status_code == 422
    assert "emails" in response.json["error"]["fields"]


def test_as_of_lets_an_auditor_ask_about_another_date(app, admin_api) -> None:
    company = {
        "name": "Gammal AB",
        "customer_since": "2020-01-01",
        "relationship_ended_at": "2024-01-01",
    }
    contact_id = create(admin_api, basis=CUSTOMER, company=company).json["id"]
    now = permission(admin_api, contact_id)
    assert now["reason"] == "no_basis"
    then = admin_api.get(
        f"/api/v1/contacts/{contact_id}/permissions?at=2023-06-01T00:00:00%2B00:00"
    ).json["decisions"]
    assert (
        next(d for d in then if d["topic"] == "events" and d["channel"] == "email")["reason"]
        == "customer"
    )


def test_rectify_changes_the_data_and_audits_it(app, admin_api) -> None:
    contact_id = create(admin_api).json["id"]
    response = admin_api.patch(
        f"/api/v1/contacts/{contact_id}", json={"name": "Anna B", "country": "no"}
    )
    assert response.status_code == 200
    assert (response.json["name"], response.json["country"]) == ("Anna B", "NO")
    with app.app_context():
        from crm.models import AuditEntry
        from extensions import db

        actions = db.session.scalars(
            sa.select(AuditEntry.action).where(AuditEntry.contact_id == contact_id)
        ).all()
    assert "contact.rectify" in actions


def test_find_by_email_and_unknown_id(app, api_as) -> None:
    admin, sales = api_as("admin"), api_as("sales")
    contact_id = create(admin).json["id"]
    assert sales.get("/api/v1/contacts?email=ANNA@kund.se").json["id"] == contact_id
    missing = sales.get("/api/v1/contacts/99999")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "contact_not_found"


def test_activities_move_last_interaction_except_marketing_email(app, api_as) -> None:
    admin, sales = api_as("admin"), api_as("sales")
    contact_id = create(admin).json["id"]
    # Known since before the activities below (X16: earlier ones would not count).
    known_since(app, contact_id, "2025-01-01T00:00:00")
    call = sales.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "call", "occurred_at": "2026-01-10T09:00:00+01:00", "note": "Talked"},
    )
    assert call.status_code == 201
    sales.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "marketing_email", "occurred_at": "2026-02-10T09:00:00+00:00"},
    )
    sales.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "meeting", "occurred_at": "2025-05-10T09:00:00+00:00"},
    )
    contact = sales.get(f"/api/v1/contacts/{contact_id}").json
    assert contact["last_interaction_at"].startswith("2026-01-10T08:00:00")
    assert len(sales.get(f"/api/v1/contacts/{contact_id}/activities").json) == 3


def test_future_activity_is_refused(app, admin_api) -> None:
    contact_id = create(admin_api).json["id"]
    response = admin_api.post(
        f"/api/v1/contacts/{contact_id}/activities",
        json={"kind": "call", "occurred_at": f"{datetime.now(UTC).year + 1}-01-01T00:00:00+00:00"},
    )
    assert response.status_code == 422


def test_openapi_document_lists_the_contract(client) -> None:
    spec = client.get("/api/v1/openapi.json").json
    for path in [
        "/api/v1/contacts",
        "/api/v1/contacts/{contact_id}",
        "/api/v1/contacts/{contact_id}/permissions",
        "/api/v1/permissions/check",
        "/api/v1/contacts/{contact_id}/events",
        "/api/v1/contacts/{contact_id}/activities",
        "/api/v1/contacts/{contact_id}/objection",
    ]:
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_healthz_reports_database_and_broker(client) -> None:
    """No retention run yet and no scheduler ever ran: up (200), but degraded."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {
        "status": "degraded",
        "database": "ok",
        "broker": "ok",
        "retention": "never_run",
        "outbox": "ok",
    }


def test_a_permission_check_commits_each_statement_and_stores_its_audit_entry(app, api_as) -> None:
    """The check runs without a transaction of its own (two round trips fewer on
    PostgreSQL): every statement it sends is autocommitted, and its audit
    entry (R25) is stored by the time it answers."""
    from crm.models import AuditEntry
    from extensions import db

    marketing = api_as("marketing")
    create(marketing, basis=CUSTOMER)
    seen: list[tuple[str, object]] = []

    def note(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        seen.append(
            (statement.split()[0].upper(), conn.get_execution_options().get("isolation_level"))
        )

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        answer = marketing.post(
            "/api/v1/permissions/check", json={"emails": ["anna@kund.se"], "topic": "events"}
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert answer.status_code == 200
    assert answer.json["decisions"][0]["allowed"] is True
    # PostgreSQL: the token, the audit INSERT and the standings in one statement
    # (WITH ... INSERT ... SELECT); SQLite: SELECTs and the INSERT.
    assert {kind for kind, _ in seen} >= (
        {"WITH"} if engine.dialect.name == "postgresql" else {"SELECT", "INSERT"}
    )
    assert {level for _, level in seen} == {"AUTOCOMMIT"}, seen
    with app.app_context():
        actions = db.session.scalars(sa.select(AuditEntry.action)).all()
        db.session.remove()
    assert "permissions.check" in actions


def test_after_a_permission_check_its_connection_has_transactions_again(app, api_as) -> None:
    """The connection goes back to the pool with its isolation level restored:
    the next user of it can still roll back."""
    from crm.models import AuditEntry
    from extensions import db
    from kernel.timestamps import utcnow

    marketing = api_as("marketing")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()  # one connection in the pool from here on
        engine = db.engine
    used: list[int] = []

    def note(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        used.append(id(conn.connection.dbapi_connection))

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        assert (
            marketing.post(
                "/api/v1/permissions/check", json={"emails": ["nobody@kund.se"], "topic": "events"}
            ).status_code
            == 200
        )
        with app.app_context():
            undone = {"at": utcnow(), "actor": "t", "action": "undone"}
            db.session.execute(sa.insert(AuditEntry), [undone])
            db.session.rollback()
            kept = db.session.scalars(
                sa.select(AuditEntry.action).where(AuditEntry.action == "undone")
            ).all()
            db.session.remove()
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert len(set(used)) == 1, "the check and the rollback used the same connection"
    assert kept == []


def _ledger_kinds(app, contact_id):  # type: ignore[no-untyped-def]
    from consent.models import ConsentEvent
    from extensions import db

    with app.app_context():
        kinds = db.session.scalars(
            sa.select(ConsentEvent.kind)
            .where(ConsentEvent.contact_id == contact_id)
            .order_by(ConsentEvent.id)
        ).all()
        db.session.remove()
    return kinds


def test_an_objection_already_in_force_answers_200_with_the_existing_event(app, api_as) -> None:
    """Issue 20 item 8: recording the same objection twice (an integrator's
    retry without a key, or the person calling again) writes one ledger event;
    the second answer is 200 with that event, and no webhook delivery is owed."""
    sales = api_as("sales")
    hook = api_as("admin").post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hooks"})
    assert hook.status_code == 201
    contact_id = create(api_as("marketing"), basis=CUSTOMER).json["id"]
    path = f"/api/v1/contacts/{contact_id}/objection"
    first = sales.post(path, json={"received_via": "phone", "channel": "all"})
    after_first = count_rows(app)
    assert after_first["webhook_delivery"] >= 2  # the contact's creation and the objection

    again = sales.post(path, json={"received_via": "letter", "note": "Again, by letter"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    assert again.json == first.json
    assert _ledger_kinds(app, contact_id).count("objected") == 1
    rows = count_rows(app)
    assert rows["consent_event"] == after_first["consent_event"]
    assert rows["webhook_delivery"] == after_first["webhook_delivery"]
    # The lookup itself is audited (who asked to object, again).
    assert rows["audit_entry"] == after_first["audit_entry"] + 1


def test_an_objection_on_another_channel_is_a_new_objection(app, api_as) -> None:
    """Only the same channel is "already so": an objection to phone after one to
    every channel is written (the emailed double opt-in may lift the one to every
    channel, never the one to phone, X6)."""
    sales = api_as("sales")
    contact_id = create(api_as("marketing"), basis=CUSTOMER).json["id"]
    path = f"/api/v1/contacts/{contact_id}/objection"
    answers = [
        sales.post(path, json={"received_via": "phone", "channel": channel})
        for channel in ("all", "phone", "phone", "all")
    ]
    assert [a.status_code for a in answers] == [201, 201, 200, 200]
    assert answers[2].json["id"] == answers[1].json["id"]
    assert answers[3].json["id"] == answers[0].json["id"]
    assert _ledger_kinds(app, contact_id).count("objected") == 2


def test_an_objection_after_its_lifting_is_written_again(app, api_as) -> None:
    """Lifted (the person's own double opt-in), the objection is no longer in
    force: a new one is a new event and a 201."""
    from consent.ledger import record
    from consent.models import EventKind
    from crm.models import Contact
    from extensions import db
    from kernel.access import SYSTEM_ACTOR

    sales = api_as("sales")
    contact_id = create(api_as("marketing"), basis=CUSTOMER).json["id"]
    path = f"/api/v1/contacts/{contact_id}/objection"
    first = sales.post(path, json={"received_via": "phone"})
    with app.app_context():
        contact = db.session.get(Contact, contact_id)
        record(
            contact,
            EventKind.OBJECTION_LIFTED,
            actor=SYSTEM_ACTOR,
            source="api",
            received_via="web",
        )
        db.session.commit()
        db.session.remove()
    again = sales.post(path, json={"received_via": "phone"})
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json["id"] != first.json["id"]
    assert _ledger_kinds(app, contact_id).count("objected") == 2


def test_the_same_objection_sent_at_once_by_six_clients_is_written_once(app, token_for) -> None:
    """Without a key too: each objection holds the contact (the lock a send
    takes) before it looks for one in force, so the later ones wait for the
    first's commit, find it and answer 200 with its event (PostgreSQL: row lock;
    SQLite: one writer at a time)."""
    import threading

    from tests.conftest import ApiClient

    token = token_for("sales")
    contact_id = create(ApiClient(app.test_client(), token_for("marketing")), basis=CUSTOMER).json[
        "id"
    ]
    start = threading.Barrier(6)
    answers: list = []

    def send() -> None:
        client = ApiClient(app.test_client(), token)
        start.wait()
        answers.append(
            client.post(f"/api/v1/contacts/{contact_id}/objection", json={"received_via": "phone"})
        )

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    assert len({a.json["id"] for a in answers}) == 1
    assert _ledger_kinds(app, contact_id).count("objected") == 1
