"""The staff import pages: upload a CSV, read its report and its rejected rows."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import sqlalchemy as sa

from consent.models import ImportBatch
from crm.models import Contact
from extensions import db
from tests.conftest import finish_imports
from tests.staff.helpers import client_as

HEADER = "email,name,company,country,language\n"


@pytest.fixture(autouse=True)
def _worker(import_worker: Any) -> None:
    """The page hands every import to the worker."""


def _upload(client: Any, content: bytes, **form: str) -> Any:
    """Post the form and wait for the worker to run what it queued."""
    data: dict[str, Any] = {"basis": "industry_list", "source": "Mässan 2026", **form}
    data["file"] = (io.BytesIO(content), "lista.csv")
    response = client.post("/staff/imports", data=data, content_type="multipart/form-data")
    finish_imports()
    return response


def _flashed(client: Any, response: Any) -> str:
    """The messages the page after ``response``'s redirect shows at its top."""
    page = client.get(response.location).get_data(as_text=True)
    return " ".join(re.findall(r'<p class="flash (?:error|success)">(.*?)</p>', page, re.S))


def _contacts(app: Any) -> list[str]:
    with app.app_context():
        found = list(db.session.scalars(sa.select(Contact.email).order_by(Contact.email)))
        db.session.remove()
        return found


def _batches(app: Any) -> int:
    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count()).select_from(ImportBatch))
        db.session.remove()
        return int(count or 0)


def test_marketing_imports_a_file_and_reads_its_report(app) -> None:
    client = client_as(app, "marketing", name="Maja Marknad")
    content = (
        HEADER
        + "anna@kund.se,Anna Kund,Kund AB,SE,sv\n"
        + "not-an-address,Bertil,,SE,sv\n"
        + "cecilia@kund.se,Cecilia,Kund AB,XX,sv\n"
        + "david@kund.se,David,,SE,en\n"
    ).encode()

    response = _upload(client, content)

    assert response.status_code == 303
    page = client.get(response.location).get_data(as_text=True)
    assert "File received: the import runs in the background." in page
    assert _contacts(app) == ["anna@kund.se", "david@kund.se"]
    counts = dict(re.findall(r'<dd class="(\w+)">(\d+)</dd>', page))
    assert (counts["rows"], counts["created"], counts["rejected"]) == ("4", "2", "2")
    rejected = re.findall(r'<tr class="rejection"><td[^>]*>(\d+)</td><td[^>]*>([^<]*)</td>', page)
    assert [row for row, _ in rejected] == ["3", "4"]
    assert "not-an-address" not in page  # a reason never repeats the row
    assert "Mässan 2026" in page and "lista.csv" in page

    listing = client.get("/staff/imports").get_data(as_text=True)
    assert listing.count('<tr class="batch">') == 1
    assert "Maja Marknad (marketing@staff.example)" in listing


def test_a_file_that_cannot_be_imported_says_why_and_stores_nothing(app) -> None:
    client = client_as(app, "marketing")

    utf16 = _upload(client, (HEADER + "anna@kund.se,Anna,,SE,sv\n").encode("utf-16"))
    assert utf16.status_code == 303
    assert "UTF-16" in _flashed(client, utf16)

    no_email = _upload(client, b"name,company\nAnna,Kund AB\n")
    assert "email column" in _flashed(client, no_email)

    consent = _upload(client, (HEADER + "anna@kund.se,Anna,,SE,sv\n").encode(), basis="consent")
    assert "Consent cannot be imported from a file" in _flashed(client, consent)

    no_source = _upload(client, (HEADER + "anna@kund.se,Anna,,SE,sv\n").encode(), source="")
    assert _flashed(client, no_source).startswith("source:")

    no_file = client.post(
        "/staff/imports",
        data={"basis": "customer", "source": "CRM"},
        content_type="multipart/form-data",
    )
    assert _flashed(client, no_file) == "Choose a CSV file to import."

    assert _contacts(app) == [] and _batches(app) == 0


def test_a_file_over_the_general_request_limit_is_taken_with_csrf_on(app, monkeypatch) -> None:
    """The 1 MiB limit of every other form is lifted for this one before the CSRF
    check reads the form; the CSRF check still applies."""
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    client = client_as(app, "marketing")
    page = client.get("/staff/imports").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    rows = [f"person{i:05d}@kund.se,Person Number {i},Kund AB,SE,sv\n" for i in range(25_000)]
    content = (HEADER + "".join(rows)).encode()
    assert len(content) > app.config["MAX_CONTENT_LENGTH"]

    refused = _upload(client, content)
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    assert _batches(app) == 0

    accepted = _upload(client, content, csrf_token=token)
    assert accepted.status_code == 303
    assert len(_contacts(app)) == 25_000

    monkeypatch.setitem(app.config, "IMPORT_MAX_BYTES", 1000)
    too_large = _upload(client, content, csrf_token=token)
    assert too_large.status_code == 413
    assert _batches(app) == 1


def test_a_large_body_is_read_only_for_a_staff_member_who_may_import(app, monkeypatch) -> None:
    """Nobody else gets past the 1 MiB limit: the guard answers before the
    body is read (the CSRF check would otherwise read it first)."""
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", True)
    content = b"x" * (2 * 1024 * 1024)

    anonymous = _upload(app.test_client(), content)
    assert anonymous.status_code == 302 and anonymous.location.startswith("/staff/login")
    assert _upload(client_as(app, "sales"), content).status_code == 403
    assert _batches(app) == 0


def test_the_rejected_rows_of_a_batch_are_paged(app) -> None:
    client = client_as(app, "admin")
    content = (HEADER + "".join(f"bad{i},X,,SE,sv\n" for i in range(450))).encode()
    first = client.get(_upload(client, content).location).get_data(as_text=True)

    rows = re.findall(r'<tr class="rejection"><td[^>]*>(\d+)</td>', first)
    assert rows == [str(n) for n in range(2, 202)]
    later = re.search(r'href="([^"]*after_row=201)"', first)
    assert later is not None
    second = client.get(later.group(1).replace("&amp;", "&")).get_data(as_text=True)
    third_link = re.search(r'href="([^"]*after_row=401)"', second)
    assert re.findall(r'<tr class="rejection"><td[^>]*>(\d+)</td>', second)[0] == "202"
    assert third_link is not None
    last = client.get(third_link.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r'<tr class="rejection"><td[^>]*>(\d+)</td>', last) == [
        str(n) for n in range(402, 452)
    ]
    assert "after_row=" not in last.split("Rejected rows", 1)[1].split("</section>", 1)[0]


def test_sales_sees_neither_the_page_nor_its_link(app) -> None:
    sales = client_as(app, "sales")
    assert sales.get("/staff/imports").status_code == 403
    assert "/staff/imports" not in sales.get("/staff/").get_data(as_text=True)
    refused = _upload(sales, (HEADER + "anna@kund.se,Anna,,SE,sv\n").encode())
    assert refused.status_code == 403
    assert _contacts(app) == [] and _batches(app) == 0


def test_the_pages_speak_swedish(app) -> None:
    client = client_as(app, "marketing")
    client.post("/staff/language", data={"lang": "sv", "next": "/staff/imports"})
    listing = client.get("/staff/imports").get_data(as_text=True)
    assert "Importera en CSV-fil" in listing and "Listans källa" in listing
    report = client.get(
        _upload(client, (HEADER + "anna@kund.se,Anna,,SE,sv\n").encode()).location
    ).get_data(as_text=True)
    assert "Filen är mottagen" in report and "branschregister" in report
    assert '<dd class="status">klar</dd>' in report
