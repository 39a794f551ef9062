"""A worker killed before its batch's ``sent`` commit: what the SMTP server had
accepted is not sent again (``mailing.acceptances``), against a real Redis, a
real SMTP server (aiosmtpd in this process) and the test database.

The kill is played by ``_mark`` (the batch's commit) dying with a
``BaseException``, as a SIGKILL would end the process there: the rows stay
``sending``, and a later delivery, once the claim timeout has passed, meets
them again, as the sweeper hands them over in production.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis as redis_client

from extensions import db
from kernel.timestamps import utcnow
from mailing import acceptances, delivery
from tests.mailing.test_campaigns import _consented_contacts
from tests.mailing.test_delivery_batches import _queued_campaign, _statuses


class Killed(BaseException):
    """The process ending between the SMTP server's "250" and the commit."""


@pytest.fixture
def noted(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """The notes kept in the test Redis under a namespace of this test's own,
    as the workers' Redis broker keeps them: (client, namespace)."""
    client = redis_client.Redis.from_url(redis_url)
    namespace = f"consent-test-accepted-{utcnow().timestamp()}"
    monkeypatch.setattr(acceptances, "_client", lambda: (client, namespace))
    monkeypatch.setattr(acceptances, "_paused_until", 0.0)
    yield client, namespace
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)


def _killed_before_the_commit(app: Any, ids: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    def die(letters: Any, error: Any) -> None:
        raise Killed

    with monkeypatch.context() as patch, app.app_context():
        patch.setattr(delivery, "_mark", die)
        with pytest.raises(Killed):
            delivery.deliver_many(ids)
        db.session.rollback()
        db.session.remove()


def _delivered_again(app: Any, ids: list[int]) -> dict[int, delivery.Delivery]:
    """The delivery the sweeper causes once the dead worker's claim has timed out."""
    later = utcnow() + timedelta(seconds=app.config["OUTBOX_CLAIM_TIMEOUT_S"] + 1)
    with app.app_context():
        try:
            return delivery.deliver_many(ids, at=later)
        finally:
            db.session.remove()


def test_a_batch_killed_before_its_commit_is_not_sent_again(
    app, smtp, noted, monkeypatch: pytest.MonkeyPatch
) -> None:
    _consented_contacts(app, 25, start=700)
    ids = _queued_campaign(app)
    _killed_before_the_commit(app, ids, monkeypatch)
    assert len(smtp.messages) == 25
    assert {status for status, _ in _statuses(app, ids)} == {"sending"}

    outcomes = _delivered_again(app, ids)

    assert {o.status for o in outcomes.values()} == {"sent"}
    assert _statuses(app, ids) == [("sent", None)] * 25
    per_address = Counter(str(m["To"]) for m in smtp.messages)
    assert len(per_address) == 25 and set(per_address.values()) == {1}
    # The committed marks took over: the notes are gone.
    assert acceptances.accepted(ids) == set()


def test_a_message_not_accepted_before_the_kill_is_sent_after_it(
    app, smtp, noted, monkeypatch: pytest.MonkeyPatch
) -> None:
    _consented_contacts(app, 4, start=800)
    ids = _queued_campaign(app)
    _killed_before_the_commit(app, ids, monkeypatch)
    # The kill came between the "250" of the last message and its note.
    client, namespace = noted
    assert client.delete(acceptances._key(namespace, ids[-1])) == 1

    _delivered_again(app, ids)

    assert _statuses(app, ids) == [("sent", None)] * 4
    per_address = Counter(str(m["To"]) for m in smtp.messages)
    assert len(per_address) == 4 and sorted(per_address.values()) == [1, 1, 1, 2]


def test_without_notes_a_first_claim_asks_nothing(
    app, smtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The common case pays no read: only a row claimed before can have been accepted."""
    asked: list[list[int]] = []
    monkeypatch.setattr(acceptances, "accepted", lambda ids: asked.append(list(ids)) or set())
    _consented_contacts(app, 3, start=900)
    ids = _queued_campaign(app)
    with app.app_context():
        delivery.deliver_many(ids)
        db.session.remove()
    assert asked == []
    assert _statuses(app, ids) == [("sent", None)] * 3


def test_a_redis_that_fails_does_not_stop_the_mail(
    app, smtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notes are a help against duplicates, never a condition for sending."""
    from tests.mailing.conftest import free_port

    nobody = redis_client.Redis(port=free_port(), socket_connect_timeout=0.2)
    monkeypatch.setattr(acceptances, "_client", lambda: (nobody, "consent-test-down"))
    monkeypatch.setattr(acceptances, "_paused_until", 0.0)
    _consented_contacts(app, 3, start=950)
    ids = _queued_campaign(app)
    _killed_before_the_commit(app, ids, monkeypatch)
    outcomes = _delivered_again(app, ids)
    assert {o.status for o in outcomes.values()} == {"sent"}
    assert _statuses(app, ids) == [("sent", None)] * 3
    # Every message arrived; without notes some went twice, as before them.
    assert len({str(m["To"]) for m in smtp.messages}) == 3
