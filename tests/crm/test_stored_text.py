"""Text no column can hold is refused by the domain itself, whoever calls it.

The request edge (``kernel.inputs``) refuses control characters and the
schemas refuse overlong fields; a CRM connector's records reach the services
without passing either. PostgreSQL refused such text with a DataError that
failed the whole write, and SQLite stored it silently."""

from __future__ import annotations

from typing import Any

import pytest

from consent import services as consent
from crm import bulk
from crm.services import CompanyInput
from kernel.access import CLI_ACTOR
from kernel.errors import InvalidInput
from tests.conftest import count_rows


@pytest.mark.parametrize(
    ("profile", "company", "message", "fields"),
    [
        (
            {"name": "Anna\x00"},
            None,
            "The name contains a NUL byte; it cannot be stored.",
            {"name": ["Contains a NUL byte."]},
        ),
        (
            {"name": "x" * 201},
            None,
            "The name is longer than 200 characters; it cannot be stored.",
            {"name": ["Is longer than 200 characters."]},
        ),
        (
            {"phone": "1" * 41},
            None,
            "The phone is longer than 40 characters; it cannot be stored.",
            {"phone": ["Is longer than 40 characters."]},
        ),
        (
            {"country": "S\x1be"},
            None,
            "The country contains a control character (U+001B); it cannot be stored.",
            {"country": ["Contains a control character (U+001B)."]},
        ),
        (
            {},
            CompanyInput(name="Kund\x7f AB"),
            "The company name contains a control character (U+007F); it cannot be stored.",
            {"company": {"name": ["Contains a control character (U+007F)."]}},
        ),
        (
            {},
            CompanyInput(name="Kund AB", org_number="5" * 41),
            "The company org number is longer than 40 characters; it cannot be stored.",
            {"company": {"org_number": ["Is longer than 40 characters."]}},
        ),
    ],
)
def test_a_contact_with_text_no_column_holds_is_refused_and_nothing_written(
    app: Any, profile: dict[str, Any], company: CompanyInput | None, message: str, fields: Any
) -> None:
    before = count_rows(app)
    with app.app_context():
        with pytest.raises(InvalidInput) as refused:
            consent.register_contact(CLI_ACTOR, "anna@kund.se", profile, company)
        assert refused.value.message == message
        assert refused.value.code == "invalid_text"
        assert refused.value.fields == fields
    assert count_rows(app) == before


def test_the_longest_text_the_columns_hold_is_taken(app: Any) -> None:
    with app.app_context():
        registration = consent.register_contact(
            CLI_ACTOR,
            "anna@kund.se",
            # A country code with spaces around it is read as the code it is.
            {"name": "Å" * 200, "phone": "+" + "4" * 39, "country": " se\n"},
            CompanyInput(name="K" * 200, org_number="5" * 40, country=" SE "),
        )
        assert registration.contact.name == "Å" * 200
        assert registration.contact.country == "SE"
        assert registration.contact.company is not None
        assert registration.contact.company.name == "K" * 200
        assert registration.contact.company.country == "SE"


def test_a_page_leaves_out_the_entries_it_cannot_store_and_creates_the_rest(app: Any) -> None:
    entries = [
        bulk.ContactInput("a@kund.se", {"name": "A\x00"}),
        bulk.ContactInput("b@kund.se", {}, CompanyInput(name="B" * 201)),
        bulk.ContactInput("c@kund.se", {"name": "C"}, CompanyInput(name="C AB")),
    ]
    with app.app_context():
        created = consent.register_new_contacts(CLI_ACTOR, entries)
    assert list(created) == [2]
    rows = count_rows(app)
    assert (rows["contact"], rows["company"]) == (1, 1)
