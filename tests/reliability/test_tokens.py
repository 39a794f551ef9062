"""Row "tokens: 100,000 tampered, expired, wrong-purpose or replayed": 0 accepted.

The serializers are attacked directly at full count (they are the only door);
a smaller sample goes through HTTP, where a replayed confirmation or
unsubscribe link must change nothing the second time.
"""

from __future__ import annotations

import base64
import json
import random
import time
from datetime import timedelta

import pytest

from consent.tokens import LinkExpired, LinkInvalid, Purpose, make_token, read_token
from kernel.timestamps import utcnow
from tests.mailing.conftest import link
from tests.mailing.helpers import contact_id_of, events, outbox, signup
from tests.reliability.conftest import figure, scale

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _same_signed_bytes(a: str, b: str) -> bool:
    """Two spellings of one token (base64's unused low bits): not a tampering."""
    try:
        pa, ta, sa_ = a.split(".")
        pb, tb, sb = b.split(".")
        return (_unb64(pa), _unb64(ta), _unb64(sa_)) == (_unb64(pb), _unb64(tb), _unb64(sb))
    except (ValueError, Exception):
        return False


def _attacks(rng: random.Random, count: int):  # type: ignore[no-untyped-def]
    """(kind, purpose to read it as, token) for ``count`` hostile tokens."""
    purposes = list(Purpose)
    long_ago = utcnow() - timedelta(days=400)
    for n in range(count):
        purpose = purposes[n % len(purposes)]
        payload = {"c": rng.randrange(1, 10**6), "r": rng.randrange(1, 10**6), "t": "newsletter"}
        good = make_token(purpose, payload)
        kind = ("flip", "forge_payload", "truncate", "extend", "wrong_purpose", "expired",
                "foreign_key", "swap_signature")[n % 8]  # fmt: skip
        if kind == "flip":
            i = rng.randrange(len(good))
            token = good[:i] + rng.choice(ALPHABET.replace(good[i], "")) + good[i + 1 :]
            if _same_signed_bytes(good, token):
                token = good[:i] + "*" + good[i + 1 :]
            yield kind, purpose, token
        elif kind == "forge_payload":
            _, stamp, sig = good.split(".")
            forged = dict(payload, c=payload["c"] + 1, r=payload["r"] + 1)
            body = _b64(json.dumps(forged, separators=(",", ":")).encode())
            yield kind, purpose, f"{body}.{stamp}.{sig}"
        elif kind == "truncate":
            yield kind, purpose, good[: rng.randrange(0, len(good))]
        elif kind == "extend":
            yield kind, purpose, good + rng.choice(ALPHABET)
        elif kind == "wrong_purpose":
            other = purposes[(purposes.index(purpose) + 1 + (n // 8) % 3) % len(purposes)]
            yield kind, other, good
        elif kind == "expired":
            yield kind, purpose, make_token(purpose, payload, issued_at=long_ago)
        elif kind == "foreign_key":
            yield kind, purpose, _foreign(purpose, payload)
        else:
            other = make_token(purpose, dict(payload, c=payload["c"] + 7))
            yield kind, purpose, good.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]


def _foreign(purpose: Purpose, payload: dict) -> str:  # type: ignore[type-arg]
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer("not-our-key", salt=f"consent-service/{purpose.value}").dumps(
        payload
    )


def test_no_hostile_token_is_accepted_by_the_serializers(app_ctx) -> None:
    count = scale(100_000, 100_000)
    rng = random.Random(8)
    accepted: list[tuple[str, str]] = []
    expired_as_expired = 0
    started = time.perf_counter()
    for kind, purpose, token in _attacks(rng, count):
        try:
            read_token(purpose, token)
        except LinkExpired:
            expired_as_expired += kind == "expired"
            # An expired link is refused; only a confirmation may ask for a new email.
        except LinkInvalid:
            pass
        else:
            accepted.append((kind, token))
    figure(
        "tokens",
        tried=count,
        accepted=len(accepted),
        seconds=round(time.perf_counter() - started, 1),
    )
    assert accepted == []
    assert expired_as_expired == count // 8


def test_replayed_and_tampered_links_through_http_change_nothing(
    app, client, smtp, mail_worker, admin_api
) -> None:
    address = "replay@example.se"
    assert signup(client, address).status_code == 200
    mail_worker.drain()
    [confirmation] = smtp.to(address)
    confirm_path = link(confirmation, "/confirm/")
    assert client.post(confirm_path, headers={"Origin": "http://localhost"}).status_code == 200
    mail_worker.drain()
    contact_id = contact_id_of(app, address)
    assert contact_id is not None
    before = len(events(admin_api, contact_id))
    rows_before = len(outbox(app))
    welcome = smtp.to(address)[-1]
    unsubscribe_path = link(welcome, "/unsubscribe/")

    sample = scale(200, 2_000)
    rng = random.Random(80)
    accepted = 0
    for n in range(sample):
        path = confirm_path if n % 2 else unsubscribe_path
        prefix, token = path.rsplit("/", 1)
        i = rng.randrange(len(token))
        bad = token[:i] + rng.choice(ALPHABET.replace(token[i], "")) + token[i + 1 :]
        if _same_signed_bytes(token, bad):
            continue
        response = client.post(f"{prefix}/{bad}", headers={"Origin": "http://localhost"})
        accepted += response.status_code < 400
    # Replays of the genuine confirmation link: "already confirmed", nothing new.
    replays = scale(50, 500)
    for _ in range(replays):
        response = client.post(confirm_path, headers={"Origin": "http://localhost"})
        assert response.status_code == 200
    mail_worker.drain()
    replayed_changes = len(events(admin_api, contact_id)) - before
    extra_emails = len(outbox(app)) - rows_before
    figure("tokens", http_tampered=sample, http_accepted=accepted, replays=replays,
           replay_changes=replayed_changes + extra_emails)  # fmt: skip
    assert accepted == 0
    assert replayed_changes == 0 and extra_emails == 0


@pytest.mark.parametrize("purpose", list(Purpose))
def test_a_genuine_token_still_works(app_ctx, purpose) -> None:
    """The control: the attack generator's starting point is accepted."""
    assert read_token(purpose, make_token(purpose, {"c": 1}))["c"] == 1
