"""The permission checks' audit entries (R25): stored before the answer is
sent, read back by another connection, and no answer when one cannot be stored.

Both single-check routes (``POST /api/v1/permissions/check`` and
``GET /api/v1/contacts/<id>/permissions``) read and audit in one statement on
PostgreSQL (a data-modifying CTE; the first reads its API token there too) and
in two on SQLite
(``consent.services._read_and_audit``, ``consent.services.contact_permissions``);
these tests run on whichever database the suite was given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import statement_kinds

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}


def _create(api: Any, email: str) -> int:
    body = {"email": email, "name": "Anna", "country": "SE", "basis": CUSTOMER}
    answer = api.post("/api/v1/contacts", json=body)
    assert answer.status_code == 201, answer.json
    return int(answer.json["id"])


@pytest.fixture
def elsewhere(database_url: str) -> Iterator[sa.Engine]:
    """A connection of its own, outside the app's pool and session: what it
    reads was committed, not merely written in a transaction still open."""
    driver = "postgresql+psycopg" if database_url.startswith("postgresql") else "sqlite"
    engine = sa.create_engine(sa.make_url(database_url).set(drivername=driver))
    yield engine
    engine.dispose()


def _entries(engine: sa.Engine, action: str = "permissions.check") -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT actor, contact_id, detail FROM audit_entry "
                    "WHERE action = :action ORDER BY id"
                ),
                {"action": action},
            )
        ]


def _run(engine: sa.Engine, statements: list[str]) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))


def _refusing_audit(database_url: str) -> tuple[list[str], list[str]]:
    """Statements that make every INSERT into the audit log fail, and undo it."""
    if database_url.startswith("postgresql"):
        return (
            [
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit refused by the test'; END $$",
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_entry "
                "FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
            ],
            ["DROP TRIGGER refuse_audit ON audit_entry", "DROP FUNCTION refuse_audit()"],
        )
    return (
        [
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_entry "
            "BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END"
        ],
        ["DROP TRIGGER refuse_audit"],
    )


def test_each_check_is_stored_before_its_answer_and_another_connection_reads_it(
    app: Any, api_as: Any, elsewhere: sa.Engine
) -> None:
    marketing = api_as("marketing")
    anna = _create(marketing, "anna@kund.se")
    _create(marketing, "bo@kund.se")
    asked = [
        (["anna@kund.se"], (anna, "addresses=1 known=1")),
        (["nobody@kund.se"], (None, "addresses=1 known=0")),
        (["ANNA@kund.se", "bo@kund.se", "x@kund.se"], (None, "addresses=3 known=2")),
        (["not an address"], (None, "addresses=1 known=0")),
    ]
    for n, (emails, (contact_id, counts)) in enumerate(asked, start=1):
        answer = marketing.post(
            "/api/v1/permissions/check", json={"emails": emails, "topic": "events"}
        )
        assert answer.status_code == 200, answer.json
        assert len(answer.json["decisions"]) == len(emails)
        # Read at once, by a connection that shares nothing with the app.
        stored = _entries(elsewhere)
        assert len(stored) == n, "one entry per check, committed before the answer"
        actor, *rest = stored[-1]
        assert actor.startswith("token:marketing")
        assert rest == [contact_id, f"topic=events channel=email {counts}"]


def test_a_lookup_of_one_contacts_decisions_is_stored_before_its_answer(
    app: Any, api_as: Any, elsewhere: sa.Engine
) -> None:
    sales = api_as("sales")
    anna = _create(api_as("marketing"), "anna@kund.se")
    for n in (1, 2):
        answer = sales.get(f"/api/v1/contacts/{anna}/permissions")
        assert answer.status_code == 200, answer.json
        assert answer.json["contact_id"] == anna
        assert answer.json["email"] == "anna@kund.se"
        assert any(d["allowed"] for d in answer.json["decisions"])
        stored = _entries(elsewhere, "contact.read")
        assert len(stored) == n
        actor, *rest = stored[-1]
        assert actor.startswith("token:sales")
        assert rest == [anna, None]
    # No such contact: 404, and nothing to audit.
    answer = sales.get(f"/api/v1/contacts/{anna + 1000}/permissions")
    assert answer.status_code == 404
    assert answer.json["error"]["code"] == "contact_not_found"
    assert len(_entries(elsewhere, "contact.read")) == 2


def test_a_check_whose_audit_entry_cannot_be_stored_is_not_answered(
    app: Any, api_as: Any, elsewhere: sa.Engine, database_url: str
) -> None:
    """No answer without its record (R25): when the INSERT fails, the check
    fails with it, and nothing of the decision leaves the service."""
    marketing = api_as("marketing")
    _create(marketing, "anna@kund.se")
    refuse, allow = _refusing_audit(database_url)
    _run(elsewhere, refuse)
    try:
        answer = marketing.post(
            "/api/v1/permissions/check", json={"emails": ["anna@kund.se"], "topic": "events"}
        )
    finally:
        _run(elsewhere, allow)
    assert answer.status_code >= 500
    assert "decisions" not in answer.json
    assert _entries(elsewhere) == []
    # And with the audit writable again, the same check is answered and stored.
    again = marketing.post(
        "/api/v1/permissions/check", json={"emails": ["anna@kund.se"], "topic": "events"}
    )
    assert again.status_code == 200
    assert again.json["decisions"][0]["allowed"] is True
    assert len(_entries(elsewhere)) == 1


def test_a_lookup_whose_audit_entry_cannot_be_stored_is_not_answered(
    app: Any, api_as: Any, elsewhere: sa.Engine, database_url: str
) -> None:
    sales = api_as("sales")
    anna = _create(api_as("marketing"), "anna@kund.se")
    refuse, allow = _refusing_audit(database_url)
    _run(elsewhere, refuse)
    try:
        answer = sales.get(f"/api/v1/contacts/{anna}/permissions")
    finally:
        _run(elsewhere, allow)
    assert answer.status_code >= 500
    assert "decisions" not in answer.json
    assert _entries(elsewhere, "contact.read") == []
    assert sales.get(f"/api/v1/contacts/{anna}/permissions").status_code == 200
    assert len(_entries(elsewhere, "contact.read")) == 1


def test_on_postgresql_a_check_reads_and_audits_in_one_statement(
    app: Any, api_as: Any, database_url: str
) -> None:
    """The standings with the audit INSERT (and the major-version question) in
    one round trip, committed on its own. The single check reads its token in
    that statement too (tests/consent/test_check_token.py); the lookup by id
    reads it first, in a SELECT of its own."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no INSERT inside WITH: the read and the INSERT are two")

    marketing = api_as("marketing")
    anna = _create(marketing, "anna@kund.se")
    with statement_kinds(app) as seen:
        check = marketing.post(
            "/api/v1/permissions/check", json={"emails": ["anna@kund.se"], "topic": "events"}
        )
        lookup = marketing.get(f"/api/v1/contacts/{anna}/permissions")
    assert check.status_code == 200
    assert lookup.status_code == 200
    assert seen == [("WITH", "AUTOCOMMIT"), ("SELECT", "AUTOCOMMIT"), ("WITH", "AUTOCOMMIT")], seen


def test_a_check_failing_after_its_audit_entry_is_stored_does_not_say_nothing_changed(
    app: Any, api_as: Any, elsewhere: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry is committed before any decision (R25); a failure in deciding is
    a 500 whose message promises nothing about what was stored."""
    import consent.services
    from app import INTERNAL_ERROR

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in deciding")

    marketing = api_as("marketing")
    _create(marketing, "anna@kund.se")
    monkeypatch.setattr(consent.services, "decide", broken)
    answer = marketing.post(
        "/api/v1/permissions/check", json={"emails": ["anna@kund.se"], "topic": "events"}
    )
    assert answer.status_code == 500
    assert answer.json["error"] == {"code": "internal_error", "message": INTERNAL_ERROR}
    assert INTERNAL_ERROR == (
        "Something went wrong on our side and the request did not finish. "
        "Please try again in a moment."
    )
    assert len(_entries(elsewhere)) == 1
