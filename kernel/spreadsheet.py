"""CSV that a spreadsheet opens safely: no cell is ever run as a formula.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return (OWASP "CSV
injection"). Any text we export that starts so is prefixed with ``'``,
which spreadsheets show as text; numbers are written as they are.

A spreadsheet also guesses the delimiter: Excel in Sweden (and wherever the
decimal separator is a comma) splits a ``.csv`` on semicolons, so a comma
file's cell ``x;=HYPERLINK(...)`` became two cells there, the second a
formula. So every place inside a text where a cell could begin under any
delimiter a spreadsheet guesses (after a comma, a semicolon, a tab or a line
break, past spaces and quotes) gets the same ``'`` before a trigger, and a
field holding either delimiter, a quote, a tab or a line break is quoted.
``delimiter=";"`` writes the file Swedish Excel expects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import IO, Any

# A trigger first in the cell, past any spaces and quotes a spreadsheet may trim.
_STARTS_LIKE_FORMULA = re.compile(r'[\s"]*[=+\-@\t\r]')
# A cell a spreadsheet could see starting inside the text: after a delimiter it
# may split on or a line break, past spaces and quotes, a trigger.
_INNER_CELL = re.compile(r'([,;\t\r\n][\s"]*)([=+\-@\t\r])')
_NEEDS_QUOTES = re.compile(r'[,;"\t\r\n]|^\s|\s$')
DELIMITERS = (",", ";")


def safe_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = _INNER_CELL.sub(r"\1'\2", str(value))
    return "'" + text if _STARTS_LIKE_FORMULA.match(text) else text


def _field(value: Any) -> str:
    """One field of a line: a safe cell, quoted when it holds a delimiter of
    either kind, a quote, a tab, a line break or edge spaces."""
    cell = safe_cell(value)
    text = str(cell)
    if isinstance(cell, str) and _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(cells: Sequence[Any], delimiter: str = ",") -> str:
    """One line of a file (CRLF-ended): ``write_csv``'s lines, and a file streamed
    line by line as it is read."""
    if delimiter not in DELIMITERS:
        raise ValueError(f"delimiter must be one of {DELIMITERS}")
    return delimiter.join(_field(cell) for cell in cells) + "\r\n"


def write_csv(
    out: IO[str], header: Sequence[str], rows: Iterable[Sequence[Any]], delimiter: str = ","
) -> None:
    """``header`` and ``rows`` as CSV with ``delimiter`` ("," or ";"), lines ended
    by CRLF as spreadsheets write them."""
    out.write(csv_line(header, delimiter))
    for row in rows:
        out.write(csv_line(row, delimiter))
