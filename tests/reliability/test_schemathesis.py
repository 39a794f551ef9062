"""Property-based API testing from our own OpenAPI document, with every role.

No request may cause a server error, and every response must match the
documented schema, status codes and content type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from app import create_app
from kernel.models import Role
from tests.conftest import TEST_CONFIG

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


class _TestApp:
    """The WSGI app schemathesis calls: the suite's app, set per test.

    The OpenAPI document is read at import from an app with no database; the
    requests go to the test database through ``serving``.
    """

    def __init__(self) -> None:
        self.serving: Any = create_app({**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": "sqlite://"})

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.serving(environ, start_response)


_target = _TestApp()
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", _target)


@pytest.fixture
def role_tokens(app: Any, token_for: Any) -> Iterator[dict[str, str]]:
    _target.serving = app
    yield {role.value: token_for(role.value) for role in Role}


@schema.parametrize()
@settings(max_examples=20, suppress_health_check=list(HealthCheck), deadline=None)
def test_api_never_errors_and_matches_its_schema(case: Any, role_tokens: dict[str, str]) -> None:
    for token in role_tokens.values():
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
