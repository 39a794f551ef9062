"""Behind a reverse proxy: whose address the rate limits count and a consent's
evidence records (TRUSTED_PROXY_HOPS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from app import create_app
from extensions import db
from tests.conftest import TEST_CONFIG
from tests.mailing.helpers import HOSTED, SITE_ORIGIN

PROXY = "10.0.0.5"


@pytest.fixture
def limited(app, database_url) -> Iterator[Any]:
    """A second app on the suite's database, with rate limits on: two signups an
    hour per client address, many per address signed up."""
    from extensions import limiter

    def make(**config: Any) -> Any:
        return create_app(
            {
                **TEST_CONFIG,
                "SQLALCHEMY_DATABASE_URI": database_url,
                "RATELIMIT_ENABLED": True,
                "SIGNUP_LIMIT_PER_IP": "2 per hour",
                "SIGNUP_LIMIT_PER_ADDRESS": "100 per hour",
                **config,
            }
        )

    yield make
    # The limiter is one object for every app: switch it off again for the suite.
    limiter.enabled = False
    with app.app_context():
        limiter.reset()


def _signup(client: Any, address: str, forwarded_for: str | None) -> int:
    headers = {"Origin": SITE_ORIGIN}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    response = client.post(
        "/subscribe",
        data={**HOSTED, "email": address, "topics": "newsletter"},
        headers=headers,
        environ_base={"REMOTE_ADDR": PROXY},
    )
    return response.status_code


def _recorded_address(app: Any, address: str) -> str | None:
    """The client address the ledger kept as evidence of the signup."""
    from consent.models import ConsentEvent, EventKind
    from crm.models import Contact

    with app.app_context():
        found = db.session.scalar(
            sa.select(ConsentEvent.ip_address)
            .join(Contact, Contact.id == ConsentEvent.contact_id)
            .where(Contact.email == address, ConsentEvent.kind == EventKind.REQUESTED)
        )
        db.session.remove()
        return found


def test_behind_one_proxy_each_client_is_counted_and_recorded_by_its_own_address(
    app, limited
) -> None:
    client = limited(TRUSTED_PROXY_HOPS="1").test_client()

    assert _signup(client, "first@example.se", "203.0.113.7") == 200
    # Whatever the client wrote into the header itself stands left of what the
    # proxy appended, and is not believed.
    assert _signup(client, "second@example.se", "198.51.100.66, 203.0.113.7") == 200
    assert _signup(client, "third@example.se", "203.0.113.7") == 429
    assert _signup(client, "fourth@example.se", "198.51.100.9") == 200

    assert _recorded_address(app, "first@example.se") == "203.0.113.7"
    assert _recorded_address(app, "second@example.se") == "203.0.113.7"
    assert _recorded_address(app, "fourth@example.se") == "198.51.100.9"
    assert _recorded_address(app, "third@example.se") is None


def test_with_no_proxy_trusted_a_forged_header_changes_nothing(app, limited) -> None:
    client = limited().test_client()

    assert _signup(client, "first@example.se", "203.0.113.7") == 200
    assert _signup(client, "second@example.se", "198.51.100.9") == 200
    # A new forged address every time does not buy a new allowance.
    assert _signup(client, "third@example.se", "192.0.2.99") == 429

    assert _recorded_address(app, "first@example.se") == PROXY
    assert _recorded_address(app, "second@example.se") == PROXY


@pytest.mark.parametrize("value", ["two", "-1", "1.5", 1.5, True, None])
def test_a_proxy_count_that_is_not_a_whole_number_stops_the_start(database_url, value) -> None:
    with pytest.raises(RuntimeError, match="TRUSTED_PROXY_HOPS must be a whole number"):
        create_app(
            {**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, "TRUSTED_PROXY_HOPS": value}
        )
