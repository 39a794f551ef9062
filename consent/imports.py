"""CSV imports of contacts on legitimate interest (R1, R3), streamed and idempotent.

A file is read one physical line at a time and applied in batches, one
transaction per batch, so that a file of any length imports in flat memory
and a broken row never undoes the rows before it. Every batch costs a fixed
number of statements (one SELECT each for contacts, suppression hashes,
companies and the projection; multi-row INSERTs and UPDATEs), never a query
per row. A re-run of the same file changes nothing: values already held and
bases already granted are left alone, so the ledger gets no new events.

Imports live in the consent layer because they register a basis: every
basis goes through ``consent.ledger.record_many`` with ``source="import"``
and ``source_ref="import-batch:<id>"``.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.schema import CreateTable

from consent.ledger import record_set
from consent.models import (
    ALL,
    Basis,
    EventKind,
    ImportBatch,
    ImportRejection,
    InterestKind,
    PermissionState,
    Suppression,
)
from crm import services as crm
from crm.models import Company, Contact
from extensions import db
from kernel.access import Actor
from kernel.addresses import keyed_hasher, normalise_email
from kernel.countries import normalise_country, normalise_language
from kernel.errors import DomainError, InvalidInput, NotFound
from kernel.signals import decisions_changed
from kernel.signals import sender as signal_sender
from kernel.timestamps import UTCDateTime, utcnow

# Bases a file may carry. Consent cannot be imported: it needs per-person
# evidence (time, policy version, the wording agreed to) that a list does not hold.
IMPORT_BASES = {
    "customer": InterestKind.CUSTOMER,
    "industry_list": InterestKind.INDUSTRY_LIST,
}
# Rows per transaction: large enough that per-statement costs vanish, small
# enough that memory stays flat and no transaction holds locks for long.
BATCH_SIZE = 10_000
# A physical line longer than this is refused (a 50 MB single line is not a CSV row).
MAX_LINE_BYTES = 64 * 1024
# How much of the start of the file is checked for encoding before anything is stored.
HEAD_BYTES = 64 * 1024
# Rejections kept in the returned report; every one is stored in import_rejection.
REPORT_REJECTIONS = 1_000

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
    "country": ("country", "countrycode", "land", "landskod"),
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
}
_HEADER_TO_COLUMN = {
    alias: column for column, aliases in COLUMN_ALIASES.items() for alias in aliases
}
_LIMITS = {"name": 200, "company": 200, "org_number": 40}
_NUMBER_LIKE = re.compile(r"[+-]?[\d\s().,/-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class FileRejected(InvalidInput):
    """The file as a whole cannot be imported; nothing was stored."""

    code = "invalid_file"


@dataclass(frozen=True)
class Rejection:
    row: int
    reason: str


@dataclass
class ImportReport:
    batch_id: int
    interest_kind: str
    source: str
    status: str = "running"
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_suppressed: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    file_sha256: str | None = None
    error: str | None = None


@dataclass(slots=True)
class _Row:
    """One valid row, normalised."""

    number: int
    email: str
    name: str | None
    company: str | None
    org_number: str | None
    country: str | None
    language: str | None
    last_interaction_at: datetime | None

    @property
    def company_key(self) -> tuple[str, str] | None:
        if self.org_number:
            return ("org", self.org_number)
        if self.company:
            return ("name", self.company)
        return None


@dataclass
class _Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped_suppressed: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    changed_ids: list[int] = field(default_factory=list)


# Reading -------------------------------------------------------------------------


def _canonical_header(value: str) -> str:
    folded = unicodedata.normalize("NFC", value).strip().lower()
    return "".join(ch for ch in folded if ch.isalnum())


def _check_head(stream: IO[bytes]) -> None:
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


class _Lines:
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


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (";", ",")}
    return ";" if counts[";"] > counts[","] else ","


def _map_header(cells: list[str]) -> tuple[dict[str, int], list[str]]:
    columns: dict[str, int] = {}
    ignored = []
    for index, cell in enumerate(cells):
        column = _HEADER_TO_COLUMN.get(_canonical_header(cell))
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
    if moment > utcnow():
        raise ValueError("last interaction date is in the future")
    return moment.astimezone(UTC)


def _parse_row(number: int, cells: list[str], columns: dict[str, int]) -> _Row | str:
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
        country = normalise_country(values.get("country") or None)
        language = normalise_language(values["language"]) if values.get("language") else None
    except InvalidInput as exc:
        return exc.message[:300]
    if values.get("org_number") and not values.get("company"):
        return "organisation number: needs the company name too"
    moment = None
    if values.get("last_interaction"):
        try:
            moment = _parse_date(values["last_interaction"])
        except ValueError as exc:
            return str(exc)
    return _Row(
        number=number,
        email=email,
        name=values.get("name") or None,
        company=values.get("company") or None,
        org_number=values.get("org_number") or None,
        country=country,
        language=language,
        last_interaction_at=moment,
    )


# Applying one batch ----------------------------------------------------------------------


def _companies(rows: list[_Row], kind: InterestKind) -> dict[tuple[str, str], int]:
    """Company ids for the rows' company keys, creating the missing ones."""
    wanted: dict[tuple[str, str], str] = {}
    for row in rows:
        key = row.company_key
        if key is not None:
            wanted[key] = row.company or key[1]  # the last row's name wins
    if not wanted:
        return {}
    orgs = [k[1] for k in wanted if k[0] == "org"]
    names = [k[1] for k in wanted if k[0] == "name"]
    found: dict[tuple[str, str], tuple[int, str, Any]] = {}
    if orgs:
        for cid, name, org, since in db.session.execute(
            sa.select(Company.id, Company.name, Company.org_number, Company.customer_since).where(
                _one_of(Company.org_number, orgs)
            )
        ):
            found[("org", str(org))] = (cid, name, since)
    if names:
        for cid, name, since in db.session.execute(
            sa.select(Company.id, Company.name, Company.customer_since)
            .where(Company.org_number.is_(None), _one_of(Company.name, names))
            .order_by(Company.id.desc())
        ):
            found[("name", name)] = (cid, name, since)  # the oldest wins (last written)
    today = utcnow().date()
    missing = [k for k in wanted if k not in found]
    ids = {k: v[0] for k, v in found.items()}
    if missing:
        table = Company.__table__
        created = db.session.execute(
            sa.insert(table).returning(table.c.id, table.c.name, table.c.org_number),
            [
                {
                    "name": wanted[k],
                    "org_number": k[1] if k[0] == "org" else None,
                    "customer_since": today if kind is InterestKind.CUSTOMER else None,
                    "created_at": utcnow(),
                }
                for k in missing
            ],
        ).all()
        for cid, name, org in created:
            ids[("org", org) if org else ("name", name)] = cid
    renamed = [
        {"id": v[0], "name": wanted[k]}
        for k, v in found.items()
        if k[0] == "org" and v[1] != wanted[k]
    ]
    if renamed:
        db.session.execute(sa.update(Company), renamed)
    if kind is InterestKind.CUSTOMER:
        # R1: contacts registered as customers make their company a customer.
        not_yet = [v[0] for v in found.values() if v[2] is None]
        if not_yet:
            db.session.execute(
                sa.update(Company)
                .where(Company.id.in_(not_yet), Company.customer_since.is_(None))
                .values(customer_since=today)
            )
    return ids


# New contacts and the contacts that get the basis, staged in a temporary
# table so that the contacts, their ledger events and the projection are each
# written by one INSERT ... SELECT per batch instead of row by row.
_STAGED = sa.Table(
    "import_row",
    sa.MetaData(),
    sa.Column("line", sa.Integer, primary_key=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("address_hash", sa.String(64)),
    sa.Column("name", sa.String(200)),
    sa.Column("country", sa.String(2)),
    sa.Column("language", sa.String(8)),
    sa.Column("company_id", sa.Integer),
    sa.Column("last_interaction_at", UTCDateTime),
    prefixes=["TEMPORARY"],
    # PostgreSQL drops it with the batch's transaction; SQLite keeps it per
    # connection, so it is emptied before and after each use.
    postgresql_on_commit="DROP",
)
_NEW, _NEW_SUPPRESSED, _GRANT = "new", "new_suppressed", "grant"


def _one_of(column: Any, values: list[str]) -> Any:
    """``column IN values`` as one parameter (a PostgreSQL array, a JSON array on
    SQLite), so a lookup of thousands of values costs no per-value binding."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(sa.String)))
    each = sa.func.json_each(sa.bindparam(None, json.dumps(values))).table_valued("value")
    return column.in_(sa.select(each.c.value))


def _stage(rows: list[tuple[Any, ...]]) -> None:
    """Load rows into the staging table: COPY on PostgreSQL, one executemany on SQLite."""
    conn = db.session.connection()
    conn.execute(CreateTable(_STAGED, if_not_exists=True))
    columns = [c.name for c in _STAGED.columns]
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY import_row ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        # A temporary table has no statistics until asked; without them the
        # joins below are planned for an empty table.
        conn.exec_driver_sql("ANALYZE import_row")
        return
    conn.execute(sa.delete(_STAGED))
    stamp = _STAGED.c.last_interaction_at.type.bind_processor(conn.dialect)
    assert stamp is not None
    moment = len(columns) - 1
    # The compiled INSERT names every column, in order, as positional "?" markers;
    # executed on the driver, the rows skip SQLAlchemy's per-value processing.
    conn.exec_driver_sql(
        str(sa.insert(_STAGED).compile(dialect=conn.dialect)),
        [(*row[:moment], stamp(row[moment])) for row in rows],
    )


def _apply_batch(
    rows: list[_Row], kind: InterestKind, batch_id: int, actor: Actor, hasher: Callable[[str], str]
) -> _Outcome:
    """Apply valid rows (distinct addresses) in the current transaction."""
    outcome = _Outcome()
    emails = [r.email for r in rows]
    attribute = "customer_since" if kind is InterestKind.CUSTOMER else "industry_list_since"
    holds = PermissionState.__table__.alias("holds")
    existing = {
        c.email: c
        for c in db.session.execute(
            sa.select(
                Contact.id,
                Contact.email,
                Contact.name,
                Contact.country,
                Contact.language,
                Contact.company_id,
                Contact.last_interaction_at,
                Contact.restricted_at,
                holds.c.contact_id.is_not(None).label("holds_basis"),
            )
            .outerjoin(
                holds,
                sa.and_(
                    holds.c.contact_id == Contact.id,
                    holds.c.topic == ALL,
                    holds.c.channel == ALL,
                    holds.c[attribute].is_not(None),
                ),
            )
            .where(_one_of(Contact.email, emails))
        )
    }
    hashes = {email: hasher(email) for email in emails}
    suppressed_hashes = set(
        db.session.scalars(
            sa.select(Suppression.address_hash).where(
                _one_of(Suppression.address_hash, list(hashes.values()))
            )
        )
    )
    suppressed = {email for email, digest in hashes.items() if digest in suppressed_hashes}

    # GDPR art. 21 / R22: an address on the suppression list from an industry
    # list is not stored at all; a customer contact is stored but never allowed.
    keep = []
    for row in rows:
        if row.email in suppressed and kind is InterestKind.INDUSTRY_LIST:
            outcome.skipped_suppressed += 1
        else:
            keep.append(row)
    company_ids = _companies(keep, kind)
    now = utcnow()

    staged: list[tuple[Any, ...]] = []
    updates: list[dict[str, Any]] = []
    for row in keep:
        company_id = company_ids.get(row.company_key) if row.company_key else None
        current = existing.get(row.email)
        if current is None:
            staged.append(
                (
                    row.number,
                    _NEW_SUPPRESSED if row.email in suppressed else _NEW,
                    row.email,
                    hashes[row.email],
                    row.name,
                    row.country,
                    row.language or "en",
                    company_id,
                    row.last_interaction_at,
                )
            )
            outcome.created += 1
            continue
        changes: dict[str, Any] = {}
        for column in ("name", "country", "language"):
            value = getattr(row, column)
            if value is not None and value != getattr(current, column):
                changes[column] = value
        if company_id is not None and company_id != current.company_id:
            changes["company_id"] = company_id
        if row.last_interaction_at is not None and (
            current.last_interaction_at is None
            or row.last_interaction_at > current.last_interaction_at
        ):
            # Only ever forward, as crm.services.note_interaction moves it.
            changes["last_interaction_at"] = row.last_interaction_at
        needs_basis = not current.holds_basis
        if not changes and not needs_basis:
            outcome.unchanged += 1
            continue
        if current.restricted_at is not None:
            outcome.rejections.append(
                Rejection(row.number, "processing is restricted (GDPR art. 18); not changed")
            )
            continue
        if changes:
            updates.append({"id": current.id, **changes, "updated_at": now})
        if needs_basis:
            staged.append((row.number, _GRANT, row.email, None, None, None, None, None, None))
        outcome.updated += 1
        outcome.changed_ids.append(current.id)

    if updates:
        db.session.execute(sa.update(Contact), updates)
    if not staged:
        return outcome
    _stage(staged)
    if outcome.created:
        table = Contact.__table__
        fixed = {
            # GDPR art. 14: data not obtained from the person; notice owed.
            "art14_notice_owed_since": now if kind is InterestKind.INDUSTRY_LIST else None,
            "created_at": now,
            "updated_at": now,
        }
        copied = [c for c in _STAGED.columns if c.name in table.c]
        db.session.execute(
            sa.insert(table).from_select(
                [*(c.name for c in copied), *fixed],
                sa.select(*copied, *(sa.literal(v, table.c[k].type) for k, v in fixed.items()))
                .where(_STAGED.c.action.in_([_NEW, _NEW_SUPPRESSED]))
                .order_by(_STAGED.c.line),
            )
        )

    def contacts(*actions: str) -> sa.Select[Any]:
        return (
            sa.select(Contact.id)
            .join(_STAGED, _STAGED.c.email == Contact.email)
            .where(_STAGED.c.action.in_(actions))
        )

    source_ref = f"import-batch:{batch_id}"
    record_set(
        contacts(_NEW_SUPPRESSED),
        EventKind.CREATED_WHILE_SUPPRESSED,
        actor=actor,
        source="import",
        source_ref=source_ref,
        note="Address is on the suppression list; it will not be marketed to.",
    )
    granted = record_set(
        contacts(_NEW, _NEW_SUPPRESSED, _GRANT),
        EventKind.BASIS_GRANTED,
        actor=actor,
        source="import",
        source_ref=source_ref,
        basis=Basis.LEGITIMATE_INTEREST.value,
        interest_kind=kind.value,
    )
    changed = set(outcome.changed_ids)
    outcome.changed_ids.extend(i for i in granted if i not in changed)
    if db.session.get_bind().dialect.name != "postgresql":
        db.session.execute(sa.delete(_STAGED))
    return outcome


# The use case -----------------------------------------------------------------------------


def parse_basis(value: str) -> InterestKind:
    if value == Basis.CONSENT.value:
        raise InvalidInput(
            "Consent cannot be imported from a file: a consent needs its own evidence per "
            "person (when, the policy version and the exact wording agreed to) and a double "
            "opt-in. Register consents through POST /api/v1/contacts with their evidence, or "
            "let people sign up; import lists only as customer or industry_list.",
            code="consent_not_importable",
            fields={"basis": ["Use customer or industry_list."]},
        )
    try:
        return IMPORT_BASES[value]
    except KeyError:
        raise InvalidInput(
            f"Unknown basis {value!r}; use customer or industry_list.",
            code="invalid_basis",
            fields={"basis": ["Use customer or industry_list."]},
        ) from None


def import_contacts(
    actor: Actor,
    stream: IO[bytes],
    *,
    basis: str,
    source: str,
    filename: str | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a CSV file of contacts with a legitimate-interest basis (R1, R3).

    Suppressed addresses on an industry list are skipped; as customers they
    are stored but never allowed (R22). Industry-list contacts are marked as
    owed the GDPR art. 14 notice. Raises ``FileRejected`` when the file as a
    whole cannot be read (nothing is stored then); otherwise returns the
    report, with every rejected row stored under the batch.
    """
    kind = parse_basis(basis)
    source = (source or "").strip()
    if not source:
        raise InvalidInput(
            "Name the source of the list (e.g. the partner or fair it came from).",
            code="missing_source",
            fields={"source": ["Required."]},
        )
    if not stream.seekable():
        raise InvalidInput("The file must be seekable.", code="invalid_file")
    _check_head(stream)
    lines = _Lines(stream)
    line_iter = iter(lines)
    header_line = next(line_iter, "")
    hint = header_line.strip()
    if hint.lower().startswith("sep=") and len(hint) == 5:
        # Excel's "sep=;" line names the delimiter; the header follows it.
        delimiter = hint[4]
        header_line = next(line_iter, "")
    else:
        delimiter = _sniff_delimiter(header_line)
    reader = csv.reader(itertools.chain([header_line], line_iter), delimiter=delimiter)
    try:
        header = next(reader, [])
    except csv.Error as exc:
        raise FileRejected(f"The header line cannot be read as CSV: {exc}.") from exc
    columns, ignored = _map_header(header)

    batch = ImportBatch(
        actor=actor.label,
        interest_kind=kind.value,
        source=source[:200],
        filename=(filename or "")[:200] or None,
        started_at=utcnow(),
        status="running",
    )
    db.session.add(batch)
    db.session.commit()
    report = ImportReport(
        batch_id=batch.id, interest_kind=kind.value, source=batch.source, ignored_columns=ignored
    )

    hasher = keyed_hasher()
    pending: list[_Row] = []
    pending_rejections: list[Rejection] = []
    seen: set[str] = set()

    def flush() -> None:
        _commit_batch(batch.id, pending, pending_rejections, kind, actor, report, hasher)
        pending.clear()
        pending_rejections.clear()
        seen.clear()
        if progress is not None:
            progress(lines.bytes_read)

    number = 1  # the header is row 1, as a spreadsheet shows it
    try:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                number += 1
                report.rows += 1
                pending_rejections.append(Rejection(number, f"not readable as CSV: {exc}"[:300]))
                continue
            number += 1
            if not any(cell.strip() for cell in cells):
                continue  # a blank line is not a contact
            report.rows += 1
            parsed = _parse_row(number, cells, columns)
            if isinstance(parsed, str):
                pending_rejections.append(Rejection(number, parsed))
            else:
                if parsed.email in seen:
                    # The same address twice: apply what came before first, so the
                    # file means what it would mean row by row.
                    flush()
                pending.append(parsed)
                seen.add(parsed.email)
            if len(pending) + len(pending_rejections) >= batch_size:
                flush()
        flush()
    except Exception as exc:
        db.session.rollback()
        message = exc.message if isinstance(exc, DomainError) else "an unexpected error"
        _finish(
            batch.id, report, actor, status="failed", error=f"Stopped at row {number}: {message}"
        )
        raise
    report.file_sha256 = lines.digest.hexdigest()
    _finish(batch.id, report, actor, status="done")
    return report


def _commit_batch(
    batch_id: int,
    rows: list[_Row],
    rejections: list[Rejection],
    kind: InterestKind,
    actor: Actor,
    report: ImportReport,
    hasher: Callable[[str], str],
) -> None:
    """Apply one batch in its own transaction; on a conflict, row by row."""
    try:
        outcome = _apply_batch(rows, kind, batch_id, actor, hasher) if rows else _Outcome()
        outcome.rejections[:0] = rejections
        _store_outcome(batch_id, outcome, report)
        db.session.commit()
    except sa.exc.IntegrityError:
        # A concurrent writer created one of these addresses or companies:
        # redo the rows one at a time so that only the clashing one is refused.
        db.session.rollback()
        if len(rows) <= 1:
            failed = [
                Rejection(r.number, "changed concurrently; import the file again") for r in rows
            ]
            _store_outcome(batch_id, _Outcome(rejections=[*rejections, *failed]), report)
            db.session.commit()
            _after_commit(report, _Outcome(rejections=[*rejections, *failed]))
            return
        _commit_batch(batch_id, [], rejections, kind, actor, report, hasher)
        for row in rows:
            _commit_batch(batch_id, [row], [], kind, actor, report, hasher)
        return
    _after_commit(report, outcome)


def _store_outcome(batch_id: int, outcome: _Outcome, report: ImportReport) -> None:
    if outcome.rejections:
        db.session.execute(
            sa.insert(ImportRejection.__table__),
            [{"batch_id": batch_id, "row": r.row, "reason": r.reason} for r in outcome.rejections],
        )
    db.session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id == batch_id)
        .values(
            rows=report.rows,
            created=report.created + outcome.created,
            updated=report.updated + outcome.updated,
            unchanged=report.unchanged + outcome.unchanged,
            skipped_suppressed=report.skipped_suppressed + outcome.skipped_suppressed,
            rejected=report.rejected + len(outcome.rejections),
        )
    )


def _after_commit(report: ImportReport, outcome: _Outcome) -> None:
    report.created += outcome.created
    report.updated += outcome.updated
    report.unchanged += outcome.unchanged
    report.skipped_suppressed += outcome.skipped_suppressed
    report.rejected += len(outcome.rejections)
    room = REPORT_REJECTIONS - len(report.rejections)
    if room > 0:
        report.rejections.extend(outcome.rejections[:room])
    if outcome.changed_ids:
        app = signal_sender()
        for contact_id in outcome.changed_ids:
            decisions_changed.send(app, contact_id=contact_id, kind="import")


def _finish(
    batch_id: int, report: ImportReport, actor: Actor, *, status: str, error: str | None = None
) -> None:
    report.status = status
    report.error = error
    db.session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id == batch_id)
        .values(
            status=status,
            error=error[:500] if error else None,
            finished_at=utcnow(),
            file_sha256=report.file_sha256,
            rows=report.rows,
        )
    )
    crm.audit(
        actor,
        "import.run",
        detail=(
            f"batch {batch_id} {status}: rows={report.rows} created={report.created} "
            f"updated={report.updated} unchanged={report.unchanged} "
            f"skipped_suppressed={report.skipped_suppressed} rejected={report.rejected}"
        ),
    )
    db.session.commit()


def iter_rejections(batch_id: int, after_row: int = 0) -> Iterator[ImportRejection]:
    """Every rejected row of a batch, in row order, read in pages."""
    while True:
        page = list(
            db.session.scalars(
                sa.select(ImportRejection)
                .where(ImportRejection.batch_id == batch_id, ImportRejection.row > after_row)
                .order_by(ImportRejection.row)
                .limit(1_000)
            )
        )
        yield from page
        if len(page) < 1_000:
            return
        after_row = page[-1].row
        db.session.expunge_all()


def get_batch(batch_id: int) -> ImportBatch:
    # Ids are 32-bit integers on PostgreSQL; a larger number names nothing.
    batch = db.session.get(ImportBatch, batch_id) if 0 < batch_id < 2**31 else None
    if batch is None:
        raise NotFound(f"No import batch {batch_id}.", code="import_not_found")
    return batch


def list_batches(limit: int = 50) -> list[ImportBatch]:
    """The latest import batches, newest first."""
    return list(
        db.session.scalars(sa.select(ImportBatch).order_by(ImportBatch.id.desc()).limit(limit))
    )
