"""Imports that take a CRM's export as it is (issue 20 item 5): presets for
HubSpot, Salesforce, Pipedrive, Lime CRM and SuperOffice, the importer's own
mapping, first and last names joined, country names in English and Swedish,
and the record id stored as the contact's external id.

The sample files are written here with each vendor's export headers as its
public documentation names them (docs/imports.md, presets); no vendor account
is reachable from the test machine, so none is a live export. The rows are
made up.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from crm import external_ids
from crm.models import Contact
from extensions import db
from tests.conftest import count_rows, finish_imports
from tests.staff.helpers import client_as

# One export per preset: its headers (some columns the import does not read
# among them), three contacts, and what each must become.
EXPORTS: dict[str, str] = {
    "hubspot": (
        "Record ID,First Name,Last Name,Email,Phone Number,Company Name,Country/Region,"
        "Lifecycle Stage,Create Date\n"
        "5101,Anna,Berg,anna.berg@kund.se,+46 70 111 11 11,Kund AB,Sweden,customer,2024-05-01 10:00\n"
        "5102,Bernd,Köhler,bernd@kunde.de,,Kunde GmbH,Germany,lead,2024-06-02 11:30\n"
        "5103,Cissi,Öberg,cissi@kund.se,,Kund AB,sverige,customer,2024-07-03 09:15\n"
    ),
    "salesforce": (
        "Contact ID,First Name,Last Name,Title,Email,Account Name,Mailing Country,Contact Owner\n"
        "0035g00000AbCdEAAZ,Anna,Berg,CFO,anna.berg@kund.se,Kund AB,Sweden,Sam Sales\n"
        "0035g00000AbCdFAAZ,Bernd,Köhler,,bernd@kunde.de,Kunde GmbH,Tyskland,Sam Sales\n"
        "0035g00000AbCdGAAZ,Cissi,Öberg,,cissi@kund.se,Kund AB,SE,Sam Sales\n"
    ),
    "pipedrive": (
        "Person - ID,Person - Name,Person - First name,Person - Last name,"
        "Person - Email - Work,Person - Email - Home,Person - Phone - Work,"
        "Person - Organization,Person - Owner\n"
        "71,Anna Berg,Anna,Berg,anna.berg@kund.se,anna@home.example,,Kund AB,Sam\n"
        "72,,Bernd,Köhler,bernd@kunde.de,,+49 30 1234,Kunde GmbH,Sam\n"
        "73,Cissi Öberg,Cissi,Öberg,cissi@kund.se,,,Kund AB,Sam\n"
    ),
    "lime": (
        "idperson;Förnamn;Efternamn;E-post;Befattning;Företag;Land\n"
        "1001;Anna;Berg;anna.berg@kund.se;Ekonomichef;Kund AB;Sverige\n"
        "1002;Bernd;Köhler;bernd@kunde.de;;Kunde GmbH;Tyskland\n"
        "1003;Cissi;Öberg;cissi@kund.se;;Kund AB;SVERIGE\n"
    ),
    "superoffice": (
        "Person ID,First name,Last name,E-mail,Company,Country,Position\n"
        "201,Anna,Berg,anna.berg@kund.se,Kund AB,Sweden,CFO\n"
        "202,Bernd,Köhler,bernd@kunde.de,Kunde GmbH,Germany,\n"
        "203,Cissi,Öberg,cissi@kund.se,Kund AB,Sweden,\n"
    ),
}
IDS = {
    "hubspot": ("5101", "5102", "5103"),
    "salesforce": ("0035g00000AbCdEAAZ", "0035g00000AbCdFAAZ", "0035g00000AbCdGAAZ"),
    "pipedrive": ("71", "72", "73"),
    "lime": ("1001", "1002", "1003"),
    "superoffice": ("201", "202", "203"),
}
EMAILS = ("anna.berg@kund.se", "bernd@kunde.de", "cissi@kund.se")
NAMES = ("Anna Berg", "Bernd Köhler", "Cissi Öberg")
# Pipedrive has no country field on a person: nothing is read, nothing is made up.
COUNTRIES = {
    "pipedrive": (None, None, None),
    **{p: ("SE", "DE", "SE") for p in ("hubspot", "salesforce", "lime", "superoffice")},
}


def stored(app: Any) -> dict[str, tuple[str | None, str | None, dict[str, str]]]:
    """{email: (name, country, external ids)} of every contact."""
    with app.app_context():
        contacts = db.session.execute(
            sa.select(Contact.id, Contact.email, Contact.name, Contact.country)
        ).all()
        ids = external_ids.for_contacts([c.id for c in contacts])
        found = {c.email: (c.name, c.country, ids.get(c.id, {})) for c in contacts}
        db.session.remove()
        return found


@pytest.fixture(autouse=True)
def _worker(import_worker: Any) -> None:
    """The API and the staff page hand every import to the worker."""


def upload(api: Any, content: str | bytes, **form: str) -> Any:
    """POST the file; once the worker has run it, the batch's GET (200, its report).
    A refused upload's own answer."""
    data: dict[str, Any] = {"basis": "customer", "source": "crm-export", **form}
    raw = content.encode() if isinstance(content, str) else content
    data["file"] = (io.BytesIO(raw), "export.csv")
    response = api.client.post(
        "/api/v1/imports", headers=api.headers, data=data, content_type="multipart/form-data"
    )
    if response.status_code != 202:
        return response
    finish_imports()
    return api.get(response.headers["Location"])


def cli(app: Any, tmp_path: Path, content: str, *extra: str) -> Any:
    path = tmp_path / "export.csv"
    path.write_text(content, encoding="utf-8")
    return app.test_cli_runner().invoke(
        args=["contacts", "import", str(path), "--basis", "customer", "--source", "crm", *extra]
    )


def staff_upload(client: Any, content: str, **form: str) -> Any:
    data: dict[str, Any] = {"basis": "customer", "source": "crm-export", **form}
    data["file"] = (io.BytesIO(content.encode()), "export.csv")
    response = client.post("/staff/imports", data=data, content_type="multipart/form-data")
    finish_imports()
    return response


def flashed(client: Any, response: Any) -> str:
    page = client.get(response.location).get_data(as_text=True)
    return " ".join(re.findall(r'<p class="flash (?:error|success)">(.*?)</p>', page, re.S))


def expected(preset: str) -> dict[str, tuple[str | None, str | None, dict[str, str]]]:
    return {
        email: (name, country, {preset: record_id})
        for email, name, country, record_id in zip(
            EMAILS, NAMES, COUNTRIES[preset], IDS[preset], strict=True
        )
    }


# Each preset through each way in -------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(EXPORTS))
def test_the_api_imports_each_crms_export_with_its_preset(app, api_as, preset) -> None:
    response = upload(api_as("marketing"), EXPORTS[preset], preset=preset)
    assert response.status_code == 200, response.json
    assert (response.json["created"], response.json["rejected"]) == (3, 0)
    assert response.json["preset"] == preset
    assert stored(app) == expected(preset)
    batch = api_as("marketing").get(f"/api/v1/imports/{response.json['batch_id']}").json
    assert batch["preset"] == preset


@pytest.mark.parametrize("preset", sorted(EXPORTS))
def test_the_cli_imports_each_crms_export_with_its_preset(app, tmp_path, preset) -> None:
    result = cli(app, tmp_path, EXPORTS[preset], "--preset", preset, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["created"], report["rejected"], report["preset"]) == (3, 0, preset)
    assert stored(app) == expected(preset)


@pytest.mark.parametrize("preset", sorted(EXPORTS))
def test_the_staff_page_imports_each_crms_export_with_its_preset(app, preset) -> None:
    client = client_as(app, "marketing")
    page = client.get("/staff/imports").get_data(as_text=True)
    assert f'<option value="{preset}">' in page
    response = staff_upload(client, EXPORTS[preset], preset=preset)
    assert response.status_code == 303
    assert "File received: the import runs in the background." in flashed(client, response)
    assert stored(app) == expected(preset)
    batch_page = client.get(response.location).get_data(as_text=True)
    assert f'<dd class="columns-read-as">{preset}</dd>' in batch_page


def test_an_imported_contact_is_found_by_its_crm_id_through_the_api(app, api_as) -> None:
    marketing, sales = api_as("marketing"), api_as("sales")
    upload(marketing, EXPORTS["hubspot"], preset="hubspot")
    found = sales.get("/api/v1/contacts?external_id=hubspot:5102")
    assert found.status_code == 200, found.json
    body = found.json
    assert (body["email"], body["name"], body["country"]) == (
        "bernd@kunde.de",
        "Bernd Köhler",
        "DE",
    )
    assert body["external_ids"] == {"hubspot": "5102"}


def test_the_salesforce_preset_reads_data_loader_api_names_too(app, tmp_path) -> None:
    export = (
        "Id,FirstName,LastName,Email,Account.Name,MailingCountry\n"
        "0035g00000XyZaBAAV,Anna,Berg,anna.berg@kund.se,Kund AB,United Kingdom\n"
    )
    result = cli(app, tmp_path, export, "--preset", "salesforce", "--json")
    assert json.loads(result.output)["created"] == 1, result.output
    assert stored(app) == {
        "anna.berg@kund.se": ("Anna Berg", "GB", {"salesforce": "0035g00000XyZaBAAV"})
    }


def test_a_preset_reads_only_its_columns_and_lists_the_others(app, api_as) -> None:
    report = upload(api_as("marketing"), EXPORTS["hubspot"], preset="hubspot").json
    assert report["ignored_columns"] == ["Phone Number", "Lifecycle Stage", "Create Date"]


# The importer's own mapping ----------------------------------------------------------


SWEDISH_EXPORT = (
    "Kund-ID;Förnamn;Efternamn;E-postadress;Bolag;Landsnamn;Anteckning\n"
    "K-17;Anna;Berg;anna.berg@kund.se;Kund AB;Sverige;ringer på fredagar\n"
    "K-18;Bernd;Köhler;bernd@kunde.de;Kunde GmbH;Österrike;\n"
)
SWEDISH_MAPPING = {
    "Kund-ID": "external_id:visma",
    "Förnamn": "first_name",
    "Efternamn": "last_name",
    "E-postadress": "email",
    "Bolag": "company",
    "Landsnamn": "country",
}


def test_a_user_mapping_reads_the_columns_it_names_through_the_api(app, api_as) -> None:
    response = upload(api_as("marketing"), SWEDISH_EXPORT, mapping=json.dumps(SWEDISH_MAPPING))
    assert response.status_code == 200, response.json
    assert (response.json["created"], response.json["preset"]) == (2, "mapping")
    assert response.json["ignored_columns"] == ["Anteckning"]
    assert stored(app) == {
        "anna.berg@kund.se": ("Anna Berg", "SE", {"visma": "K-17"}),
        "bernd@kunde.de": ("Bernd Köhler", "AT", {"visma": "K-18"}),
    }


def test_a_user_mapping_file_is_read_by_the_cli(app, tmp_path) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(SWEDISH_MAPPING), encoding="utf-8")
    result = cli(app, tmp_path, SWEDISH_EXPORT, "--mapping", str(mapping))
    assert result.exit_code == 0, result.output
    assert "columns read as      mapping" in result.output
    assert stored(app)["bernd@kunde.de"] == ("Bernd Köhler", "AT", {"visma": "K-18"})


def test_a_user_mapping_is_taken_by_the_staff_page(app) -> None:
    client = client_as(app, "marketing")
    response = staff_upload(client, SWEDISH_EXPORT, mapping=json.dumps(SWEDISH_MAPPING))
    assert "File received: the import runs in the background." in flashed(client, response)
    assert stored(app)["anna.berg@kund.se"] == ("Anna Berg", "SE", {"visma": "K-17"})


# Names and countries -------------------------------------------------------------------


def test_first_and_last_name_are_joined_and_a_full_name_wins(app, api_as) -> None:
    content = (
        "email,first name,last name,name\n"
        "a@kund.se,Anna,Berg,\n"
        "b@kund.se,,Ek,\n"
        "c@kund.se,Carl,Dahl,Carl-Johan Dahl\n"
    )
    assert upload(api_as("marketing"), content).json["created"] == 3
    assert {e: v[0] for e, v in stored(app).items()} == {
        "a@kund.se": "Anna Berg",
        "b@kund.se": "Ek",
        "c@kund.se": "Carl-Johan Dahl",
    }


def test_country_names_in_swedish_and_english_become_codes(app, api_as) -> None:
    names = {
        "sverige": "SE",
        "Sweden": "SE",
        "SWE": "SE",
        "ÖSTERRIKE": "AT",
        "Osterrike": "AT",
        "Austria": "AT",
        "Tyskland": "DE",
        "germany": "DE",
        "Förenade kungariket": "GB",
        "Storbritannien": "GB",
        "United Kingdom": "GB",
        "Nederländerna": "NL",
        "the netherlands": "NL",
        "Tjeckien": "CZ",
        "Czech Republic": "CZ",
        "Norge": "NO",
        "Danmark": "DK",
        "Island": "IS",
        "Irland": "IE",
        "Schweiz": "CH",
        "USA": "US",
        "Förenta staterna": "US",
        "fi": "FI",
    }
    content = "email,country\n" + "".join(f"p{i}@kund.se,{name}\n" for i, name in enumerate(names))
    report = upload(api_as("marketing"), content).json
    assert (report["created"], report["rejected"]) == (len(names), 0), report["rejections"]
    countries = {e: v[1] for e, v in stored(app).items()}
    assert countries == {f"p{i}@kund.se": code for i, code in enumerate(names.values())}


def test_an_unknown_country_name_rejects_its_row_with_the_reason(app, api_as) -> None:
    content = (
        "Record ID,First Name,Last Name,Email,Country/Region\n"
        "1,Anna,Berg,anna@kund.se,Atlantis\n"
        "2,Bo,Ek,bo@kund.se,Sverige\n"
    )
    report = upload(api_as("marketing"), content, preset="hubspot").json
    assert (report["created"], report["rejected"]) == (1, 1)
    assert report["rejections"][0]["row"] == 2
    assert report["rejections"][0]["reason"].startswith("country: not an ISO 3166-1 code")
    assert "Atlantis" not in report["rejections"][0]["reason"]  # no row content in reasons
    assert list(stored(app)) == ["bo@kund.se"]


# Record ids ---------------------------------------------------------------------------


def test_a_record_id_another_contact_holds_rejects_only_its_row(app, api_as) -> None:
    marketing = api_as("marketing")
    first = "Record ID,Email\n5101,anna@kund.se\n"
    assert upload(marketing, first, preset="hubspot").json["created"] == 1
    holder = marketing.get("/api/v1/contacts?email=anna@kund.se").json["id"]
    second = (
        "Record ID,Email,First Name\n"
        "5101,bo@kund.se,Bo\n"  # anna's id on another address
        "5102,cissi@kund.se,Cissi\n"
        "5102,dan@kund.se,Dan\n"  # the same id twice in the file
    )
    report = upload(marketing, second, preset="hubspot").json
    assert (report["created"], report["rejected"]) == (1, 2)
    reasons = {r["row"]: r["reason"] for r in report["rejections"]}
    assert reasons[2] == (
        f"record id: this hubspot id already belongs to contact {holder}; row not imported"
    )
    assert reasons[4].startswith("record id: row 3 has the same hubspot id")
    assert stored(app) == {
        "anna@kund.se": (None, None, {"hubspot": "5101"}),
        "cissi@kund.se": ("Cissi", None, {"hubspot": "5102"}),
    }


def test_a_record_id_taken_in_an_earlier_batch_is_rejected(app, tmp_path) -> None:
    content = "Record ID,Email\n9,a@kund.se\n9,b@kund.se\n"
    result = cli(app, tmp_path, content, "--preset", "hubspot", "--batch-size", "1", "--json")
    report = json.loads(result.output)
    assert (report["created"], report["rejected"]) == (1, 1)
    assert "already belongs to contact" in report["rejections"][0]["reason"]


def test_a_known_contact_gets_its_record_id_and_a_rerun_changes_nothing(app, api_as) -> None:
    marketing = api_as("marketing")
    upload(marketing, "email,name\nanna.berg@kund.se,Anna Berg\n")
    before = count_rows(app)
    first = upload(marketing, EXPORTS["hubspot"], preset="hubspot").json
    assert (first["created"], first["updated"]) == (2, 1)
    assert stored(app) == expected("hubspot")
    events = count_rows(app)["consent_event"]
    again = upload(marketing, EXPORTS["hubspot"], preset="hubspot").json
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    assert count_rows(app)["consent_event"] == events
    assert count_rows(app)["external_id"] == before["external_id"] + 3


def test_a_record_id_gained_by_a_known_contact_is_told_in_the_change_feed(app, api_as) -> None:
    """A CRM mirroring the feed learns the id the import gave a contact it knew."""
    marketing = api_as("marketing")
    upload(marketing, "email\nanna@kund.se\n")
    with app.app_context():
        anna = db.session.scalar(sa.select(Contact.id))
        db.session.remove()
    first = marketing.get("/api/v1/changes?limit=1000").json
    upload(marketing, "Record ID,Email\n100,anna@kund.se\n", preset="hubspot")
    later = marketing.get(f"/api/v1/changes?after={first['next_cursor']}&limit=1000").json
    updates = [i for i in later["items"] if i["type"] == "contact.updated"]
    assert [(i["contact_id"], i["fields"]) for i in updates] == [(anna, ["external_ids"])]
    assert updates[0]["external_ids"] == {"hubspot": "100"}


def test_a_record_id_gained_moves_the_contacts_updated_at(app, api_as) -> None:
    """The changed-since read (``?updated_after=``) must see a contact whose
    CRM id an import set, as it sees one set through the API."""
    marketing = api_as("marketing")
    upload(marketing, "email\nanna@kund.se\n")
    with app.app_context():
        db.session.execute(sa.update(Contact).values(updated_at=datetime(2020, 1, 1, tzinfo=UTC)))
        db.session.commit()
    upload(marketing, "Record ID,Email\n100,anna@kund.se\n", preset="hubspot")
    with app.app_context():
        moved = db.session.scalar(sa.select(Contact.updated_at))
        db.session.remove()
    assert moved is not None and moved.year > 2020


def test_a_changed_record_id_replaces_the_contacts_old_one(app, api_as) -> None:
    marketing = api_as("marketing")
    upload(marketing, "Record ID,Email\n100,anna@kund.se\n", preset="hubspot")
    report = upload(marketing, "Record ID,Email\n200,anna@kund.se\n", preset="hubspot").json
    assert report["updated"] == 1
    assert stored(app)["anna@kund.se"][2] == {"hubspot": "200"}


def test_a_restricted_contact_does_not_get_a_record_id(app, api_as) -> None:
    marketing, admin = api_as("marketing"), api_as("admin")
    upload(marketing, "email\nanna@kund.se\n")
    contact_id = admin.get("/api/v1/contacts?email=anna@kund.se").json["id"]
    assert admin.post(f"/api/v1/contacts/{contact_id}/restriction", json={}).status_code == 201
    report = upload(marketing, "Record ID,Email\n77,anna@kund.se\n", preset="hubspot").json
    assert report["rejections"][0]["reason"].startswith("processing is restricted")
    assert stored(app)["anna@kund.se"][2] == {}


def test_a_record_id_that_cannot_be_an_external_id_rejects_its_row(app, api_as) -> None:
    content = "Record ID,Email\n" + "9" * 201 + ",a@kund.se\n1,b@kund.se\n"
    report = upload(api_as("marketing"), content, preset="hubspot").json
    assert (report["created"], report["rejected"]) == (1, 1)
    assert report["rejections"][0]["reason"].startswith("record id: An external id is 1-200")


# Suggestions, never guesses --------------------------------------------------------------


def test_an_export_read_without_its_preset_is_only_suggested_one(app, api_as, tmp_path) -> None:
    report = upload(api_as("marketing"), EXPORTS["hubspot"]).json
    assert (report["created"], report["preset"], report["suggested_preset"]) == (
        3,
        None,
        "hubspot",
    )
    # Read by the recognised names: the first and last names and the country
    # are read, the record id is not stored, as nobody chose the preset.
    assert {v[2].get("hubspot") for v in stored(app).values()} == {None}


def test_the_cli_and_the_staff_page_show_the_suggestion(app, tmp_path) -> None:
    result = cli(app, tmp_path, EXPORTS["superoffice"])
    assert "looks like a SuperOffice export: import it with --preset superoffice" in result.output
    client = client_as(app, "marketing")
    response = staff_upload(client, EXPORTS["hubspot"])
    assert "This file looks like a HubSpot export" in flashed(client, response)


def test_an_export_whose_email_column_is_not_recognised_is_refused_with_the_preset_named(
    app, api_as
) -> None:
    response = upload(api_as("marketing"), EXPORTS["pipedrive"])
    assert response.status_code == 422
    assert (
        "looks like a Pipedrive export: import it with the preset pipedrive"
        in (response.json["error"]["message"])
    )


# Bad input: 422, nothing written ----------------------------------------------------------


BAD_REQUESTS = [
    ({"preset": "zoho"}, "unknown_preset", "hubspot, lime, pipedrive, salesforce, superoffice"),
    ({"preset": "hubspot", "mapping": '{"Email": "email"}'}, "invalid_mapping", "not both"),
    ({"mapping": '{"Förnamn": "first_name"}'}, "invalid_mapping", "maps no column to email"),
    (
        {"mapping": '{"E-post": "email", "Ort": "city"}'},
        "invalid_mapping",
        "field that does not exist",
    ),
    (
        {"mapping": '{"E-post": "email", "ID": "external_id"}'},
        "invalid_mapping",
        "external_id:<system>",
    ),
    (
        {"mapping": '{"E-post": "email", "ID": "external_id:Hub Spot"}'},
        "invalid_mapping",
        "external_id:<system>",
    ),
    (
        {"mapping": '{"E-post": "email", "Mail": "email"}'},
        "invalid_mapping",
        "two columns to email",
    ),
    ({"mapping": '["E-post", "email"]'}, "invalid_mapping", "JSON object"),
    ({"mapping": "E-post = email"}, "invalid_mapping", "not JSON"),
    ({"mapping": '{"E-post": ["email"]}'}, "invalid_mapping", "header"),
    # Hostile mappings: nested past the JSON parser's depth, NUL bytes (refused by the
    # input check every request passes, kernel/inputs.py), a long header, an oversized one.
    ({"mapping": '{"E-post": ' + "[" * 5000 + "]" * 5000 + "}"}, "invalid_mapping", "not JSON"),
    ({"mapping": '{"E-post\u0000": "email\u0000"}'}, "invalid_characters", ""),
    ({"mapping": json.dumps({"x" * 201: "email"})}, "invalid_mapping", "1-200 characters"),
    ({"mapping": "x" * 17_000}, "invalid_input", "see fields"),
    (
        {"mapping": '{"E-post": "email", "Land": "country"}'},
        "invalid_file",
        "no column named 'Land'",
    ),
]


@pytest.mark.parametrize(("form", "code", "message"), BAD_REQUESTS)
def test_a_bad_preset_or_mapping_is_422_and_writes_nothing(
    app, api_as, form, code, message
) -> None:
    marketing = api_as("marketing")
    before = count_rows(app)
    response = upload(marketing, "E-post,Förnamn\na@kund.se,Anna\n", **form)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == code
    assert message in response.json["error"]["message"]
    assert count_rows(app) == before


def test_an_unknown_preset_is_refused_by_the_cli_and_the_staff_page(app, tmp_path) -> None:
    before = count_rows(app)
    result = cli(app, tmp_path, EXPORTS["hubspot"], "--preset", "zoho")
    assert result.exit_code != 0
    assert "Unknown preset; use one of hubspot, lime, pipedrive, salesforce, superoffice" in (
        result.output
    )
    client = client_as(app, "marketing")
    response = staff_upload(client, EXPORTS["hubspot"], mapping='{"Email": "emial"}')
    assert "field that does not exist" in flashed(client, response)
    assert {k: v for k, v in count_rows(app).items() if k != "staff_user"} == {
        k: v for k, v in before.items() if k != "staff_user"
    }


def test_a_preset_export_missing_its_email_column_is_refused(app, api_as) -> None:
    response = upload(api_as("marketing"), "Record ID,First Name\n1,Anna\n", preset="hubspot")
    assert response.status_code == 422
    assert "no email column" in response.json["error"]["message"]


def test_a_record_id_taken_by_a_concurrent_writer_rejects_only_that_row(app, api_as) -> None:
    """Another writer gives one of the batch's record ids to its own contact
    between our check and our insert (here: when the batch writes its first
    contact, after it read the holders; on SQLite the batch's first write, as
    writers are serialised): the unique constraint on (system, value) fails the
    batch, which is redone row by row, and only that row is refused."""
    marketing = api_as("marketing")
    upload(marketing, "email\nother@kund.se\n")
    other = marketing.get("/api/v1/contacts?email=other@kund.se").json["id"]
    clashed: list[bool] = []

    def concurrent_writer(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if clashed or not statement.startswith("INSERT INTO contact "):
            return
        clashed.append(True)
        with db.engine.connect() as writer:
            writer.execute(
                sa.text(
                    "INSERT INTO external_id (owner_type, owner_id, system, value) "
                    "VALUES ('contact', :owner, 'hubspot', '5102')"
                ),
                {"owner": other},
            )
            writer.commit()

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", concurrent_writer)
    try:
        report = upload(
            marketing,
            "Record ID,Email\n5101,anna@kund.se\n5102,bernd@kunde.de\n5103,cissi@kund.se\n",
            preset="hubspot",
        ).json
    finally:
        sa.event.remove(engine, "before_cursor_execute", concurrent_writer)
    assert clashed
    assert (report["created"], report["rejected"]) == (2, 1)
    assert report["rejections"] == [
        {
            "row": 3,
            "reason": f"record id: this hubspot id already belongs to contact {other}; "
            "row not imported",
        }
    ]
    assert "bernd@kunde.de" not in stored(app)


# kernel.countries: the names the presets' country columns hold -------------------------

EU_EEA = [
    "AT",
    "BE",
    "BG",
    "HR",
    "CY",
    "CZ",
    "DK",
    "EE",
    "FI",
    "FR",
    "DE",
    "GR",
    "HU",
    "IE",
    "IT",
    "LV",
    "LT",
    "LU",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SK",
    "SI",
    "ES",
    "SE",
    "IS",
    "LI",
    "NO",
]
COMMON = [
    "GB",
    "CH",
    "US",
    "CA",
    "AU",
    "NZ",
    "JP",
    "CN",
    "IN",
    "BR",
    "SG",
    "AE",
    "ZA",
    "TR",
    "UA",
    "KR",
    "MX",
    "IL",
    "HK",
]


def test_every_eu_eea_and_common_business_country_has_an_english_and_a_swedish_name() -> None:
    import gettext

    import pycountry

    from kernel.countries import country_code_from_name

    swedish = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["sv"])
    for code in (*EU_EEA, *COMMON):
        country = pycountry.countries.get(alpha_2=code)
        english = getattr(country, "common_name", None) or country.name
        assert country_code_from_name(english) == code, english
        assert country_code_from_name(english.upper()) == code, english
        assert country_code_from_name(swedish.gettext(country.name)) == code, code
    assert country_code_from_name("Österrike") == country_code_from_name("osterrike") == "AT"


def test_a_name_that_is_no_country_or_two_is_refused() -> None:
    from kernel.countries import country_code_from_name
    from kernel.errors import InvalidInput

    for value in ("Atlantis", "Korea", "Europe", "S", "XX"):
        with pytest.raises(InvalidInput):
            country_code_from_name(value)
    assert country_code_from_name("  ") is None
