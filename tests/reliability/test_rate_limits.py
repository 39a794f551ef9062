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


# Lock-out as a weapon -------------------------------------------------------------
#
# The public forms that name an address (signup, unsubscribe by typed address,
# privacy requests) are limited per address so that nobody floods one person.
# Counted per address alone, that limit was a switch anyone could flip: five
# posts naming someone, even posts the honeypot dropped, and that person could
# not unsubscribe for an hour.

VICTIM = "sara@example.se"
ATTACKER_IP, OWNER_IP = "203.0.113.9", "198.51.100.7"


@pytest.fixture
def limited(app, database_url, smtp, request) -> Any:
    """The app with the public limits on, at their production settings."""
    request.addfinalizer(_limits_back_off)
    limited = create_app(
        {**TEST_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url, "RATELIMIT_ENABLED": True}
    )
    limited.config["SMTP_URL"] = app.config["SMTP_URL"]
    from extensions import limiter

    limiter.reset()
    return limited


def _post_form(client: Any, form: str, client_ip: str, *, bot: bool) -> int:
    data: dict[str, str] = {"email": VICTIM}
    if form == "/subscribe":
        data |= {"form_id": "hosted", "consent": "on", "language": "en", "topics": "newsletter"}
    if form == "/privacy/requests":
        data["kind"] = "access"
    if bot:
        data["website"] = "https://spam.example"  # the field people never see
    response = client.post(
        form,
        data=data,
        headers={"Origin": "http://localhost", "User-Agent": "Mozilla/5.0 (test)"},
        environ_base={"REMOTE_ADDR": client_ip},
    )
    return response.status_code


PUBLIC_FORMS = ["/unsubscribe", "/subscribe", "/privacy/requests"]


@pytest.mark.parametrize("form", PUBLIC_FORMS)
def test_posts_dropped_as_bots_count_toward_no_limit(limited, form) -> None:
    client = limited.test_client()
    # More than the per-address (5 per hour) and the per-client (30 per hour) limits.
    bots = [_post_form(client, form, ATTACKER_IP, bot=True) for _ in range(40)]
    assert set(bots) == {200}
    # Nothing was counted: from the same client, a person's post goes through,
    # and so does the owner's.
    assert _post_form(client, form, ATTACKER_IP, bot=False) == 200
    assert _post_form(limited.test_client(), form, OWNER_IP, bot=False) == 200


@pytest.mark.parametrize("form", PUBLIC_FORMS)
def test_another_client_cannot_use_up_the_limit_of_an_address(limited, form) -> None:
    attacker = [_post_form(limited.test_client(), form, ATTACKER_IP, bot=False) for _ in range(8)]
    # The flood from one client is still cut off after five ...
    assert attacker == [200] * 5 + [429] * 3
    # ... and the person the posts named, from their own address, is not.
    assert _post_form(limited.test_client(), form, OWNER_IP, bot=False) == 200


def test_the_owner_can_unsubscribe_after_an_attackers_posts(
    app, limited, smtp, mail_worker, admin_api
) -> None:
    from tests.mailing.conftest import link
    from tests.mailing.helpers import consented_contacts, decision

    [contact_id] = consented_contacts(app, [(VICTIM, "Sara", "sv")])
    attacker = limited.test_client()
    for _ in range(10):
        _post_form(attacker, "/unsubscribe", ATTACKER_IP, bot=True)

    owner = limited.test_client()
    assert _post_form(owner, "/unsubscribe", OWNER_IP, bot=False) == 200
    mail_worker.drain()
    [message] = smtp.to(VICTIM)  # the bots' posts sent nothing; the owner's did
    owner.post(link(message, "/unsubscribe/"), data={"scope": "all"})
    assert decision(admin_api, contact_id, "newsletter")["reason"] in ("unsubscribed", "suppressed")
