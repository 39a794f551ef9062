"""The fast path of ``normalise_email`` answers exactly as email-validator does."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kernel.addresses import normalise_email
from kernel.errors import InvalidInput

ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
LOCAL = st.text(alphabet=ATEXT + '.. "@\\é<>(),;:', min_size=0, max_size=70)
LABEL = st.one_of(
    st.text(alphabet="abcXY09-", min_size=0, max_size=66),
    st.sampled_from(["xn--bcher-kva", "xn--zz", "localhost", "test", "invalid", "local", "123"]),
)
DOMAIN = st.builds(".".join, st.lists(LABEL, min_size=1, max_size=5)) | st.text(
    alphabet="abc.-_é[]0:", max_size=30
)


def _validator(raw: str) -> str | None:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def _ours(raw: str) -> str | None:
    try:
        return normalise_email(raw)
    except InvalidInput:
        return None


@settings(max_examples=3000, deadline=None)
@given(local=LOCAL, domain=DOMAIN, pad=st.sampled_from(["", " ", "\t"]))
@example(local="Anna.Svensson", domain="Example.SE", pad="")
@example(local="a", domain="xn--bcher-kva.example.com", pad="")
@example(local="a" * 65, domain="example.se", pad="")
@example(local="a" * 64, domain=("b" * 63 + ".") * 3 + "se", pad="")
@example(local="a..b", domain="example.se", pad="")
@example(local="a", domain="example.123", pad="")
@example(local="a", domain="localhost", pad="")
@example(local="a", domain="ex--ample.se", pad="")
def test_normalising_an_address_agrees_with_email_validator(
    local: str, domain: str, pad: str
) -> None:
    raw = f"{pad}{local}@{domain}{pad}"
    assert _ours(raw) == _validator(raw)
    # The second time the domain comes from the cache: the same answer.
    assert _ours(raw) == _validator(raw)


def test_a_refused_address_carries_email_validators_reason() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_email("anna@localhost")
    with pytest.raises(EmailNotValidError) as reference:
        validate_email("anna@localhost", check_deliverability=False)
    assert str(reference.value) in caught.value.message


def test_an_address_is_lower_cased_and_stripped() -> None:
    assert normalise_email("  Anna.Svensson@Example.SE ") == "anna.svensson@example.se"


@pytest.mark.parametrize(
    "raw",
    [
        "anna@localhost",
        "anna@example.test",
        "anna@shop.onion",
        "a..b@example.se",
        ".a@example.se",
        "a@ab--cd.se",
        "anna@example",
        "anna@-example.se",
        "anna@example.123",
    ],
)
def test_addresses_email_validator_refuses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_email(raw)
