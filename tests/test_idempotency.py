"""Writes an integrator can repeat: the ``Idempotency-Key`` header (kernel/idempotency.py).

What an integrator checks: a repeat with the same key answers what the first
request answered and the database holds exactly what it held; another request
with a used key is refused; the keys of two API tokens never meet; a key is
forgotten after its retention; concurrent duplicates write once. Runs on SQLite
and, with ``TEST_DATABASE_URL``, on PostgreSQL (the concurrent test matters most
there: the unique key is the lock).
"""

from __future__ import annotations

import io
import re
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from extensions import db
from kernel.models import IdempotencyKey
from kernel.timestamps import utcnow
from tests.conftest import ApiClient, count_rows, finish_imports

CUSTOMER = {"type": "legitimate_interest", "kind": "customer", "source": "crm-sync"}
CALL = {"kind": "call", "occurred_at": "2026-01-01T10:00:00+00:00", "note": "Asked for prices"}


def new_key() -> str:
    return str(uuid.uuid4())


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def create_contact(api: Any, email: str = "anna@kund.se", **headers: str) -> Any:
    body = {"email": email, "name": "Anna", "country": "SE", "language": "sv", "basis": CUSTOMER}
    return api.client.post("/api/v1/contacts", json=body, headers={**api.headers, **headers})


def post(api: Any, path: str, body: Any, key: str) -> Any:
    return api.client.post(path, json=body, headers={**api.headers, **keyed(key)})


def activities(app: Any) -> int:
    return count_rows(app)["activity"]


def stored_keys(app: Any) -> list[Any]:
    with app.app_context():
        rows = db.session.execute(sa.select(IdempotencyKey.__table__)).all()
        db.session.remove()
    return rows


# Repeat: the first answer, nothing changed ----------------------------------------------------


def test_a_repeated_create_answers_the_first_answer_and_changes_nothing(app, admin_api) -> None:
    key = new_key()
    first = create_contact(admin_api, **keyed(key))
    assert first.status_code == 201
    before = count_rows(app)

    again = create_contact(admin_api, **keyed(key))

    assert again.status_code == 201  # the first answer, not the 200 of an update
    assert again.get_data() == first.get_data()
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert count_rows(app) == before


@pytest.mark.parametrize("method", ["post", "patch", "put", "delete"])
def test_every_write_method_is_answered_once(app, admin_api, method) -> None:
    contact_id = create_contact(admin_api).json["id"]
    path, body = {
        "post": (f"/api/v1/contacts/{contact_id}/activities", CALL),
        "patch": (f"/api/v1/contacts/{contact_id}", {"name": "Anna Berg"}),
        "put": (f"/api/v1/contacts/{contact_id}/legal-hold", {"reason": "Invoice dispute 12"}),
        "delete": (f"/api/v1/contacts/{contact_id}/restriction", None),
    }[method]
    if method == "delete":
        admin_api.post(f"/api/v1/contacts/{contact_id}/restriction", json={})
    key = new_key()
    send = getattr(admin_api.client, method)
    headers = {**admin_api.headers, **keyed(key)}
    first = send(path, json=body, headers=headers) if body else send(path, headers=headers)
    before = count_rows(app)
    again = send(path, json=body, headers=headers) if body else send(path, headers=headers)
    assert first.status_code < 300
    assert (again.status_code, again.get_data()) == (first.status_code, first.get_data())
    assert count_rows(app) == before


def test_a_write_without_a_key_is_not_held_back(app, admin_api) -> None:
    contact_id = create_contact(admin_api).json["id"]
    for _ in range(2):
        admin_api.post(f"/api/v1/contacts/{contact_id}/activities", json=CALL)
    assert activities(app) == 2
    assert stored_keys(app) == []


def test_an_error_answer_is_kept_and_repeated(app, admin_api) -> None:
    """A 4xx is the answer to that request: the repeat gets it too, even after
    the state changed (the draft: the key names the request, not the outcome)."""
    key = new_key()
    missing = post(admin_api, "/api/v1/contacts/4242/activities", CALL, key)
    assert missing.status_code == 404
    again = post(admin_api, "/api/v1/contacts/4242/activities", CALL, key)
    assert (again.status_code, again.json) == (404, missing.json)
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_server_error_is_not_kept_so_the_retry_runs(app, admin_api, monkeypatch) -> None:
    from crm import services

    contact_id = create_contact(admin_api).json["id"]
    original = services.log_activity
    calls = {"n": 0}

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the disk filled up")
        return original(*args, **kwargs)

    monkeypatch.setattr(services, "log_activity", fails_once)
    key = new_key()
    path = f"/api/v1/contacts/{contact_id}/activities"
    assert post(admin_api, path, CALL, key).status_code == 500
    assert stored_keys(app) == []
    retried = post(admin_api, path, CALL, key)
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert activities(app) == 1


# Refusals ----------------------------------------------------------------------------------------


def test_the_same_key_with_another_body_is_refused_with_422_and_nothing_written(
    app, admin_api
) -> None:
    contact_id = create_contact(admin_api).json["id"]
    path = f"/api/v1/contacts/{contact_id}/activities"
    key = new_key()
    assert post(admin_api, path, CALL, key).status_code == 201
    before = count_rows(app)

    other = post(admin_api, path, {**CALL, "note": "Asked for a meeting"}, key)

    assert other.status_code == 422
    assert other.json["error"]["code"] == "idempotency_key_reused"
    assert "another request" in other.json["error"]["message"]
    assert count_rows(app) == before


def test_the_same_key_on_another_route_is_refused(app, admin_api) -> None:
    contact_id = create_contact(admin_api).json["id"]
    key = new_key()
    assert (
        post(admin_api, f"/api/v1/contacts/{contact_id}/activities", CALL, key).status_code == 201
    )
    objection = post(
        admin_api, f"/api/v1/contacts/{contact_id}/objection", {"received_via": "phone"}, key
    )
    assert objection.status_code == 422
    assert objection.json["error"]["code"] == "idempotency_key_reused"
    assert count_rows(app)["consent_event"] == 1  # the customer basis only


@pytest.mark.parametrize(
    "key",
    [
        "k" * 256,
        "",
        '""',
        "two words",
        "käse",
        'quote"inside',
        "back\\slash",
    ],
)
def test_a_malformed_key_is_a_400_and_nothing_is_written(app, admin_api, key) -> None:
    contact_id = create_contact(admin_api).json["id"]
    before = count_rows(app)
    answer = post(admin_api, f"/api/v1/contacts/{contact_id}/activities", CALL, key)
    assert answer.status_code == 400
    assert answer.json["error"]["code"] == "invalid_idempotency_key"
    assert count_rows(app) == before


def test_a_key_of_255_characters_and_the_quoted_form_are_one_key(app, admin_api) -> None:
    contact_id = create_contact(admin_api).json["id"]
    path = f"/api/v1/contacts/{contact_id}/activities"
    key = "k" * 255
    first = post(admin_api, path, CALL, key)
    assert first.status_code == 201
    # The draft's form, a Structured Field string, names the same key.
    again = post(admin_api, path, CALL, f'"{key}"')
    assert again.headers["Idempotent-Replayed"] == "true"
    assert activities(app) == 1


def test_a_control_character_in_the_key_is_refused_by_the_check_every_header_passes(
    admin_api,
) -> None:
    answer = post(admin_api, "/api/v1/contacts/1/activities", CALL, "a\x01b")
    assert answer.status_code == 422
    assert answer.json["error"]["code"] == "invalid_characters"


def test_a_repeat_while_the_first_is_in_flight_gets_409(app, admin_api, monkeypatch) -> None:
    """The first request is held inside its use case; the repeat is refused
    with 409 and runs nothing; once the first is answered the repeat gets it."""
    from crm import services

    contact_id = create_contact(admin_api).json["id"]
    entered, release = threading.Event(), threading.Event()
    original = services.log_activity

    def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(services, "log_activity", slow)
    key = new_key()
    path = f"/api/v1/contacts/{contact_id}/activities"
    answers: list[Any] = []
    same_caller = ApiClient(app.test_client(), admin_api.headers["Authorization"].split()[1])
    first = threading.Thread(target=lambda: answers.append(post(same_caller, path, CALL, key)))
    first.start()
    assert entered.wait(10)
    during = post(admin_api, path, CALL, key)
    release.set()
    first.join(10)

    assert during.status_code == 409
    assert during.json["error"]["code"] == "idempotency_key_in_flight"
    assert answers[0].status_code == 201
    after = post(admin_api, path, CALL, key)
    assert (after.status_code, after.get_data()) == (201, answers[0].get_data())
    assert activities(app) == 1


def test_a_first_request_that_died_in_flight_frees_its_key_after_ten_minutes(
    app, admin_api
) -> None:
    contact_id = create_contact(admin_api).json["id"]
    path = f"/api/v1/contacts/{contact_id}/activities"
    key = new_key()
    assert post(admin_api, path, CALL, key).status_code == 201
    # As a process killed mid-request leaves it: claimed, never answered.
    with app.app_context():
        db.session.execute(
            sa.update(IdempotencyKey).values(
                completed_at=None, created_at=utcnow() - timedelta(minutes=9)
            )
        )
        db.session.commit()
    assert post(admin_api, path, CALL, key).status_code == 409
    with app.app_context():
        db.session.execute(
            sa.update(IdempotencyKey).values(created_at=utcnow() - timedelta(minutes=11))
        )
        db.session.commit()
    assert post(admin_api, path, CALL, key).status_code == 201
    assert activities(app) == 2


# Scope and retention ---------------------------------------------------------------------------


def test_keys_belong_to_one_api_token(app, api_as) -> None:
    crm_sync, other_tool = api_as("sales"), api_as("sales")
    marketing = api_as("marketing")
    contact_id = create_contact(marketing).json["id"]
    path = f"/api/v1/contacts/{contact_id}/activities"
    key = new_key()
    first = post(crm_sync, path, CALL, key)
    second = post(other_tool, path, CALL, key)
    assert (first.status_code, second.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in second.headers
    assert first.json["id"] != second.json["id"]
    assert activities(app) == 2
    # Another token's key with another body is no "reuse" either.
    third = post(marketing, path, {**CALL, "note": "other"}, key)
    assert third.status_code == 201


def test_a_key_is_forgotten_after_its_retention_and_pruned(app, admin_api) -> None:
    contact_id = create_contact(admin_api).json["id"]
    path = f"/api/v1/contacts/{contact_id}/activities"
    old_key, key = new_key(), new_key()
    assert post(admin_api, path, CALL, old_key).status_code == 201
    with app.app_context():
        db.session.execute(
            sa.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=24, minutes=1))
        )
        db.session.commit()

    # Another key's write prunes the expired one ...
    assert post(admin_api, path, CALL, key).status_code == 201
    assert [row.key for row in stored_keys(app)] == [key]
    # ... and the old key names a new request.
    again = post(admin_api, path, CALL, old_key)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert activities(app) == 3


def test_the_retention_is_configurable(app, admin_api) -> None:
    contact_id = create_contact(admin_api).json["id"]
    path = f"/api/v1/contacts/{contact_id}/activities"
    key = new_key()
    assert post(admin_api, path, CALL, key).status_code == 201
    with app.app_context():
        db.session.execute(
            sa.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=2))
        )
        db.session.commit()
    app.config["IDEMPOTENCY_KEEP_HOURS"] = 1
    try:
        assert "Idempotent-Replayed" not in post(admin_api, path, CALL, key).headers
    finally:
        app.config["IDEMPOTENCY_KEEP_HOURS"] = 24
    assert activities(app) == 2


def test_the_daily_retention_run_prunes_expired_keys_and_counts_them(app, admin_api) -> None:
    from crm import retention

    contact_id = create_contact(admin_api).json["id"]
    path = f"/api/v1/contacts/{contact_id}/activities"
    keys = [new_key(), new_key()]
    for key in keys:
        assert post(admin_api, path, CALL, key).status_code == 201
    with app.app_context():
        db.session.execute(
            sa.update(IdempotencyKey)
            .where(IdempotencyKey.key == keys[0])
            .values(created_at=utcnow() - timedelta(days=2))
        )
        db.session.commit()
        run = retention.run(utcnow().date(), started_by="test")
        counts = run.counts
        db.session.remove()
    assert [row.key for row in stored_keys(app)] == [keys[1]]
    assert counts["idempotency-keys"]["deleted"] == 1


# Personal data in stored answers -------------------------------------------------------------


def test_a_retry_after_erasure_answers_410_and_does_not_bring_the_person_back(
    app, admin_api
) -> None:
    """The reviewer's sequence: create with K, erase, repeat the create with K.
    The kept answers about the person lose their personal data, but their keys
    keep answering: the repeat is a 410 and writes nothing."""
    key, activity_key = new_key(), new_key()
    created = create_contact(admin_api, **keyed(key))
    assert created.status_code == 201
    contact_id = created.json["id"]
    activity_path = f"/api/v1/contacts/{contact_id}/activities"
    post(admin_api, activity_path, CALL, activity_key)
    assert {row.contact_id for row in stored_keys(app)} == {contact_id}

    erased = admin_api.client.delete(
        f"/api/v1/contacts/{contact_id}", headers={**admin_api.headers, **keyed(new_key())}
    )
    assert erased.status_code == 200
    before = count_rows(app)

    again = create_contact(admin_api, **keyed(key))

    assert again.status_code == 410
    assert again.json["error"]["code"] == "contact_erased"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count_rows(app) == before
    assert before["contact"] == 0
    repeated_activity = post(admin_api, activity_path, CALL, activity_key)
    assert (repeated_activity.status_code, repeated_activity.json["error"]["code"]) == (
        410,
        "contact_erased",
    )
    # The same key with another request is still refused: the fingerprint stays.
    other = create_contact(admin_api, email="bo@kund.se", **keyed(key))
    assert other.status_code == 422
    rows = stored_keys(app)
    assert len(rows) == 3  # the create, the activity, the erasure
    for row in rows:
        assert row.contact_id is None
        assert b"anna@kund.se" not in row.response_body
        assert b"Anna" not in row.response_body
        assert b"anna" not in (row.response_headers or "").encode()


def test_a_purge_by_the_retention_leaves_a_410_without_personal_data(app, admin_api) -> None:
    from crm import services

    key = new_key()
    contact_id = create_contact(admin_api, **keyed(key)).json["id"]
    with app.app_context():
        assert services.remove_contacts([contact_id]) == 1
        db.session.commit()

    again = create_contact(admin_api, **keyed(key))

    assert (again.status_code, again.json["error"]["code"]) == (410, "contact_purged")
    assert count_rows(app)["contact"] == 0
    [row] = stored_keys(app)
    assert (row.contact_id, b"anna@kund.se" in row.response_body) == (None, False)


def test_the_stored_answer_is_never_logged(app, admin_api, caplog) -> None:
    caplog.set_level("DEBUG")
    key = new_key()
    create_contact(admin_api, email="hemlig@kund.se", **keyed(key))
    create_contact(admin_api, email="hemlig@kund.se", **keyed(key))
    assert "hemlig@kund.se" not in caplog.text


def test_an_answer_that_cannot_be_kept_is_not_logged_either(
    app, admin_api, caplog, monkeypatch
) -> None:
    """A database error quotes its statement's parameters, the answer among
    them: only its kind is logged. The key stays in flight (409), since the
    write did happen."""
    from kernel import idempotency

    def fails(response: Any) -> Any:
        raise sa.exc.StatementError(
            "the database went away",
            "UPDATE idempotency_key ...",
            {"body": response.get_data()},
            None,
        )

    monkeypatch.setattr(idempotency, "_contact_named", fails)
    caplog.set_level("DEBUG")
    key = new_key()
    created = create_contact(admin_api, email="hemlig@kund.se", **keyed(key))
    assert created.status_code == 201
    assert "Could not keep the answer" in caplog.text
    assert "StatementError" in caplog.text
    assert "hemlig@kund.se" not in caplog.text
    assert create_contact(admin_api, email="hemlig@kund.se", **keyed(key)).status_code == 409


# Answers that carry a secret -----------------------------------------------------------------


WEBHOOK = {"url": "https://crm.example.com/hooks/consent"}


def test_a_repeated_webhook_creation_does_not_show_or_keep_its_secret(app, admin_api) -> None:
    key = new_key()
    first = post(admin_api, "/api/v1/webhooks", WEBHOOK, key)
    assert first.status_code == 201
    assert first.json["secret"].startswith("whsec_")
    assert "Idempotent-Withheld" not in first.headers
    before = count_rows(app)

    again = post(admin_api, "/api/v1/webhooks", WEBHOOK, key)

    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Idempotent-Withheld"] == "secret"
    assert "secret" not in again.json
    assert b"whsec_" not in again.get_data()
    assert {k: v for k, v in first.json.items() if k != "secret"} == again.json
    assert count_rows(app) == before
    [row] = stored_keys(app)
    assert b"whsec_" not in row.response_body
    assert first.json["secret"].encode() not in row.response_body
    assert "whsec_" not in row.response_headers


_SECRET_NAME = re.compile(r"secret|token|password", re.I)


def _property_names(document: dict, schema: dict, seen: set[str]) -> set[str]:
    ref = schema.get("$ref")
    if ref:
        if ref in seen:
            return set()
        seen.add(ref)
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    names = set()
    for name, sub in schema.get("properties", {}).items():
        names.add(name)
        names |= _property_names(document, sub, seen)
    for part in ("items", "additionalProperties"):
        if isinstance(schema.get(part), dict):
            names |= _property_names(document, schema[part], seen)
    for part in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(part, []):
            names |= _property_names(document, sub, seen)
    return names


def test_every_write_whose_answer_holds_a_secret_withholds_it_from_the_replay(app, client) -> None:
    """A new route that answers a secret or a token cannot forget the mark
    (kernel.idempotency.withholds_in_replay): its answer would be kept, and
    shown again, with the secret in it."""
    document = client.get("/api/v1/openapi.json").json
    views = {
        (method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)): view
        for rule, method, view in _write_routes(app)
    }
    unmarked, marked = [], []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if (method, path) not in views:
                continue
            names = set()
            for answer in operation.get("responses", {}).values():
                for content in answer.get("content", {}).values():
                    names |= _property_names(document, content.get("schema", {}), set())
            secret = {n for n in names if _SECRET_NAME.search(n)}
            withheld = set(getattr(views[(method, path)], "_withheld_in_replay", ()))
            if secret - withheld:
                unmarked.append(f"{method.upper()} {path}: {sorted(secret - withheld)}")
            if withheld:
                marked.append(f"{method.upper()} {path}")
    assert unmarked == []
    assert marked == ["POST /api/v1/webhooks"]


# Concurrent duplicates ---------------------------------------------------------------------------


def test_concurrent_duplicates_write_once(app, token_for) -> None:
    """Eight clients send the same keyed write at the same moment (threads, one
    app, the real database): one write; every other answer is the 409 of a
    request in flight or the first answer replayed. On PostgreSQL the second
    insert of the key waits for the first to commit and then finds it."""
    token = token_for("admin")
    admin = ApiClient(app.test_client(), token)
    contact_id = create_contact(admin).json["id"]
    path = f"/api/v1/contacts/{contact_id}/activities"
    for _round in range(5):
        key = new_key()
        start = threading.Barrier(8)
        answers: list[Any] = []
        lock = threading.Lock()

        def send(start=start, key=key, answers=answers, lock=lock) -> None:  # type: ignore[no-untyped-def]
            client = ApiClient(app.test_client(), token)
            start.wait()
            answer = post(client, path, CALL, key)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = sorted(a.status_code for a in answers)
        assert len(answers) == 8
        assert set(statuses) <= {201, 409}, statuses
        written = [a for a in answers if a.status_code == 201]
        assert len({a.get_data() for a in written}) == 1
    assert activities(app) == 5


def test_a_keyed_import_is_read_whole_and_answered_once(app, api_as, import_worker) -> None:
    """The upload is hashed as it is read (a spooled copy), past the 1 MiB every
    other route takes, and the route still reads it."""
    marketing = api_as("marketing")
    name = "Person with a rather long name, Andersson-Lindqvist"
    rows = "".join(f"person{n:05d}@kund.se,{name} {n}\n" for n in range(14_000))
    body = ("email,name\n" + rows).encode()
    assert len(body) > 1024 * 1024
    key = new_key()

    def send() -> Any:
        data = {"basis": "customer", "source": "crm", "file": (io.BytesIO(body), "big.csv")}
        return marketing.client.post(
            "/api/v1/imports", headers={**marketing.headers, **keyed(key)}, data=data
        )

    first = send()
    assert first.status_code == 202, first.json
    finish_imports()
    before = count_rows(app)
    again = send()
    assert (again.status_code, again.get_data()) == (202, first.get_data())
    assert again.headers["Location"] == first.headers["Location"]
    finish_imports()
    assert count_rows(app) == before
    assert before["contact"] == 14_000


# Every write, now and later ---------------------------------------------------------------------


def _write_routes(app: Any) -> list[tuple[str, str, Any]]:
    return sorted(
        (rule.rule, method, app.view_functions[rule.endpoint])
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods & {"POST", "PUT", "PATCH", "DELETE"}
    )


# Write routes under /api/v1 that no API token guards (none today): they have no
# caller to scope a key to. A route added here needs its reason.
NOT_TOKEN_GUARDED: dict[tuple[str, str], str] = {}


def test_every_write_route_honours_the_key(app, admin_api) -> None:
    """A new write route cannot forget the header: the guard every API route has
    (``kernel.access.requires``, tests/staff/test_role_matrix.py) reads it. Shown
    by the route's answer to a malformed key, before anything else happens."""
    forgotten = []
    for rule, method, view in _write_routes(app):
        if getattr(view, "_required_action", None) is None:
            if (method, rule) not in NOT_TOKEN_GUARDED:
                forgotten.append(f"{method} {rule}: no kernel.access.requires guard")
            continue
        path = re.sub(r"<(?:\w+:)?\w+>", "1", rule)
        answer = admin_api.client.open(
            path, method=method, headers={**admin_api.headers, **keyed("k" * 256)}, json={}
        )
        expected = 400 if not getattr(view, "_read_by_post", False) else None
        if expected and (answer.status_code, answer.json["error"]["code"]) != (
            400,
            "invalid_idempotency_key",
        ):
            forgotten.append(f"{method} {rule}: {answer.status_code}")
    assert forgotten == []


def test_every_write_operation_documents_the_header_precisely(client) -> None:
    document = client.get("/api/v1/openapi.json").json
    parameter = document["components"]["parameters"]["IdempotencyKey"]
    assert (parameter["name"], parameter["in"], parameter["required"]) == (
        "Idempotency-Key",
        "header",
        False,
    )
    schema = parameter["schema"]
    assert schema["maxLength"] == 257  # 255 characters, and the quotes of the draft's form
    pattern = re.compile(schema["pattern"])
    assert pattern.match("8e03978e-40d5-43e8-bc93-6894a57f9324")
    assert pattern.match('"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    for refused in ("k" * 256, "", "two words", "käse", 'a"b'):
        assert not pattern.match(refused)
    reference = {"$ref": "#/components/parameters/IdempotencyKey"}
    undocumented = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method not in ("post", "put", "patch", "delete"):
                continue
            documented = reference in operation.get("parameters", [])
            refusals = {"400", "409", "422"} <= set(operation["responses"])
            # Documented exactly where honoured: not on the read sent as POST,
            # nor where no token guards the route.
            exempt = path == "/api/v1/permissions/check" or any(
                path == re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule) for _m, rule in NOT_TOKEN_GUARDED
            )
            if documented == exempt or not (refusals or exempt):
                undocumented.append(f"{method.upper()} {path}")
    assert undocumented == []


def test_the_batch_permission_check_is_a_read_and_ignores_the_key(app, admin_api) -> None:
    """A read sent as POST: repeating it is already safe, and its answer (which
    may name thousands of contacts) is never stored."""
    body = {"emails": ["anna@kund.se"], "topic": "events"}
    for _ in range(2):
        answer = post(admin_api, "/api/v1/permissions/check", body, "same-key")
        assert answer.status_code == 200
        assert "Idempotent-Replayed" not in answer.headers
    assert stored_keys(app) == []
