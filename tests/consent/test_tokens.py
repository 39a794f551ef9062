"""Signed links: one purpose per serializer, opaque payloads, key rotation."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from consent.tokens import LinkExpired, LinkInvalid, Purpose, make_token, read_token
from kernel.timestamps import utcnow


def test_a_token_holds_ids_only_and_reads_back(app_ctx) -> None:
    token = make_token(Purpose.UNSUBSCRIBE, {"c": 7, "t": "events"})
    payload = token.split(".")[0]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert decoded == {"c": 7, "t": "events"}
    assert read_token(Purpose.UNSUBSCRIBE, token) == {"c": 7, "t": "events"}


@pytest.mark.parametrize("other", [p for p in Purpose if p is not Purpose.CONFIRM])
def test_a_token_for_one_purpose_is_refused_for_every_other(app_ctx, other) -> None:
    token = make_token(Purpose.CONFIRM, {"r": 1})
    with pytest.raises(LinkInvalid) as refused:
        read_token(other, token)
    assert not isinstance(refused.value, LinkExpired)


def test_each_purpose_expires_after_its_own_lifetime(app_ctx) -> None:
    eight_days = utcnow() - timedelta(days=8)
    with pytest.raises(LinkExpired) as expired:
        read_token(Purpose.CONFIRM, make_token(Purpose.CONFIRM, {"r": 3}, issued_at=eight_days))
    assert expired.value.payload == {"r": 3}
    unsubscribe = make_token(Purpose.UNSUBSCRIBE, {"c": 1}, issued_at=eight_days)
    assert read_token(Purpose.UNSUBSCRIBE, unsubscribe) == {"c": 1}


def test_old_keys_listed_as_fallbacks_still_verify_and_new_links_use_the_new_key(app) -> None:
    with app.app_context():
        old = make_token(Purpose.PREFERENCES, {"c": 1})
    saved = app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"]
    app.config.update(SECRET_KEY="rotated-key", SECRET_KEY_FALLBACKS=[saved[0]])
    try:
        with app.app_context():
            assert read_token(Purpose.PREFERENCES, old) == {"c": 1}
            new = make_token(Purpose.PREFERENCES, {"c": 1})
        app.config.update(SECRET_KEY="rotated-key", SECRET_KEY_FALLBACKS=[])
        with app.app_context():
            assert read_token(Purpose.PREFERENCES, new) == {"c": 1}
            with pytest.raises(LinkInvalid):
                read_token(Purpose.PREFERENCES, old)
    finally:
        app.config.update(SECRET_KEY=saved[0], SECRET_KEY_FALLBACKS=saved[1])
