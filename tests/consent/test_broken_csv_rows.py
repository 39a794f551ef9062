"""Broken CSV rows (issue 18, item 15).

Imports: an unterminated quote swallowed the rows after it into one contact's
name (created 1, rejected 0, two rows lost). A row that does not parse
cleanly is now rejected with its line number and the next line is read on
its own; a quoted field cannot hold a line break (docs/imports.md).

The audit CSV: a comma file's cell ``token:x;=HYPERLINK(...)`` is two cells,
the second a formula, in a spreadsheet that splits on semicolons (Excel set
up for Swedish). No cell may start like a formula under either delimiter,
and ``--delimiter ';'`` writes the file such a spreadsheet expects.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import sqlalchemy as sa

from consent import imports
from crm.models import Contact
from extensions import db
from kernel.access import CLI_ACTOR

HEADER = "email,name,company,country\n"
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _import(app: Any, text: str) -> imports.ImportReport:
    with app.app_context():
        report = imports.import_contacts(
            CLI_ACTOR, io.BytesIO(text.encode()), basis="customer", source="test"
        )
        db.session.remove()
    return report


def _names(app: Any) -> dict[str, str | None]:
    with app.app_context():
        return {
            email: name
            for email, name in db.session.execute(sa.select(Contact.email, Contact.name))
        }


def test_an_unterminated_quote_rejects_its_row_and_the_rows_after_it_are_read(app) -> None:
    report = _import(
        app,
        HEADER
        + 'anna@kund.se,"Anna Berg,Kund AB,SE\n'  # line 2: the quote never closes
        + "bo@kund.se,Bo Ek,Kund AB,SE\n"
        + "cy@kund.se,Cy Lund,Kund AB,SE\n",
    )
    assert (report.rows, report.created, report.rejected) == (3, 2, 1)
    assert [(r.row, r.reason) for r in report.rejections] == [
        (
            2,
            "a quoted field is not closed on this line (a field cannot hold a line break: "
            "one contact per line)",
        )
    ]
    assert _names(app) == {"bo@kund.se": "Bo Ek", "cy@kund.se": "Cy Lund"}


def test_rows_after_a_broken_one_keep_their_line_numbers(app) -> None:
    report = _import(
        app,
        HEADER
        + '"unclosed@kund.se,A,,SE\n'  # line 2
        + "ok@kund.se,Ok,,SE\n"  # line 3
        + 'quoted@kund.se,"Berg, Anna",,SE\n'  # line 4: a quoted comma is fine
        + 'after@kund.se,"Anna"Berg,,SE\n'  # line 5: text after the closing quote
        + "not-an-address,X,,SE\n",  # line 6
    )
    assert [r.row for r in report.rejections] == [2, 5, 6]
    assert "closing quote" in report.rejections[1].reason
    assert "email" in report.rejections[2].reason
    assert _names(app) == {"ok@kund.se": "Ok", "quoted@kund.se": "Berg, Anna"}


def test_a_quoted_line_break_is_refused_and_nothing_is_joined(app) -> None:
    """Decided: one contact per physical line, so a field cannot hold a line
    break; both halves are rejected by number, neither becomes part of another row."""
    report = _import(
        app, HEADER + 'anna@kund.se,"Anna\nBerg",Kund AB,SE\n' + "bo@kund.se,Bo,Kund AB,SE\n"
    )
    assert [r.row for r in report.rejections] == [2, 3]
    assert report.created == 1 and _names(app) == {"bo@kund.se": "Bo"}


def test_a_broken_header_refuses_the_whole_file(app) -> None:
    with app.app_context():
        try:
            imports.import_contacts(
                CLI_ACTOR,
                io.BytesIO(b'email,"name\nanna@kund.se,Anna\n'),
                basis="customer",
                source="t",
            )
        except imports.FileRejected as refused:
            assert "header line" in refused.message
        else:
            raise AssertionError("a header with an open quote was taken")


def _token_named(app: Any, name: str) -> None:
    from kernel.access import create_api_token

    with app.app_context():
        create_api_token(name, "admin")  # audited as api_token.create with the name
        from crm.services import audit
        from kernel.access import Actor

        audit(Actor(kind="token", name=name), "contact.read", detail=name)
        db.session.commit()
        db.session.remove()


def _cells(text: str, delimiter: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            for cell in row]  # fmt: skip


PAYLOADS = [
    'x;=HYPERLINK("http://evil.example","x")',
    "x; =1+1",
    'x;"=2+2"',
    "x,@SUM(1)",
    "x\t-3+3",
    "x\n+cmd|' /C calc'!A0",
]


def test_the_audit_csv_shows_no_formula_to_a_spreadsheet_splitting_on_either_delimiter(
    app,
) -> None:
    for name in PAYLOADS:
        _token_named(app, name)
    runner = app.test_cli_runner()
    for delimiter in (",", ";"):
        output = runner.invoke(
            args=["audit", "list", "--csv", "--delimiter", delimiter, "--limit", "1000"]
        ).output
        # As written, and as a spreadsheet that guesses the other delimiter (or a tab) reads it.
        for reading in (",", ";", "\t"):
            cells = _cells(output, reading)
            runnable = [c for c in cells if c.lstrip(' "').startswith(TRIGGERS)]
            assert runnable == [], (delimiter, reading, runnable)
        rows = list(csv.reader(io.StringIO(output, newline=""), delimiter=delimiter))
        assert rows[0] == ["id", "at", "actor", "action", "contact_id", "detail"]
        assert all(len(row) == 6 for row in rows)
        details = {row[5] for row in rows[1:]}
        # The payloads are all there, as text a person can read.
        assert 'x;\'=HYPERLINK("http://evil.example","x")' in details


def test_fields_holding_either_delimiter_are_quoted() -> None:
    from kernel.spreadsheet import write_csv

    out = io.StringIO()
    write_csv(out, ["a", "b"], [["one;two", "three,four"], [5, "plain"]])
    assert out.getvalue() == 'a,b\r\n"one;two","three,four"\r\n5,plain\r\n'
    out = io.StringIO()
    write_csv(out, ["a", "b"], [["one;two", "three,four"]], delimiter=";")
    assert out.getvalue() == 'a;b\r\n"one;two";"three,four"\r\n'
