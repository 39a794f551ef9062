"""CSV imports as an operator runs them: the CLI and POST /api/v1/imports."""

from __future__ import annotations

import io
import json
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import count_rows, imported

HEADER = "email,name,company,organisation number,country,language,last interaction date,last interaction kind\n"


def write(tmp_path: Path, text: str | bytes, name: str = "list.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def run_import(app, path: Path, basis: str = "customer", *extra: str):  # type: ignore[no-untyped-def]
    result = app.test_cli_runner().invoke(
        args=["contacts", "import", str(path), "--basis", basis, "--source", "fair-2026", *extra]
    )
    return result


def report_of(app, path: Path, basis: str = "customer", *extra: str) -> dict:  # type: ignore[no-untyped-def]
    result = run_import(app, path, basis, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def ledger_size(app) -> int:  # type: ignore[no-untyped-def]
    return count_rows(app)["consent_event"]


def decision(admin_api, email: str, topic: str = "events") -> dict:  # type: ignore[no-untyped-def]
    body = {"emails": [email], "topic": topic}
    return admin_api.post("/api/v1/permissions/check", json=body).json["decisions"][0]


def test_customer_import_creates_contacts_allowed_on_legitimate_interest(
    app, tmp_path, admin_api
) -> None:
    path = write(
        tmp_path,
        HEADER
        + "anna@kund.se,Anna Berg,Kund AB,556000-1111,SE,sv,2025-03-01,order\n"
        + "bo@kund.se,Bo Ek,Kund AB,556000-1111,SE,en,\n",
    )
    report = report_of(app, path)
    assert (report["created"], report["updated"], report["rejected"]) == (2, 0, 0)
    allowed = decision(admin_api, "anna@kund.se")
    assert (allowed["allowed"], allowed["reason"]) == (True, "customer")
    contact = admin_api.get("/api/v1/contacts?email=anna@kund.se").json
    assert contact["company"]["org_number"] == "556000-1111"
    assert contact["language"] == "sv"
    assert contact["last_interaction_at"].startswith("2025-03-01")
    events = admin_api.get(f"/api/v1/contacts/{contact['id']}/events").json
    assert [(e["kind"], e["source"]) for e in events] == [("basis_granted", "import")]
    with app.app_context():
        from crm.models import Contact
        from extensions import db
        from kernel.addresses import keyed_hash

        # The campaign audience joins the suppression list on this column.
        stored = db.session.scalar(
            sa.select(Contact.address_hash).where(Contact.email == "anna@kund.se")
        )
        assert stored == keyed_hash("anna@kund.se")
    assert events[0]["source_ref"] == f"import-batch:{report['batch_id']}"


def test_running_the_same_file_again_changes_nothing(app, tmp_path, admin_api) -> None:
    path = write(
        tmp_path,
        HEADER
        + "anna@kund.se,Anna Berg,Kund AB,556000-1111,SE,sv,2025-03-01,order\n"
        + "not-an-address,X,,,SE,,\n"
        + "bo@lista.se,Bo Ek,Lista AB,,DK,en,\n",
    )
    first = report_of(app, path, "customer")
    before = admin_api.get("/api/v1/contacts?email=anna@kund.se").json
    events_before = ledger_size(app)
    second = report_of(app, path, "customer")
    after = admin_api.get("/api/v1/contacts?email=anna@kund.se").json
    assert first["created"] == 2
    assert (second["created"], second["updated"], second["unchanged"]) == (0, 0, 2)
    assert second["rejected"] == 1
    assert ledger_size(app) == events_before
    assert after["updated_at"] == before["updated_at"]
    # The stated last interaction is one activity, not one per run (X16).
    assert len(admin_api.get(f"/api/v1/contacts/{after['id']}/activities").json) == 1


def test_swedish_headers_semicolons_and_a_bom_are_read(app, tmp_path, admin_api) -> None:
    text = (
        "E-post;Namn;Företag;Org.nr;Land;Språk;Senaste kontakt;Kontakttyp\n"
        "karin@bolag.se;Karin Åberg;Bolaget AB;556111-2222;se;sv;2024-12-24;möte\n"
    )
    path = write(tmp_path, b"\xef\xbb\xbf" + text.encode())
    report = report_of(app, path)
    assert report["created"] == 1, report
    contact = admin_api.get("/api/v1/contacts?email=karin@bolag.se").json
    assert (contact["name"], contact["country"]) == ("Karin Åberg", "SE")
    assert contact["company"]["name"] == "Bolaget AB"


def test_broken_rows_are_reported_by_row_and_never_abort_the_others(app, tmp_path) -> None:
    rows = [
        "a1@kund.se,A1,,,SE,,",
        "not-an-address,Broken,,,SE,,",  # row 3
        'a2@kund.se,"=HYPERLINK(""http://evil.example"",""click"")",,,SE,,',  # row 4
        "a3@kund.se,A3,,,XX,,",  # row 5: unknown country
        "a4@kund.se,A4,,,SE,,2999-01-01",  # row 6: future
        "a5@kund.se,A5,,,SE,,01/02/2024",  # row 7: not ISO
        "a6@kund.se,A6,,,SE,,",
    ]
    path = write(tmp_path, HEADER + "\n".join(rows) + "\n")
    report = report_of(app, path, "customer", "--batch-size", "2")
    assert report["created"] == 2
    assert [r["row"] for r in report["rejections"]] == [3, 4, 5, 6, 7]
    reasons = {r["row"]: r["reason"] for r in report["rejections"]}
    assert "formula" in reasons[4]
    assert "country" in reasons[5].lower()
    assert "future" in reasons[6]
    assert "YYYY-MM-DD" in reasons[7]
    with app.app_context():
        from crm.models import Contact
        from extensions import db

        names = set(db.session.scalars(sa.select(Contact.name)))
    assert names == {"A1", "A6"}


def test_cli_prints_the_report_with_every_rejected_row(app, tmp_path) -> None:
    path = write(tmp_path, HEADER + "x,1,,,SE,,\n" + "ok@kund.se,,,,SE,,\n" + "y,2,,,SE,,\n")
    result = run_import(app, path)
    assert result.exit_code == 0, result.output
    assert "created              1" in result.output
    assert "row 2: email" in result.output
    assert "row 4: email" in result.output


def test_the_same_address_twice_in_a_file_is_one_contact(app, tmp_path, admin_api) -> None:
    path = write(
        tmp_path, HEADER + "anna@kund.se,Anna,,,SE,,\n" + "ANNA@kund.se,Anna Berg,,,SE,,\n"
    )
    report = report_of(app, path)
    assert (report["created"], report["updated"]) == (1, 1)
    assert admin_api.get("/api/v1/contacts?email=anna@kund.se").json["name"] == "Anna Berg"


def test_consent_cannot_be_imported(app, tmp_path) -> None:
    path = write(tmp_path, HEADER + "anna@kund.se,Anna,,,SE,,\n")
    result = run_import(app, path, "consent")
    assert result.exit_code != 0
    assert "Consent cannot be imported" in result.output
    assert count_rows(app)["contact"] == 0


def test_files_that_are_not_utf8_csv_are_refused_whole(app, tmp_path) -> None:
    latin1 = write(tmp_path, (HEADER + "åsa@kund.se,Åsa Öberg,,,SE,,\n").encode("latin-1"), "l.csv")
    no_email = write(tmp_path, "name,company\nAnna,Kund AB\n", "n.csv")
    one_line = tmp_path / "huge.csv"
    with one_line.open("wb") as handle:
        chunk = b"a" * (1024 * 1024)
        for _ in range(50):
            handle.write(chunk)
    workbook = write(tmp_path, b"PK\x03\x04" + bytes(range(256)) * 10, "x.xlsx")
    utf16 = write(tmp_path, HEADER.encode("utf-16"), "u16.csv")
    empty = write(tmp_path, "", "e.csv")
    expected = {
        latin1: "not UTF-8",
        no_email: "no email column",
        one_line: "longer than 64 KiB",
        workbook: "binary file",
        utf16: "UTF-16",
        empty: "empty",
    }
    for path, message in expected.items():
        result = run_import(app, path)
        assert result.exit_code != 0, path
        assert message in result.output, (path, result.output)
    assert count_rows(app)["contact"] == 0
    assert count_rows(app)["import_batch"] == 0


def test_a_bad_line_inside_the_file_rejects_only_its_row(app, tmp_path) -> None:
    body = (
        HEADER.encode()
        + b"one@kund.se,One,,,SE,,\n"
        + b"three@kund.se,"
        + b"x" * (70 * 1024)
        + b",,,SE,,\n"
        + "two@kund.se,Tv\u00e5,,,SE,,\n".encode("latin-1")
        + b"four@kund.se,Four,,,SE,,\n"
    )
    # Only the start of the file is checked whole; later lines are judged one by one.
    path = write(tmp_path, body)
    report = report_of(app, path)
    assert report["created"] == 2
    assert [(r["row"], r["reason"]) for r in report["rejections"]] == [
        (3, "line longer than 64 KiB"),
        (4, "name: not valid UTF-8 text"),
    ]


def test_industry_list_skips_suppressed_addresses_and_owes_the_art14_notice(
    app, tmp_path, admin_api
) -> None:
    objector = admin_api.post(
        "/api/v1/contacts", json={"email": "nej@lista.se", "country": "SE"}
    ).json["id"]
    admin_api.post(f"/api/v1/contacts/{objector}/objection", json={"received_via": "phone"})
    admin_api.delete(f"/api/v1/contacts/{objector}")  # erased; the suppression hash stays
    path = write(tmp_path, HEADER + "nej@lista.se,Nej,,,SE,,\n" + "ja@lista.se,Ja,,,SE,,\n")
    report = report_of(app, path, "industry_list")
    assert (report["created"], report["skipped_suppressed"]) == (1, 1)
    assert admin_api.get("/api/v1/contacts?email=nej@lista.se").status_code == 404
    with app.app_context():
        from crm.models import Contact
        from extensions import db

        contact = db.session.scalar(sa.select(Contact).where(Contact.email == "ja@lista.se"))
        assert contact.art14_notice_owed_since is not None
    assert decision(admin_api, "ja@lista.se")["reason"] == "industry_list"


def test_restricted_contacts_are_not_changed_by_an_import(app, tmp_path, admin_api) -> None:
    contact_id = admin_api.post(
        "/api/v1/contacts", json={"email": "anna@kund.se", "name": "Anna", "country": "SE"}
    ).json["id"]
    assert (
        admin_api.post(
            f"/api/v1/contacts/{contact_id}/restriction", json={"received_via": "email"}
        ).status_code
        == 201
    )
    path = write(tmp_path, HEADER + "anna@kund.se,Someone Else,,,SE,,\n")
    report = report_of(app, path)
    assert report["rejections"][0]["reason"].startswith("processing is restricted")
    assert admin_api.get(f"/api/v1/contacts/{contact_id}").json["name"] == "Anna"


def upload(api, content: bytes, basis: str = "customer", source: str = "crm-export"):  # type: ignore[no-untyped-def]
    return api.client.post(
        "/api/v1/imports",
        headers=api.headers,
        data={"basis": basis, "source": source, "file": (io.BytesIO(content), "list.csv")},
        content_type="multipart/form-data",
    )


def test_api_import_accepts_files_over_one_mib_and_reports(app, api_as, import_worker) -> None:
    marketing = api_as("marketing")
    company = "Kundföretaget i Norrland Aktiebolag avdelning för inköp och logistik"
    lines = [HEADER] + [f"p{i}@kund.se,Person {i},{company},,SE,sv,\n" for i in range(12_000)]
    content = "".join(lines).encode()
    assert len(content) > 1024 * 1024
    batch = imported(marketing, upload(marketing, content), import_worker)
    assert (batch["status"], batch["created"], batch["actor"][:15]) == (
        "done",
        12_000,
        "token:marketing",
    )
    assert batch["rows_done"] == batch["rows_total"] == 12_000


def test_api_import_limits_role_size_and_basis(app, api_as) -> None:
    sales, marketing = api_as("sales"), api_as("marketing")
    content = (HEADER + "a@kund.se,A,,,SE,,\n").encode()
    assert upload(sales, content).status_code == 403
    refused = upload(marketing, content, basis="consent")
    assert refused.status_code == 422
    assert refused.json["error"]["code"] == "consent_not_importable"
    missing = upload(marketing, b"name\nAnna\n")
    assert (missing.status_code, missing.json["error"]["code"]) == (422, "invalid_file")
    app.config["IMPORT_MAX_BYTES"] = 1000
    try:
        assert upload(marketing, content + b"x" * 2000).status_code == 413
    finally:
        app.config["IMPORT_MAX_BYTES"] = 200 * 1024 * 1024
    # Other routes keep the 1 MiB limit.
    big = marketing.post("/api/v1/contacts", json={"email": "b@kund.se", "name": "x" * 1_100_000})
    assert big.status_code == 413


def test_api_lists_every_rejection_of_a_batch_in_pages(app, api_as, import_worker) -> None:
    marketing = api_as("marketing")
    lines = [HEADER] + [f"bad{i},X,,,SE,,\n" for i in range(1500)]
    report = imported(marketing, upload(marketing, "".join(lines).encode()), import_worker)
    assert report["rejected"] == 1500
    assert len(report["rejections"]) == 1000
    batch_id = report["batch_id"]
    page = marketing.get(f"/api/v1/imports/{batch_id}/rejections?after_row=1001&limit=600").json
    assert [r["row"] for r in page][:2] == [1002, 1003]
    assert page[-1]["row"] == 1501


def test_a_concurrent_create_rejects_only_the_clashing_row(app, tmp_path) -> None:
    """Another writer commits one of the batch's addresses between our read and
    our insert: the batch is redone row by row and only that row is refused."""
    from extensions import db

    clashed = []

    def concurrent_writer(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if clashed or not statement.startswith("INSERT INTO contact "):
            return
        clashed.append(True)
        with db.engine.connect() as other:
            other.execute(
                sa.text(
                    "INSERT INTO contact (email, language, created_at, updated_at) "
                    "VALUES ('b@kund.se', 'sv', :now, :now)"
                ),
                {"now": "2026-01-01 00:00:00"},
            )
            other.commit()

    path = write(tmp_path, HEADER + "a@kund.se,A,,,SE,,\nb@kund.se,B,,,SE,,\nc@kund.se,C,,,SE,,\n")
    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", concurrent_writer)
    try:
        report = report_of(app, path)
    finally:
        sa.event.remove(engine, "before_cursor_execute", concurrent_writer)
    assert clashed
    # b@ now exists (the other writer's), so the row-by-row retry updates it.
    assert (report["created"], report["updated"], report["rejected"]) == (2, 1, 0)
    assert count_rows(app)["contact"] == 3


def test_windows_line_ends_and_excels_sep_line_are_understood(app, tmp_path, admin_api) -> None:
    text = "sep=;\r\nemail;name;country\r\nanna@kund.se;Anna;SE\r\nbo@kund.se;Bo;SE\r\n"
    report = report_of(app, write(tmp_path, text.encode()))
    assert (report["created"], report["rejected"]) == (2, 0), report
    assert admin_api.get("/api/v1/contacts?email=bo@kund.se").json["name"] == "Bo"


class CountingStream(io.RawIOBase):
    """A file that remembers the largest piece ever asked of it."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)
        self.largest = 0

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.inner.seek(offset, whence)

    def read(self, size: int = -1) -> bytes:
        chunk = self.inner.read(size)
        self.largest = max(self.largest, len(chunk))
        return chunk

    def readline(self, size: int | None = -1) -> bytes:
        chunk = self.inner.readline(size)
        self.largest = max(self.largest, len(chunk))
        return chunk


def test_the_file_is_streamed_never_read_whole(app) -> None:
    from consent.imports import import_contacts
    from kernel.access import cli_actor

    rows = "".join(f"s{i}@kund.se,Person {i},,,SE,,\n" for i in range(5_000))
    stream = CountingStream((HEADER + rows).encode())
    with app.app_context():
        report = import_contacts(cli_actor(), stream, basis="customer", source="crm")
    assert report.created == 5_000
    assert len(HEADER + rows) > 150 * 1024
    assert stream.largest <= 64 * 1024  # the encoding check of the head, then line by line


def test_an_import_is_posted_to_webhook_receivers(app, tmp_path, admin_api) -> None:
    admin_api.post("/api/v1/webhooks", json={"url": "https://crm.example.com/hooks"})
    report = report_of(app, write(tmp_path, HEADER + "a@kund.se,A,,,SE,,\nb@kund.se,B,,,SE,,\n"))
    assert report["created"] == 2
    # Each new contact: contact.created and contact.decisions_changed (the feed's items).
    assert count_rows(app)["webhook_delivery"] == 4
    report_of(app, write(tmp_path, HEADER + "a@kund.se,A,,,SE,,\nb@kund.se,B,,,SE,,\n"))
    assert count_rows(app)["webhook_delivery"] == 4  # nothing changed, nothing posted


def test_odd_form_fields_and_a_png_get_a_clear_error(app, api_as) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"
    response = api_as("marketing").client.post(
        "/api/v1/imports",
        headers=api_as("marketing").headers,
        data={
            "": "null",
            "\r": "null",
            "basis": "customer",
            "source": ",",
            "file": (io.BytesIO(png), "file.png"),
        },
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_file"


def test_a_header_with_a_stray_carriage_return_is_a_clear_error(app, admin_api) -> None:
    # Found by schemathesis: csv.Error escaped as a 500.
    before = count_rows(app)
    response = admin_api.client.post(
        "/api/v1/imports",
        data={
            "basis": "customer",
            "source": "fair",
            "file": (io.BytesIO(b"email,na\rme\na@b.se,x\n"), "x.csv"),
        },
        headers=admin_api.headers,
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_file"
    assert count_rows(app) == before


def test_a_last_interaction_is_taken_only_from_a_customer_file_with_its_kind_as_an_activity(
    app, tmp_path, admin_api
) -> None:
    """X16: an import's last interaction date moves the retention clock only as an
    interaction the importer states happened with the person: a customer file,
    with what it was, never later than now, recorded as an activity."""
    rows = (
        "dated@kund.se,A,,,SE,,2025-03-01,meeting\n"
        "bare@kund.se,B,,,SE,,2025-03-01,\n"
        "kindonly@kund.se,C,,,SE,,,call\n"
        "marketing@kund.se,D,,,SE,,2025-03-01,marketing_email\n"
        "future@kund.se,E,,,SE,,2999-01-01,call\n"
        "ancient@kund.se,F,,,SE,,1900-01-01,call\n"
    )
    report = report_of(app, write(tmp_path, HEADER + rows))
    reasons = {r["row"]: r["reason"] for r in report["rejections"]}
    assert report["created"] == 1, report
    assert "say what the interaction was in a 'last interaction kind' column" in reasons[3]
    assert "needs the last interaction date too" in reasons[4]
    assert "an interaction the person took part in" in reasons[5]
    assert "in the future" in reasons[6]
    assert "before 1970-01-01" in reasons[7]
    contact = admin_api.get("/api/v1/contacts?email=dated@kund.se").json
    activities = admin_api.get(f"/api/v1/contacts/{contact['id']}/activities").json
    assert [(a["kind"], a["occurred_at"][:10]) for a in activities] == [("meeting", "2025-03-01")]
    assert "import batch" in activities[0]["note"]

    listed = report_of(
        app, write(tmp_path, HEADER + "lista@bolag.se,L,,,SE,,2025-03-01,call\n"), "industry_list"
    )
    assert (listed["created"], listed["rejected"]) == (0, 1)
    assert "not accepted on an industry list" in listed["rejections"][0]["reason"]


def test_an_imported_contact_is_written_once_and_a_granted_one_is_stamped(
    app, tmp_path, admin_api
) -> None:
    """A new contact's row is written once: the ledger's updated_at stamp
    (``crm.changed_since``) leaves a contact created by the same write alone,
    so it is not rewritten with every index it has. A known contact that only
    gains the basis still has its updated_at moved (the changed-since read)."""
    known = admin_api.post("/api/v1/contacts", json={"email": "known@kund.se", "country": "SE"})
    assert known.status_code in (200, 201), known.json
    known_before = known.json["updated_at"]
    path = write(tmp_path, HEADER + "new@kund.se,Ny,,,SE,sv,,\nknown@kund.se,,,,,,,\n")
    report = report_of(app, path, "industry_list")
    assert (report["created"], report["updated"]) == (1, 1)
    with app.app_context():
        from crm.models import Contact
        from extensions import db

        rows = dict(
            (email, (created, updated))
            for email, created, updated in db.session.execute(
                sa.select(Contact.email, Contact.created_at, Contact.updated_at)
            )
        )
        db.session.remove()
    assert rows["new@kund.se"][0] == rows["new@kund.se"][1]
    after = admin_api.get("/api/v1/contacts?email=known@kund.se").json
    assert after["updated_at"] > known_before
