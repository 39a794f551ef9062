"""Reading an import file: encoding checked up front, physical lines of bounded
length, the header mapped from Swedish or English spellings, each row
validated and normalised (docs/imports.md)."""

from __future__ import annotations

import csv
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from crm.models import EARLIEST_ACTIVITY, ActivityKind, external_value_problem
from kernel import i18n
from kernel.addresses import normalise_email
from kernel.countries import country_code_from_name, normalise_language
from kernel.errors import InvalidInput
from kernel.timestamps import utcnow

# A physical line longer than this is refused (a 50 MB single line is not a CSV row).
MAX_LINE_BYTES = 64 * 1024
# How much of the start of the file is checked for encoding before anything is stored.
HEAD_BYTES = 64 * 1024
# Rejections kept in the returned report; every one is stored in import_rejection.

_OVERLONG = "\ufffe"  # marks a line that was cut because it was too long

# The columns we read, with the header spellings we accept (Swedish and English),
# compared after lower-casing and dropping everything but letters and digits.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "epost", "epostadress", "emailadress"),
    "name": ("name", "fullname", "contactname", "contact", "namn", "kontaktperson", "kontakt"),
    "company": (
        "company",
        "companyname",
        "organisation",
        "organization",
        "foretag",
        "företag",
        "företagsnamn",
        "foretagsnamn",
        "bolag",
    ),
    "org_number": (
        "organisationnumber",
        "organizationnumber",
        "orgnumber",
        "orgno",
        "orgnr",
        "organisationsnummer",
        "organisationsnr",
        "corporateid",
        "companynumber",
    ),
    # A CRM export often splits the name; the import joins first and last.
    "first_name": ("firstname", "givenname", "förnamn", "fornamn"),
    "last_name": ("lastname", "surname", "familyname", "efternamn"),
    # A code (SE) or a name in English or Swedish (Sweden, Sverige): kernel.countries.
    "country": ("country", "countrycode", "countryregion", "land", "landskod"),
    "language": ("language", "lang", "språk", "sprak", "languagecode"),
    "last_interaction": (
        "lastinteractiondate",
        "lastinteraction",
        "lastinteractionat",
        "lastcontact",
        "lastcontactdate",
        "senastekontakt",
        "senasteinteraktion",
        "senastkontakt",
    ),
    # What that interaction was (an activity kind the person took part in): the
    # import records it as an activity, never a bare date (docs/rules.md X16).
    "last_interaction_kind": (
        "lastinteractionkind",
        "lastinteractiontype",
        "interactionkind",
        "interactiontype",
        "lastcontactkind",
        "lastcontacttype",
        "kontakttyp",
        "senastekontakttyp",
        "typavkontakt",
        "interaktionstyp",
    ),
}
# The kinds an import may state for the last interaction: the person took part.
INTERACTION_KINDS = tuple(k.value for k in ActivityKind if k.is_interaction)
# ... also by their Swedish names (kernel.i18n), as Swedish headers are read.
_KIND_NAMES = {
    **{i18n.text_in("sv", f"activity.{kind}").replace(" ", "_"): kind for kind in INTERACTION_KINDS},
    **{kind: kind for kind in INTERACTION_KINDS},
}
_HEADER_TO_COLUMN = {
    alias: column for column, aliases in COLUMN_ALIASES.items() for alias in aliases
}
_LIMITS = {
    "name": 200,
    "first_name": 200,
    "last_name": 200,
    "company": 200,
    "org_number": 40,
    "country": 100,
    "last_interaction_kind": 40,
}
_NUMBER_LIKE = re.compile(r"[+-]?[\d\s().,/-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FileRejected(InvalidInput):
    """The file as a whole cannot be imported; nothing was stored."""

    code = "invalid_file"


@dataclass(frozen=True)
class Rejection:
    row: int
    reason: str


@dataclass(slots=True)
class Row:
    """One valid row, normalised."""

    number: int
    email: str
    name: str | None
    company: str | None
    org_number: str | None
    country: str | None
    language: str | None
    last_interaction_at: datetime | None
    last_interaction_kind: str | None = None
    # The record id the exporting system gives this contact (its system is the
    # preset's or the mapping's), stored as an external id: crm.external_ids.
    external_id: str | None = None

    @property
    def company_key(self) -> tuple[str, str] | None:
        if self.org_number:
            return ("org", self.org_number)
        if self.company:
            return ("name", self.company)
        return None


# Reading -------------------------------------------------------------------------


def canonical_header(value: str) -> str:
    """A header as compared: case, spaces and punctuation ignored ("Country/Region"
    is "countryregion")."""
    folded = unicodedata.normalize("NFC", value).strip().lower()
    return "".join(ch for ch in folded if ch.isalnum())


def check_head(stream: IO[bytes]) -> None:
    """Refuse a file that is plainly not UTF-8 CSV before anything is stored."""
    head = stream.read(HEAD_BYTES)
    stream.seek(0)
    if not head.strip():
        raise FileRejected("The file is empty.")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileRejected(
            "The file is UTF-16; save it as 'CSV UTF-8' (comma or semicolon separated)."
        )
    if head.startswith(b"PK\x03\x04") or b"\x00" in head:
        raise FileRejected(
            "This is a binary file (an Excel workbook?), not CSV; save it as 'CSV UTF-8'."
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is fine.
        if exc.start < len(head) - 3:
            raise FileRejected(
                f"The file is not UTF-8 (byte {exc.start + 1} is not valid UTF-8); "
                "save it as 'CSV UTF-8' and import it again."
            ) from None


class Lines:
    """Physical lines of a binary stream as text, with a byte count and a digest.

    A line that is not valid UTF-8 is decoded with replacement characters
    (its row is then rejected); a line over MAX_LINE_BYTES is cut and marked.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.bytes_read = 0
        self.digest = hashlib.sha256()
        self.first = True

    def _read(self, limit: int) -> bytes:
        chunk = self.stream.readline(limit)
        self.bytes_read += len(chunk)
        self.digest.update(chunk)
        return chunk

    def __iter__(self) -> Iterator[str]:
        while True:
            raw = self._read(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while True:  # skip the rest of the overlong line, chunk by chunk
                    rest = self._read(MAX_LINE_BYTES)
                    if not rest or rest.endswith(b"\n"):
                        break
                if self.first:
                    raise FileRejected(
                        f"The first line is longer than {MAX_LINE_BYTES // 1024} KiB; "
                        "the file needs a header row of column names and one contact per line."
                    )
                yield _OVERLONG + "\n"
                continue
            encoding = "utf-8-sig" if self.first else "utf-8"
            self.first = False
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError:
                yield raw.decode(encoding, errors="replace")


class LineReader:
    """CSV rows read one physical line at a time: a row never runs over a line end.

    ``csv.reader`` over the whole file lets a quoted field run on through the
    line ends that follow until its quote closes: one unterminated quote then
    swallowed the next rows into one contact's name (created 1, rejected 0, two
    rows lost). Here the reader is handed one line per row; a quote still
    open at the end of the line finds no next line and the row is refused
    with its number, and the next line is read on its own. A quoted field
    therefore cannot hold a line break: one contact per line (docs/imports.md).
    Strict mode refuses the other malformed rows too (text after a closing
    quote: ``"Anna"x``).
    """

    def __init__(self, delimiter: str) -> None:
        self._line: str | None = None
        self._reader = csv.reader(self, delimiter=delimiter, strict=True)

    def __iter__(self) -> LineReader:
        return self

    def __next__(self) -> str:
        # The csv reader's source: the one line being read, then nothing.
        line, self._line = self._line, None
        if line is None:
            raise StopIteration
        return line

    def cells(self, line: str) -> list[str]:
        """The cells of ``line``; raises ``ValueError`` with the reason when it is not
        one well-formed CSV row."""
        self._line = line
        try:
            return next(self._reader)
        except StopIteration:
            return []
        except csv.Error as exc:
            raise ValueError(_csv_problem(str(exc))) from None
        finally:
            self._line = None


def _csv_problem(message: str) -> str:
    """The csv module's complaint, as a person fixing the file reads it."""
    if "unexpected end of data" in message:
        return (
            "a quoted field is not closed on this line (a field cannot hold a line "
            "break: one contact per line)"
        )
    if "expected after" in message:
        return "text follows a closing quote; quote the whole field"
    if "new-line character" in message:
        return "a line break (carriage return) inside a field"
    return f"not readable as CSV: {message}"[:300]


def sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (";", ",")}
    return ";" if counts[";"] > counts[","] else ","


def map_header(cells: list[str]) -> tuple[dict[str, int], list[str]]:
    columns: dict[str, int] = {}
    ignored = []
    for index, cell in enumerate(cells):
        column = _HEADER_TO_COLUMN.get(canonical_header(cell))
        if column is None:
            if cell.strip():
                ignored.append(cell.strip()[:100])
            continue
        if column in columns:
            raise FileRejected(
                f"Two columns hold the {column.replace('_', ' ')}: "
                f"{cells[columns[column]]!r} and {cell!r}; keep one."
            )
        columns[column] = index
    if "email" not in columns:
        raise FileRejected(
            "The file has no email column. The first row must name the columns, e.g. "
            "email;name;company;organisation number;country;language;last interaction date "
            "(Swedish names such as e-post, namn, företag, org.nr, land, språk work too)."
        )
    return columns, ignored


# Validating one row --------------------------------------------------------------------


def _looks_like_formula(value: str) -> bool:
    """A cell a spreadsheet would run (OWASP CSV injection): =, +, -, @, tab, CR first."""
    if not value or value[0] not in "=+-@\t\r":
        return False
    return value[0] in "=@\t\r" or not _NUMBER_LIKE.fullmatch(value)


def _parse_date(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("last interaction date: use YYYY-MM-DD") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    # Never later than now: an interaction the importer asserts has happened.
    if moment > utcnow():
        raise ValueError("last interaction date is in the future")
    if moment < EARLIEST_ACTIVITY:
        raise ValueError(
            f"last interaction date is before {EARLIEST_ACTIVITY:%Y-%m-%d}; no interaction is that old"
        )
    return moment.astimezone(UTC)


def _interaction_kind(value: str | None, has_date: bool) -> str | None:
    """The kind of the stated last interaction; raises ValueError with the reason."""
    kind = (value or "").strip().lower().replace(" ", "_") or None
    if has_date and kind is None:
        raise ValueError(
            "last interaction date: say what the interaction was in a 'last interaction "
            f"kind' column ({', '.join(INTERACTION_KINDS)}); a bare date is not imported"
        )
    if kind is not None and not has_date:
        raise ValueError("last interaction kind: needs the last interaction date too")
    if kind is not None and kind not in _KIND_NAMES:
        raise ValueError(
            f"last interaction kind: use one of {', '.join(INTERACTION_KINDS)} "
            "(an interaction the person took part in)"
        )
    return _KIND_NAMES[kind] if kind is not None else None


def parse_row(number: int, cells: list[str], columns: dict[str, int]) -> Row | str:
    """A valid row, or the reason it is rejected (never the row's content)."""
    values = {
        column: cells[index].strip() if index < len(cells) else ""
        for column, index in columns.items()
    }
    # One look at the whole row first: only a row holding a cut line, a
    # replacement or a control character needs each cell examined for it.
    joined = "".join(values.values())
    suspect = _OVERLONG in joined or "\ufffd" in joined or _CONTROL.search(joined) is not None
    for column, value in values.items():
        if suspect:
            if _OVERLONG in value:
                return f"line longer than {MAX_LINE_BYTES // 1024} KiB"
            if "\ufffd" in value:
                return f"{column.replace('_', ' ')}: not valid UTF-8 text"
            if _CONTROL.search(value):
                return f"{column.replace('_', ' ')}: contains control characters"
        if _looks_like_formula(value):
            return (
                f"{column.replace('_', ' ')}: starts with {value[0]!r} like a spreadsheet "
                "formula; such cells are not imported"
            )
        limit = _LIMITS.get(column)
        if limit and len(value) > limit:
            return f"{column.replace('_', ' ')}: longer than {limit} characters"
    if not values.get("email"):
        return "email: missing"
    try:
        email = normalise_email(values["email"])
    except InvalidInput as exc:
        return f"email: {exc.message}"[:300]
    try:
        country = country_code_from_name(values.get("country") or None)
    except InvalidInput:
        # The reason names no cell content (rejections hold no personal data).
        return (
            "country: not an ISO 3166-1 code nor a country name known in English or "
            "Swedish (e.g. SE, Sweden, Sverige)"
        )
    try:
        language = normalise_language(values["language"]) if values.get("language") else None
    except InvalidInput as exc:
        return exc.message[:300]
    # A full name wins; a CRM's first and last name are joined into it.
    name = values.get("name") or " ".join(
        part for part in (values.get("first_name"), values.get("last_name")) if part
    )
    if len(name) > _LIMITS["name"]:
        return f"name: first and last name together longer than {_LIMITS['name']} characters"
    external_id = values.get("external_id") or None
    if external_id is not None and external_value_problem(external_id):
        return "record id: " + (external_value_problem(external_id) or "")
    if values.get("org_number") and not values.get("company"):
        return "organisation number: needs the company name too"
    moment = None
    try:
        if values.get("last_interaction"):
            moment = _parse_date(values["last_interaction"])
        interaction_kind = _interaction_kind(
            values.get("last_interaction_kind"), moment is not None
        )
    except ValueError as exc:
        return str(exc)
    return Row(
        number=number,
        email=email,
        name=name or None,
        company=values.get("company") or None,
        org_number=values.get("org_number") or None,
        country=country,
        language=language,
        last_interaction_at=moment,
        last_interaction_kind=interaction_kind,
        external_id=external_id,
    )
