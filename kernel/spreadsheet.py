"""CSV that a spreadsheet opens safely: no cell is ever run as a formula.

Excel, LibreOffice and Google Sheets evaluate a cell that starts with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return (OWASP "CSV
injection"). Any text we export that starts so is prefixed with ``'``,
which spreadsheets show as text; numbers are written as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import IO, Any

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(_TRIGGERS) else text


def write_csv(out: IO[str], header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    writer = csv.writer(out)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
