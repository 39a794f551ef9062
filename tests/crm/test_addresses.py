"""The fast path of ``normalise_email`` never disagrees with email-validator."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.addresses import _plain_address, normalise_email
from crm.errors import InvalidInput

# Characters near the fast path's edges: its alphabet, specials it refuses,
# dots and hyphens in odd places, non-ASCII letters and upper case.
_ALPHABET = "abcxyzAZ09._%+-!#'=@ äé"
_LABEL = st.text("abzAZ09-", min_size=1, max_size=70)
_LOCAL = st.text(_ALPHABET.replace("@", ""), min_size=0, max_size=70)
_TLD = st.sampled_from(["se", "com", "COM", "test", "local", "x", "c0m", "xn--p1ai", "onion"])


def _reference(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


@settings(max_examples=3000, deadline=None)
@given(local=_LOCAL, labels=st.lists(_LABEL, min_size=0, max_size=4), tld=_TLD)
def test_fast_path_agrees_with_email_validator(local: str, labels: list[str], tld: str) -> None:
    address = f"{local}@{'.'.join([*labels, tld])}"
    fast = _plain_address(address)
    if fast is not None:
        assert fast == _reference(address), address


@settings(max_examples=2000, deadline=None)
@given(st.text(_ALPHABET, max_size=40))
def test_fast_path_never_accepts_what_email_validator_refuses(raw: str) -> None:
    fast = _plain_address(raw)
    if fast is not None:
        assert _reference(raw) == fast, raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Anna.Berg@Example.SE", "anna.berg@example.se"),
        ("  anna+news@example.co.uk ", "anna+news@example.co.uk"),
        ("anna@bücher.de", "anna@bücher.de"),  # the full path (IDNA)
        ("ANNA@XN--BCHER-KVA.DE", "anna@bücher.de"),
    ],
)
def test_normalised_forms(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "anna@localhost",
        "anna@example.test",
        "a..b@example.se",
        ".a@example.se",
        "a@ab--cd.se",
        "anna@example",
        "anna@-example.se",
        "anna@example.123",
    ],
)
def test_refused_on_either_path(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_email(raw)
