"""The public forms that send mail count mailboxes, not typed addresses (X11).

``anna+1@`` and ``Anna+2@`` land in one mailbox, ``anna@``: the rate limits
(per client, per mailbox, per recipient domain, shared by every such form,
the preference page and confirmation renewals included) and the outbox's own
rule (one email a form can cause per mailbox per ten minutes, at most
``MAILBOX_DAILY_LIMIT`` a day) count them together. tests/reliability/
test_mail_bombing.py replays the attack of issue 18 against all of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from app import create_app
from extensions import db, limiter
from kernel.timestamps import utcnow
from tests.conftest import TEST_CONFIG
from tests.mailing.helpers import HOSTED, consented_contacts, outbox, post_from


@pytest.fixture
def limited(app, database_url) -> Iterator[Callable[..., Any]]:
    """A second app on the suite's database with the limiter on, behind one proxy
    (each post names its client in X-Forwarded-For)."""

    def make(**config: Any) -> Any:
        return create_app(
            {
                **TEST_CONFIG,
                "SQLALCHEMY_DATABASE_URI": database_url,
                "RATELIMIT_ENABLED": True,
                "TRUSTED_PROXY_HOPS": 1,
                "SIGNUP_LIMIT_PER_IP": "1000 per hour",
                "SIGNUP_LIMIT_PER_ADDRESS": "1000 per hour",
                "SIGNUP_LIMIT_PER_DOMAIN": "1000 per hour",
                **config,
            }
        ).test_client()

    yield make
    # The limiter is one object for every app: switch it off again for the suite.
    limiter.enabled = False
    with app.app_context():
        limiter.reset()


def _signup(client: Any, address: str, client_address: str) -> int:
    return post_from(
        client, "/subscribe", {**HOSTED, "email": address, "topics": "newsletter"}, client_address
    )


def test_the_limit_per_address_counts_the_mailbox_whatever_the_tag_or_case(limited) -> None:
    client = limited(SIGNUP_LIMIT_PER_ADDRESS="3 per hour")
    spellings = ["anna+1@firma.se", "Anna+2@Firma.se", "anna@firma.se", "ANNA+3@firma.se"]
    statuses = [_signup(client, a, "203.0.113.1") for a in spellings]
    assert statuses == [200, 200, 200, 429]
    assert _signup(client, "bo@firma.se", "203.0.113.1") == 200
    # Counted per mailbox and client: a stranger's posts never use up the
    # person's own allowance (issue 18, item 10); the mail itself stays bounded
    # by the outbox's rule whatever the clients (test_mail_bombing).
    assert _signup(client, "anna@firma.se", "198.51.100.7") == 200


def test_the_limit_per_domain_counts_every_mailbox_of_the_domain(limited) -> None:
    client = limited(SIGNUP_LIMIT_PER_DOMAIN="3 per hour")
    people = ["a@catchall.se", "b@catchall.se", "c+x@catchall.se", "d@CATCHALL.se"]
    statuses = [_signup(client, a, f"203.0.113.{n}") for n, a in enumerate(people)]
    assert statuses == [200, 200, 200, 429]
    assert _signup(client, "a@other.se", "203.0.113.9") == 200


def test_every_form_that_sends_mail_shares_one_allowance_per_client_and_mailbox(
    app, limited
) -> None:
    """The preference page and confirmation renewals had no limit at all, and each
    form counted on its own: four forms bought four allowances."""
    from consent.tokens import Purpose, make_token

    [contact_id] = consented_contacts(app, [("sara@firma.se", "Sara", "en")])
    with app.app_context():
        preferences = f"/preferences/{make_token(Purpose.PREFERENCES, {'c': contact_id})}"
    forms = [
        ("/subscribe", {**HOSTED, "email": "sara+a@firma.se", "topics": "newsletter"}),
        ("/unsubscribe", {"email": "sara+b@firma.se"}),
        ("/privacy/requests", {"email": "sara+c@firma.se", "kind": "access"}),
        (preferences, {"action": "save", "topics": ["newsletter", "events"]}),
    ]

    per_client = limited(SIGNUP_LIMIT_PER_IP="3 per hour")
    assert [post_from(per_client, p, d, "203.0.113.1") for p, d in forms] == [200, 200, 200, 429]
    limiter.reset()

    per_mailbox = limited(SIGNUP_LIMIT_PER_ADDRESS="3 per hour")
    statuses = [post_from(per_mailbox, p, d, "203.0.113.2") for p, d in forms]
    assert statuses == [200, 200, 200, 429]
    # The preference page alone, from one client: counted per mailbox too.
    limiter.reset()
    again = [post_from(per_mailbox, *forms[3], "198.51.100.1") for _ in range(5)]
    assert again == [200, 200, 200, 429, 429]


def test_confirmation_renewals_count_the_mailbox_behind_the_link(app, limited) -> None:
    from consent.models import SubscriptionRequest
    from consent.tokens import Purpose, make_token

    client = limited(SIGNUP_LIMIT_PER_ADDRESS="2 per hour")
    assert _signup(client, "renew@firma.se", "203.0.113.1") == 200
    with app.app_context():
        request_id = db.session.scalar(sa.select(SubscriptionRequest.id))
        old = make_token(Purpose.CONFIRM, {"r": request_id}, issued_at=utcnow() - timedelta(days=8))
        db.session.remove()
    renew = f"/confirm/{old}/renew"
    statuses = [post_from(client, renew, {}, "203.0.113.1") for _ in range(2)]
    assert statuses == [200, 429]


def _form_emails(app: Any) -> list[str]:
    from mailing.outbox import FORM_TEMPLATES

    return [row.template for row in outbox(app) if row.template in FORM_TEMPLATES]


def test_a_mailbox_gets_one_form_email_per_ten_minutes_and_the_daily_cap_whatever_the_form(
    app, monkeypatch
) -> None:
    """Where the emails are queued, so that every web process agrees: a new
    sub-address, another form or the preference page buys no new allowance."""
    from consent.evidence import Evidence
    from consent.subscriptions import Signup
    from consent.tokens import Purpose, make_token
    from kernel.addresses import keyed_hash
    from mailing import privacy_requests, subscription_flows

    monkeypatch.setitem(app.config, "MAILBOX_DAILY_LIMIT", 3)
    [sara] = consented_contacts(app, [("sara@firma.se", "Sara", "en")])
    start = utcnow()

    def signup(tag: str, at: Any) -> None:
        subscription_flows.subscribe(
            Signup(email=f"sara+{tag}@firma.se", topics=("newsletter",)), Evidence(), at=at
        )

    with app.app_context():
        preferences = make_token(Purpose.PREFERENCES, {"c": sara})
        signup("1", start)
        # Within ten minutes, no form mails the mailbox again.
        signup("2", start + timedelta(minutes=4))
        subscription_flows.save_preferences(
            preferences, ["newsletter", "events"], Evidence(), at=start + timedelta(minutes=5)
        )
        subscription_flows.send_unsubscribe_link(
            keyed_hash("sara+1@firma.se"), at=start + timedelta(minutes=6)
        )
        privacy_requests.open_privacy_request(
            keyed_hash("sara@firma.se"), "access", at=start + timedelta(minutes=7)
        )
        db.session.remove()
    assert _form_emails(app) == ["confirm"]

    with app.app_context():
        # Every eleven minutes one more, by any form, until the day's cap.
        subscription_flows.save_preferences(
            preferences, ["newsletter", "events"], Evidence(), at=start + timedelta(minutes=11)
        )
        subscription_flows.send_unsubscribe_link(
            keyed_hash("sara+2@firma.se"), at=start + timedelta(minutes=22)
        )
        privacy_requests.open_privacy_request(
            keyed_hash("sara+1@firma.se"), "access", at=start + timedelta(minutes=33)
        )
        signup("3", start + timedelta(minutes=44))
        db.session.remove()
    assert _form_emails(app) == ["confirm", "confirm", "unsubscribe_link"]

    with app.app_context():
        # A day after the first, there is room for one again.
        signup("4", start + timedelta(days=1, minutes=1))
        db.session.remove()
    assert _form_emails(app) == ["confirm", "confirm", "unsubscribe_link", "confirm"]


def test_signups_for_one_mailbox_at_the_same_moment_queue_one_email(app) -> None:
    """Every process agrees: the transactions asking for one mailbox take turns
    (an advisory lock on PostgreSQL, the write lock on SQLite)."""
    from consent.evidence import Evidence
    from consent.subscriptions import Signup
    from mailing import subscription_flows

    threads = 8
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def sign_up(n: int) -> None:
        with app.app_context():
            try:
                barrier.wait()
                subscription_flows.subscribe(
                    Signup(email=f"rush+{n}@firma.se", topics=("newsletter",)), Evidence()
                )
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)
            finally:
                db.session.remove()

    running = [threading.Thread(target=sign_up, args=(n,)) for n in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    assert errors == []
    assert _form_emails(app) == ["confirm"]
