"""The API description tells the truth: what it allows, the server accepts.

schemathesis generates only *positive* cases (requests the document allows:
every enum, format, length, bound and required field respected) for every
operation of ``/api/v1/openapi.json``, sends each with a token of a role the
operation admits, and the server must accept it. The only refusals allowed
are the ones that depend on the data already held, not on the request, and
each is listed in ``STATE_DEPENDENT`` with its reason; anything else (a 422
for a value the document allows, a 400, a 403 for the role the document
names, a 500) fails the test with the operation and the request that was
refused.

The operations come from the served document, so a route added later is
covered the day it is added: if its schema is looser than its validation,
this test fails for it.

The negative side (invalid input never causes a server error and every
answer matches the document) is ``test_schemathesis.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from app import create_app
from kernel.access import ACTIONS
from kernel.models import Role
from tests.conftest import TEST_CONFIG

# Examples per operation in the default run: the examples phase (the
# document's own examples) and the fuzzing phase. The ``slow`` variant adds
# schemathesis' coverage phase, which sends every boundary the document
# states (each enum value, each minimum and maximum length and number): about
# five minutes, so it runs with RELIABILITY_LONG=1 (or OPENAPI_TRUTH_THOROUGH=1).
EXAMPLES = int(os.environ.get("OPENAPI_TRUTH_EXAMPLES", "25"))
THOROUGH = (
    os.environ.get("RELIABILITY_LONG", "") == "1"
    or os.environ.get("OPENAPI_TRUTH_THOROUGH", "") == "1"
)

# The least privileged role first: the test acts as the smallest role the
# operation admits, so that what that role sees is checked too.
ROLE_ORDER = (Role.SALES, Role.MARKETING, Role.DPO, Role.ADMIN)


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    why: str


# Refusals that depend on what the service already holds, not on the request
# (the same request succeeds or fails by what earlier requests did), each
# documented on its operation. Keyed by (method, path template). Nothing else
# may refuse a request the document allows.
_CONTACT = "/api/v1/contacts/{contact_id}"
_RESTRICTED = Refusal(409, "restricted", "the contact's processing is restricted (GDPR art. 18)")
STATE_DEPENDENT: dict[tuple[str, str], tuple[Refusal, ...]] = {
    ("GET", "/api/v1/contacts"): (
        Refusal(404, "contact_not_found", "no contact holds that address"),
    ),
    ("POST", "/api/v1/contacts"): (
        _RESTRICTED,
        Refusal(422, "unknown_policy_version", "the policy version was never published"),
        Refusal(422, "invalid_relationship", "ends before the company's stored customer_since"),
        Refusal(422, "invalid_confirmation", "confirmed_at before evidence.obtained_at"),
    ),
    ("PATCH", _CONTACT): (
        _RESTRICTED,
        Refusal(409, "email_taken", "another contact has that address"),
        Refusal(422, "invalid_relationship", "ends before the company's stored customer_since"),
    ),
    ("DELETE", _CONTACT): (Refusal(409, "legal_hold", "a legal hold is set"),),
    ("DELETE", f"{_CONTACT}/legal-hold"): (Refusal(409, "no_legal_hold", "no legal hold is set"),),
    ("POST", f"{_CONTACT}/activities"): (_RESTRICTED,),
    ("POST", f"{_CONTACT}/restriction"): (
        Refusal(409, "restricted", "processing is restricted already"),
    ),
    ("DELETE", f"{_CONTACT}/restriction"): (
        Refusal(409, "not_restricted", "processing is not restricted"),
    ),
    # Not the data held but the file's own format, which the document states
    # in words (a CSV with a header row; docs/imports.md): JSON Schema cannot.
    ("POST", "/api/v1/imports"): (
        Refusal(422, "invalid_file", "the upload is not a CSV file with a header row"),
    ),
    ("POST", "/api/v1/policies"): (
        Refusal(409, "policy_version_exists", "that version is published already"),
        # Across the items of a list, which JSON Schema cannot say (uniqueItems
        # compares whole items); the operation's description says it.
        Refusal(422, "duplicate_wording", "two wordings with one key and language"),
    ),
    ("PUT", "/api/v1/web-visitors/{visitor_id}/contact"): (
        Refusal(409, "no_web_tracking_consent", "the contact has no web-tracking consent"),
        Refusal(409, "web_tracking_off", "the policy file names no web-tracking topic"),
    ),
}


def _config(*, coverage: bool, examples: int) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "generation": {"mode": "positive", "max-examples": examples},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": coverage},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


class _TestApp:
    """The WSGI app schemathesis calls: the suite's app, set per test."""

    def __init__(self) -> None:
        self.serving: Any = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": "sqlite://"})

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.serving(environ, start_response)


_target = _TestApp()


def _load(*, coverage: bool, examples: int) -> Any:
    loaded = schemathesis.openapi.from_wsgi(
        "/api/v1/openapi.json", _target, config=_config(coverage=coverage, examples=examples)
    )
    only = os.environ.get("OPENAPI_TRUTH_ONLY")  # one operation: "POST /api/v1/contacts"
    if only:
        method, path = only.split(" ", 1)
        loaded = loaded.include(method=method, path=path)
    return loaded


schema = _load(coverage=False, examples=EXAMPLES)
# schemathesis draws the coverage phase's cases when pytest collects the test,
# whether it then runs or is skipped: minutes of CPU in every pytest process
# that collects this module (docs/testing.md). So they are drawn only when the
# slow variant runs.
thorough_schema = _load(coverage=THOROUGH, examples=max(EXAMPLES, 100))


def _operation_role(app: Any, method: str, path: str) -> Role:
    """The least privileged role the operation's ``requires`` admits."""
    adapter = app.url_map.bind("localhost")
    endpoint, _ = adapter.match(re.sub(r"\{[^}]+\}", "1", path), method=method.upper())
    action = getattr(app.view_functions[endpoint], "_required_action", None)
    assert action is not None, f"{method.upper()} {path} has no kernel.access.requires guard"
    allowed = ACTIONS[action]
    return next(role for role in ROLE_ORDER if role in allowed)


@pytest.fixture
def seeded(app: Any, api_as: Any, token_for: Any) -> Iterator[dict[str, Any]]:
    """Rows the path ids name, so that requests reach the checks behind the 404."""
    _target.serving = app
    admin = api_as("admin")
    contact = admin.post("/api/v1/contacts", json={"email": "seed@kund.se", "country": "SE"})
    assert contact.status_code == 201, contact.json
    campaign = admin.post(
        "/api/v1/campaigns",
        json={
            "topic": "product-updates",
            "subject_sv": "Hej",
            "body_sv": "Hej",
            "subject_en": "Hi",
            "body_en": "Hi",
        },
    )
    assert campaign.status_code == 201, campaign.json
    webhook = admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    assert webhook.status_code == 201, webhook.json
    batch = admin.client.post(
        "/api/v1/imports",
        headers=admin.headers,
        data={
            "basis": "customer",
            "source": "crm",
            "file": (__import__("io").BytesIO(b"email\nx@kund.se\n"), "x.csv"),
        },
    )
    assert batch.status_code == 202, batch.json
    yield {
        "ids": {
            "contact_id": contact.json["id"],
            "campaign_id": campaign.json["id"],
            "webhook_id": webhook.json["id"],
            "batch_id": batch.json["batch_id"],
        },
        "tokens": {role: token_for(role.value) for role in Role},
    }


# Refusals JSON Schema cannot state, each said in its operation's description
# instead: which query parameters go together, and what a form field holding
# JSON must hold.
NOT_EXPRESSIBLE: dict[tuple[str, str], tuple[Refusal, ...]] = {
    ("GET", "/api/v1/contacts"): (
        Refusal(
            403,
            "forbidden",
            "the changed-since read (updated_after) needs contacts.sync (marketing, admin); "
            "the lookups need contacts.read: the role a query needs depends on its parameters",
        ),
        Refusal(
            422,
            "invalid_input",
            "exactly one of email, external_id and updated_after: OpenAPI cannot tie "
            "query parameters together",
        ),
    ),
    ("POST", "/api/v1/imports"): (
        Refusal(
            422,
            "invalid_mapping",
            "the mapping is JSON inside a multipart form field: described, not generated",
        ),
    ),
}
# A write's Idempotency-Key that an earlier example used with another body is
# refused by what an earlier request did (tests/test_idempotency.py proves it).
_KEY_REFUSALS = {"idempotency_key_reused", "idempotency_key_in_flight"}


def _allowed(method: str, path: str, status: int, code: str | None) -> bool:
    """Whether the refusal depends on the data held, not on the request."""
    if status == 404 and "{" in path and (code or "").endswith("not_found"):
        # The row a path names may be gone: erased by an earlier example.
        return True
    if status in (409, 422) and code in _KEY_REFUSALS:
        return True
    if any(
        refusal.status == status and refusal.code == code
        for refusal in NOT_EXPRESSIBLE.get((method, path), ())
    ):
        return True
    return any(
        refusal.status == status and refusal.code == code
        for refusal in STATE_DEPENDENT.get((method, path), ())
    )


def _describe(case: Any) -> str:
    parts = []
    if case.path_parameters:
        parts.append(f"path {case.path_parameters}")
    if case.query:
        parts.append(f"query {case.query}")
    if case.body is not None and not isinstance(case.body, bytes | bytearray):
        body = json.dumps(case.body, default=str, ensure_ascii=True)
        parts.append(f"body {body[:1500]}")
    return "; ".join(parts) or "no input"


def _check_accepted(case: Any, seeded: dict[str, Any]) -> None:
    app = _target.serving
    method, path = case.method.upper(), case.path
    for name in list(case.path_parameters or {}):
        if name in seeded["ids"]:
            case.path_parameters[name] = seeded["ids"][name]
    role = _operation_role(app, method, path)
    token = seeded["tokens"][role]
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    status = response.status_code
    if status < 400:
        case.validate_response(
            response,
            checks=[
                checks.status_code_conformance,
                checks.content_type_conformance,
                checks.response_schema_conformance,
            ],
        )
        return
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    code = error.get("code")
    assert _allowed(method, path, status, code), (
        f"{method} {path} (as {role.value}) refused a request its document allows: "
        f"{status} {code}: {error.get('message')} {error.get('fields', '')}\n"
        f"  request: {_describe(case)}"
    )


@schema.parametrize()
# The same examples every run, so that CI's verdict is the code's, not the
# draw's; the slow variant below draws afresh (and covers every boundary).
@settings(suppress_health_check=list(HealthCheck), deadline=None, derandomize=True)
def test_the_server_accepts_what_the_document_allows(case: Any, seeded: dict[str, Any]) -> None:
    _check_accepted(case, seeded)


@pytest.mark.slow
@pytest.mark.skipif(
    not THOROUGH, reason="RELIABILITY_LONG=1 runs every boundary the document states"
)
@thorough_schema.parametrize()
@settings(suppress_health_check=list(HealthCheck), deadline=None)
def test_every_boundary_the_document_states_is_accepted(case: Any, seeded: dict[str, Any]) -> None:
    _check_accepted(case, seeded)


def test_every_state_dependent_refusal_is_documented_on_its_operation() -> None:
    """What the test forgives, the document must say: each refusal above has
    its status among the operation's documented responses."""
    document = _target.serving.test_client().get("/api/v1/openapi.json").get_json()
    missing = [
        f"{method} {path}: {refusal.status} {refusal.code}"
        for (method, path), refusals in STATE_DEPENDENT.items()
        for refusal in refusals
        if str(refusal.status) not in document["paths"][path][method.lower()]["responses"]
    ]
    assert missing == [], "state-dependent refusals the document does not list"
