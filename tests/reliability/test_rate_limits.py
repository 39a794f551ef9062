"""Row "rate limits: 10,000 signups from one address": at most 1 confirmation
email to that address in 10 minutes.

Two layers hold the line: the per-address and per-IP request limits
(flask-limiter, enabled in this test's own app) and, behind them, the outbox
throttle that holds even when every request gets through (limits off).
"""

from __future__ import annotations

import collections
from typing import Any

import pytest

from app import create_app
from tests.conftest import TEST_CONFIG
from tests.mailing.helpers import outbox, signup
from tests.reliability.conftest import figure, scale


def _confirmations(app: Any, address_part: str) -> int:
    from tests.mailing.helpers import contact_id_of

    contact_id = contact_id_of(app, address_part)
    return sum(
        1 for row in outbox(app) if row.contact_id == contact_id and row.template == "confirm"
    )


def _limits_back_off() -> None:
    """The limiter is one object for every app: switch it off again for the suite."""
    from extensions import limiter

    limiter.enabled = False
    limiter.reset()


@pytest.mark.parametrize("limits", ["on", "off"])
def test_many_signups_for_one_address_send_one_confirmation(
    app, database_url, smtp, mail_worker, limits, request
) -> None:
    if limits == "on":
        request.addfinalizer(_limits_back_off)
        limited = create_app(
            {**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, "RATELIMIT_ENABLED": True}
        )
        limited.config["SMTP_URL"] = app.config["SMTP_URL"]
        client = limited.test_client()
        count = scale(2_000, 10_000)
    else:
        client = app.test_client()
        count = scale(300, 10_000)
    address = f"flood-{limits}@example.se"
    statuses: collections.Counter[int] = collections.Counter()
    for n in range(count):
        # Spellings that normalise to one address must count as one.
        spelled = address.upper() if n % 3 == 1 else address
        statuses[signup(client, spelled).status_code] += 1
    mail_worker.drain(timeout_ms=60_000)
    queued = _confirmations(app, address)
    delivered = len(smtp.to(address))
    figure(
        f"rate_limits:{limits}",
        signups=count,
        statuses=dict(statuses),
        confirmations_queued=queued,
        emails_received=delivered,
    )
    assert queued == 1 and delivered == 1
    assert statuses[500] == 0
