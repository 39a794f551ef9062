"""External ids (issue 20, item 1): the ``crm.external_ids`` interface that the
API, imports and the change feed build on."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kernel.errors import Conflict, InvalidInput


def _contacts(*emails: str) -> list[int]:
    from crm.services import upsert_contact
    from extensions import db

    ids = [upsert_contact(email, {})[0].id for email in emails]
    db.session.commit()
    return ids


def _external_rows() -> int:
    from crm.models import ExternalId
    from extensions import db

    return int(db.session.scalar(sa.select(sa.func.count()).select_from(ExternalId)) or 0)


def test_set_read_find_and_remove(app_ctx) -> None:
    from crm import external_ids
    from extensions import db

    anna, bo = _contacts("anna@kund.se", "bo@kund.se")
    external_ids.set_for_contact(anna, {"hubspot": "1234", "salesforce": "003XYZ"})
    external_ids.set_for_contact(bo, {"hubspot": "99"})
    db.session.commit()

    assert external_ids.for_contacts([anna, bo, 424242]) == {
        anna: {"hubspot": "1234", "salesforce": "003XYZ"},
        bo: {"hubspot": "99"},
    }
    assert external_ids.find_contact("hubspot", "1234") == anna
    assert external_ids.find_contact("hubspot", "99") == bo
    assert external_ids.find_contact("salesforce", "1234") is None

    # Systems not named keep their ids; None removes one; a new value replaces.
    external_ids.set_for_contact(anna, {"salesforce": None, "hubspot": "5678"})
    db.session.commit()
    assert external_ids.for_contacts([anna]) == {anna: {"hubspot": "5678"}}
    assert external_ids.find_contact("hubspot", "1234") is None


def test_an_id_of_another_contact_is_refused_with_its_id_and_nothing_written(app_ctx) -> None:
    from crm import external_ids
    from extensions import db

    anna, bo = _contacts("anna@kund.se", "bo@kund.se")
    external_ids.set_for_contact(anna, {"hubspot": "1234"})
    db.session.commit()
    before = _external_rows()

    with pytest.raises(Conflict) as refused:
        # A valid new id next to the taken one: neither is written.
        external_ids.set_for_contact(bo, {"pipedrive": "7", "hubspot": "1234"})
    assert refused.value.code == "external_id_taken"
    assert refused.value.details == {"contact_id": anna, "system": "hubspot"}
    db.session.rollback()
    assert _external_rows() == before
    assert external_ids.for_contacts([bo]) == {}

    # The same value in another system, or setting one's own id again, is fine.
    external_ids.set_for_contact(bo, {"salesforce": "1234"})
    external_ids.set_for_contact(anna, {"hubspot": "1234"})
    db.session.commit()
    assert external_ids.find_contact("salesforce", "1234") == bo


def test_companies_have_their_own_ids(app_ctx) -> None:
    from crm import external_ids
    from crm.models import Company
    from extensions import db

    (anna,) = _contacts("anna@kund.se")
    company = Company(name="Kund AB")
    db.session.add(company)
    db.session.flush()
    external_ids.set_for_company(company.id, {"hubspot": "1234"})
    # A company and a contact may share a value: HubSpot numbers them apart.
    external_ids.set_for_contact(anna, {"hubspot": "1234"})
    db.session.commit()
    assert external_ids.for_companies([company.id]) == {company.id: {"hubspot": "1234"}}
    assert external_ids.find_company("hubspot", "1234") == company.id
    assert external_ids.find_contact("hubspot", "1234") == anna


@pytest.mark.parametrize(
    ("ids", "bad"),
    [
        ({"HubSpot": "1"}, "HubSpot"),
        ({"1hubspot": "1"}, "1hubspot"),
        ({"": "1"}, ""),
        ({"a" * 33: "1"}, "a" * 33),
        ({"hub spot": "1"}, "hub spot"),
        ({"hubspot": ""}, "hubspot"),
        ({"hubspot": " 1234"}, "hubspot"),
        ({"hubspot": "1234 "}, "hubspot"),
        ({"hubspot": "12\n34"}, "hubspot"),
        ({"hubspot": "x" * 201}, "hubspot"),
    ],
)
def test_bad_system_names_and_values_are_refused(app_ctx, ids, bad) -> None:
    from crm import external_ids

    (anna,) = _contacts("anna@kund.se")
    with pytest.raises(InvalidInput) as refused:
        external_ids.set_for_contact(anna, ids)
    assert refused.value.code == "invalid_external_id"
    assert bad in refused.value.fields["external_ids"]
    assert _external_rows() == 0


def test_longest_valid_values_are_kept(app_ctx) -> None:
    from crm import external_ids
    from extensions import db

    (anna,) = _contacts("anna@kund.se")
    ids = {"a" + "b" * 31: "x" * 200, "sf": "0 0 3:ä/€"}
    external_ids.set_for_contact(anna, ids)
    db.session.commit()
    assert external_ids.for_contacts([anna]) == {anna: ids}


def test_removing_contacts_removes_their_ids(app_ctx) -> None:
    from crm import external_ids
    from crm.services import remove_contacts
    from extensions import db

    anna, bo = _contacts("anna@kund.se", "bo@kund.se")
    external_ids.set_for_contact(anna, {"hubspot": "1"})
    external_ids.set_for_contact(bo, {"hubspot": "2"})
    db.session.commit()
    remove_contacts([anna])
    db.session.commit()
    assert _external_rows() == 1
    assert external_ids.find_contact("hubspot", "1") is None
    assert external_ids.find_contact("hubspot", "2") == bo


def test_reading_many_contacts_is_one_query(app_ctx) -> None:
    from crm import external_ids
    from extensions import db

    ids = _contacts(*(f"c{n}@kund.se" for n in range(30)))
    for n, contact_id in enumerate(ids):
        external_ids.set_for_contact(contact_id, {"hubspot": str(n)})
    db.session.commit()
    statements: list[str] = []

    def note(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", note)
    try:
        found = external_ids.for_contacts(ids)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", note)
    assert len(found) == 30
    assert len([s for s in statements if "external_id" in s]) == 1
