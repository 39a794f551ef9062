"""Row "mail bombing": one mailbox, four client addresses, every public form that mails.

The attack of issue 18: a mailbox got 180 emails in 36 s from four client
addresses. Each post named another sub-address of it (``victim+1@``,
``victim+2@`` ...), which the rate limits and the ten-minute rule each counted
as a new address, and the preference page, which had no limit at all, sent a
confirmation per save. Here the same posts go through the real limiter, with
the client addresses behind one trusted proxy (``TRUSTED_PROXY_HOPS``), and
the emails are counted where they land: the SMTP server, by mailbox.

The service promises at most one email a form can cause per mailbox in ten
minutes (and a daily cap): with the limiter on, and with it off (the outbox's
own rule, which holds even when every request gets through).
"""

from __future__ import annotations

import collections
import time

import pytest

from app import create_app
from tests.conftest import TEST_CONFIG
from tests.mailing.helpers import HOSTED, consented_contacts, post_from
from tests.reliability.conftest import figure, scale

DOMAIN = "bombed.example"
MAILBOX = f"victim@{DOMAIN}"
CLIENTS = ("203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4")
TEN_MINUTES = 600.0


def mailbox_of(address: str) -> str:
    """What a mail server delivers to: the address without its +tag, in lower case."""
    local, _, domain = address.lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _limits_back_off() -> None:
    """The limiter is one object for every app: switch it off again for the suite."""
    from extensions import limiter

    limiter.enabled = False
    limiter.reset()


@pytest.mark.parametrize("limits", ["on", "off"])
def test_one_mailbox_gets_at_most_one_email_in_ten_minutes_from_every_form(
    app, database_url, smtp, mail_worker, limits, request
) -> None:
    from consent.tokens import Purpose, make_token

    if limits == "on":
        request.addfinalizer(_limits_back_off)
    attacked = create_app(
        {
            **TEST_CONFIG,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "RATELIMIT_ENABLED": limits == "on",
            "TRUSTED_PROXY_HOPS": 1,
        }
    )
    attacked.config["SMTP_URL"] = app.config["SMTP_URL"]
    client = attacked.test_client()
    # The victim subscribed to the newsletter once; the attacker holds a
    # preferences link of theirs (a forwarded newsletter is enough).
    [victim] = consented_contacts(app, [(MAILBOX, "Victim", "en")])
    with app.app_context():
        preferences = f"/preferences/{make_token(Purpose.PREFERENCES, {'c': victim})}"

    rounds = scale(45, 450)
    statuses: collections.Counter[int] = collections.Counter()
    started = time.monotonic()
    for n in range(rounds):
        address = f"victim+{n}@{DOMAIN}" if n % 5 else f"Victim+{n}@{DOMAIN.upper()}"
        forms = [
            ("/subscribe", {**HOSTED, "email": address, "topics": "newsletter"}),
            ("/unsubscribe", {"email": address}),
            ("/privacy/requests", {"email": address, "kind": "access"}),
            (preferences, {"action": "save", "topics": ["newsletter", "events"]}),
        ]
        for i, (path, data) in enumerate(forms):
            statuses[post_from(client, path, data, CLIENTS[(n + i) % len(CLIENTS)])] += 1
    posted_in = time.monotonic() - started
    mail_worker.drain(timeout_ms=60_000)
    elapsed = time.monotonic() - started
    received = [r for r in smtp.recipients if mailbox_of(r) == MAILBOX]
    figure(
        f"mail_bombing:limits-{limits}",
        posts=sum(statuses.values()),
        client_addresses=len(CLIENTS),
        statuses=dict(statuses),
        posted_in_s=round(posted_in, 1),
        emails_into_the_mailbox=len(received),
        by_address=len(set(received)),
    )
    # Every email counted here reached the mailbox within one ten-minute window.
    assert elapsed < TEN_MINUTES
    assert statuses[500] == 0
    # The first signup's confirmation, and nothing else in ten minutes.
    assert len(received) == 1, collections.Counter(received).most_common(5)
