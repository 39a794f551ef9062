"""The permission check reads its API token in its own statement (issue 25).

``POST /api/v1/permissions/check`` leaves the token to the route
(``requires(..., token_read_by_route=True)``): on PostgreSQL one statement
reads the token, notes its last use, writes the audit entry (R25) and reads
the standings; on SQLite the token is read first, as on every other route.
Either way the token row is read on every request, so a revoked or expired
token is refused on its very next check, and a refused token leaves no audit
entry. These tests run on whichever database the suite was given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from extensions import db
from kernel.access import Actor, BearerToken, _hash_token, create_api_token
from kernel.errors import NotPermitted
from kernel.models import ApiToken
from kernel.timestamps import utcnow
from tests.conftest import statement_kinds

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
CHECK = {"emails": ["anna@kund.se"], "topic": "events"}


@pytest.fixture
def elsewhere(database_url: str) -> Iterator[sa.Engine]:
    """A connection outside the app's pool and session: it reads what was committed."""
    driver = "postgresql+psycopg" if database_url.startswith("postgresql") else "sqlite"
    engine = sa.create_engine(sa.make_url(database_url).set(drivername=driver))
    yield engine
    engine.dispose()


def _checks_audited(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM audit_entry WHERE action = 'permissions.check'")
            ).scalar_one()
        )


def _token(app: Any, name: str, role: str = "sales") -> tuple[int, str]:
    with app.app_context():
        token, raw = create_api_token(name, role, expires_at=utcnow() + timedelta(hours=1))
        token_id = token.id
        db.session.remove()
    return token_id, raw


def _set(engine: sa.Engine, token_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(ApiToken).where(ApiToken.id == token_id).values(**values))


def _last_used(engine: sa.Engine, token_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(ApiToken.last_used_at).where(ApiToken.id == token_id)
        ).scalar_one()


def _check(client: Any, raw: str, body: Any = CHECK) -> Any:
    return client.post(
        "/api/v1/permissions/check", json=body, headers={"Authorization": f"Bearer {raw}"}
    )


def _with_anna(admin_api: Any) -> None:
    body = {"email": "anna@kund.se", "name": "Anna", "country": "SE", "basis": CUSTOMER}
    assert admin_api.post("/api/v1/contacts", json=body).status_code == 201


def test_a_revoked_token_is_refused_on_its_very_next_check(
    app: Any, client: Any, admin_api: Any, elsewhere: sa.Engine
) -> None:
    _with_anna(admin_api)
    token_id, raw = _token(app, "partner")
    assert _check(client, raw).status_code == 200
    assert _checks_audited(elsewhere) == 1
    _set(elsewhere, token_id, revoked_at=utcnow())
    answer = _check(client, raw)
    assert answer.status_code == 401
    assert answer.json["error"]["code"] == "invalid_token"
    assert "decisions" not in answer.json
    # Nothing was read in its name, so nothing is audited.
    assert _checks_audited(elsewhere) == 1


def test_an_expired_token_is_refused_on_its_very_next_check(
    app: Any, client: Any, admin_api: Any, elsewhere: sa.Engine
) -> None:
    _with_anna(admin_api)
    token_id, raw = _token(app, "partner")
    assert _check(client, raw).status_code == 200
    _set(elsewhere, token_id, expires_at=utcnow() - timedelta(seconds=1))
    answer = _check(client, raw)
    assert answer.status_code == 401
    assert answer.json["error"]["code"] == "expired_token"
    assert _checks_audited(elsewhere) == 1


def test_an_unknown_token_is_refused_and_nothing_is_audited(
    client: Any, admin_api: Any, elsewhere: sa.Engine
) -> None:
    _with_anna(admin_api)
    answer = _check(client, "cst_not-a-token")
    assert answer.status_code == 401
    assert answer.json["error"]["code"] == "invalid_token"
    assert _checks_audited(elsewhere) == 0


def test_an_unknown_token_with_a_malformed_body_is_told_401_first(
    app: Any, client: Any, admin_api: Any
) -> None:
    """The route reads the token in its statement, after the body is parsed; a
    body refused before that still answers an unknown caller 401, not 422."""
    _, raw = _token(app, "partner")
    for body in ({"emails": "anna@kund.se"}, {"emails": ["anna@kund.se"], "topic": "nope"}):
        assert _check(client, "cst_not-a-token", body).status_code == 401
        assert _check(client, raw, body).status_code in (400, 404, 422)


def test_a_route_that_never_reads_its_token_still_answers_only_a_valid_one(
    app: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard fails closed: should a path of the check ever skip the
    statement that reads the token, the token is read before the answer leaves."""
    import consent.api

    monkeypatch.setattr(consent.api.services, "check_permissions", lambda *a, **k: [])
    assert _check(client, "cst_not-a-token").status_code == 401
    _, raw = _token(app, "partner")
    assert _check(client, raw).status_code == 200


def test_a_check_notes_the_tokens_last_use_every_few_minutes(
    app: Any, client: Any, admin_api: Any, elsewhere: sa.Engine
) -> None:
    _with_anna(admin_api)
    token_id, raw = _token(app, "partner")
    assert _last_used(elsewhere, token_id) is None
    assert _check(client, raw).status_code == 200
    first = _last_used(elsewhere, token_id)
    assert first is not None
    assert abs(first - utcnow()) < timedelta(minutes=1)
    # Within the resolution: left as it is, so that reads stay reads.
    recent = utcnow() - timedelta(minutes=1)
    _set(elsewhere, token_id, last_used_at=recent)
    assert _check(client, raw).status_code == 200
    assert _last_used(elsewhere, token_id) == recent
    # Older than that: written again.
    stale = utcnow() - timedelta(minutes=10)
    _set(elsewhere, token_id, last_used_at=stale)
    assert _check(client, raw).status_code == 200
    assert _last_used(elsewhere, token_id) > recent
    # A revoked token's last use is not noted.
    _set(elsewhere, token_id, last_used_at=stale, revoked_at=utcnow())
    assert _check(client, raw).status_code == 401
    assert _last_used(elsewhere, token_id) == stale


def test_a_token_whose_role_may_not_act_leaves_no_entry(
    app: Any, admin_api: Any, elsewhere: sa.Engine
) -> None:
    """The statement writes the entry only for a role that may take the action:
    a sales token asked to act for ``tokens.manage`` (admin only) is refused
    with nothing audited."""
    from consent import services

    _with_anna(admin_api)
    _, raw = _token(app, "partner", role="sales")
    with app.app_context():
        # As the route runs it: each statement commits on its own, so a refusal
        # after the statement could not take back an entry it had written.
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        bearer = BearerToken(_hash_token(raw), "tokens.manage")
        with pytest.raises(NotPermitted):
            services.check_permissions(["anna@kund.se"], "events", actor=bearer)
        db.session.rollback()
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        allowed = BearerToken(_hash_token(raw), "permissions.read")
        decisions = services.check_permissions(["anna@kund.se"], "events", actor=allowed)
        assert decisions[0].allowed
        assert allowed.actor == Actor(
            kind="token", name="partner", role="sales", id=allowed.actor.id
        )
        db.session.remove()
    assert _checks_audited(elsewhere) == 1


def test_on_postgresql_a_check_is_one_statement(
    app: Any, client: Any, admin_api: Any, database_url: str
) -> None:
    """The token, its last use, the audit entry and the standings: one round
    trip, autocommitted (the pool's pre-ping aside, which no listener sees)."""
    if not database_url.startswith("postgresql"):
        pytest.skip(
            "SQLite has no INSERT inside WITH: needs a server database: "
            "runs on the suite's second pass"
        )
    _with_anna(admin_api)
    _, raw = _token(app, "partner")
    with statement_kinds(app) as seen:
        first = _check(client, raw)  # notes the token's first use, in the same statement
        again = _check(client, raw)
        refused = _check(client, "cst_not-a-token")
    assert (first.status_code, again.status_code, refused.status_code) == (200, 200, 401)
    assert seen == [("WITH", "AUTOCOMMIT")] * 3, seen


def test_the_check_s_last_used_write_changes_nothing_else_of_the_token(
    app: Any, client: Any, admin_api: Any, database_url: str, elsewhere: sa.Engine
) -> None:
    """The check statement's parameters reach its UPDATE of ``api_token``, and
    SQLAlchemy takes a parameter named like a column there as that column's
    new value (with this version, one named like ``revoked_at`` fails the whole
    check instead): a check must only note the last use."""
    if not database_url.startswith("postgresql"):
        pytest.skip(
            "SQLite notes the last use in its own UPDATE: needs a server database: "
            "runs on the suite's second pass"
        )
    _with_anna(admin_api)
    token_id, raw = _token(app, "partner")

    def token_row() -> dict[str, Any]:
        with elsewhere.connect() as conn:
            row = conn.execute(sa.select(ApiToken).where(ApiToken.id == token_id)).one()
        return {k: v for k, v in row._mapping.items() if k != "last_used_at"}

    before = token_row()
    updates: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        updates.extend(re.findall(r"UPDATE api_token SET (.*?) WHERE", statement, re.S))

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        assert _check(client, raw).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert [re.sub(r"=.*", "", u).strip() for u in updates] == ["last_used_at"]
    assert _last_used(elsewhere, token_id) is not None
    assert token_row() == before
