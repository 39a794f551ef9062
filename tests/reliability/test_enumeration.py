"""Row "enumeration": signup, unsubscribe-by-address and privacy requests
answer the same for a known, an unknown, a suppressed, an erased and a
restricted address (body, status, headers, timing beyond noise).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from consent.models import Basis, InterestKind
from consent.services import (
    BasisInput,
    record_objection,
    register_contact,
    restrict_processing,
)
from crm.services import remove_contact
from extensions import db
from kernel import settings
from kernel.access import SYSTEM_ACTOR
from tests.mailing.helpers import signup
from tests.reliability.conftest import figure, scale

STATES = ("known", "unknown", "suppressed", "erased", "restricted")
# Headers that legitimately differ per response.
# X-Request-ID is new on every answer (kernel/request_ids.py), whoever asks.
VARYING = {"Date", "Content-Length", "X-Request-ID"}
PRODUCTION_SIGNUP_FLOOR = settings.BY_NAME["SIGNUP_MIN_S"].default


def _prepare(app: Any, count: int) -> dict[str, list[str]]:
    """``count`` addresses in each state."""
    addresses = {state: [f"{state}{n}@example.se" for n in range(count)] for state in STATES}
    basis = BasisInput(
        type=Basis.LEGITIMATE_INTEREST, source="crm", interest_kind=InterestKind.CUSTOMER
    )
    with app.app_context():
        for state in ("known", "suppressed", "erased", "restricted"):
            for address in addresses[state]:
                contact = register_contact(
                    SYSTEM_ACTOR, address, {"name": "Known Person"}, basis=basis
                ).contact
                if state == "restricted":
                    # GDPR art. 18: a signup records nothing for it (R20).
                    restrict_processing(SYSTEM_ACTOR, contact.id, note="enumeration test")
                elif state != "known":
                    record_objection(SYSTEM_ACTOR, contact.id, note="enumeration test")
                if state == "erased":
                    remove_contact(contact.id)
                    db.session.commit()
        db.session.remove()
    return addresses


def _unsubscribe_by_address(client: Any, address: str) -> Any:
    return client.post(
        "/unsubscribe",
        data={"email": address},
        headers={"Origin": "http://localhost"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )


def _privacy_request(client: Any, address: str) -> Any:
    return client.post(
        "/privacy/requests",
        data={"email": address, "kind": "access"},
        headers={"Origin": "http://localhost"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )


FORMS = {
    "signup": lambda client, address: signup(client, address),
    "unsubscribe": _unsubscribe_by_address,
    "privacy_request": _privacy_request,
}


def _shape(response: Any) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    headers = tuple(sorted((k, v) for k, v in response.headers.items() if k not in VARYING))
    return response.status_code, response.get_data(), headers


@pytest.mark.parametrize("form", list(FORMS))
def test_responses_do_not_tell_which_addresses_are_known(app, client, form, monkeypatch) -> None:
    # The suite answers signups at once; here the production floor is back
    # (without it a new address answered 1-2 ms later than a known one).
    monkeypatch.setitem(app.config, "SIGNUP_MIN_SECONDS", PRODUCTION_SIGNUP_FLOOR)
    count = scale(30, 300)
    addresses = _prepare(app, count)
    post = FORMS[form]
    post(client, "warmup@example.se")
    shapes: dict[str, set[Any]] = {state: set() for state in STATES}
    timings: dict[str, list[float]] = {state: [] for state in STATES}
    for n in range(count):  # interleaved, so drift hits every state alike
        for state in STATES:
            started = time.perf_counter()
            response = post(client, addresses[state][n])
            timings[state].append(time.perf_counter() - started)
            shapes[state].add(_shape(response))
    distinct = {shape for found in shapes.values() for shape in found}
    medians = {state: statistics.median(t) for state, t in timings.items()}
    spread = max(
        statistics.quantiles(t, n=4)[2] - statistics.quantiles(t, n=4)[0] for t in timings.values()
    )
    gap = max(medians.values()) - min(medians.values())
    figure(
        f"enumeration:{form}",
        addresses_per_state=count,
        distinct_responses=len(distinct),
        median_ms={s: round(m * 1000, 2) for s, m in medians.items()},
        widest_iqr_ms=round(spread * 1000, 2),
    )
    assert len(distinct) == 1, {s: [x[:2] for x in v] for s, v in shapes.items()}
    # Timing "beyond noise": the medians may not differ by more than the widest
    # interquartile range or 2 ms, whichever is larger.
    assert gap <= max(spread, 0.002), medians
