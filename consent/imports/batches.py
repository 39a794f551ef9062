"""The import use case: a file streamed in batches of ``BATCH_SIZE`` rows, one
transaction each, recorded as an import batch with its report and rejected
rows; run now (the command line) or stored and run by the worker (the API and
the staff page, ``queue_import`` and ``run_queued_import``)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO

import sqlalchemy as sa

from consent.imports.applying import Outcome, apply_batch
from consent.imports.mapping import ColumnPlan, plan_for, read_header, suggest_preset
from consent.imports.reading import (
    FileRejected,
    LineReader,
    Lines,
    Rejection,
    Row,
    check_head,
    parse_row,
    sniff_delimiter,
)
from consent.imports.uploads import delete_upload, open_upload, store_upload
from consent.models import (
    Basis,
    ImportBatch,
    ImportRejection,
    ImportUploadChunk,
    InterestKind,
)
from crm import services as crm
from extensions import db
from kernel import metrics
from kernel.access import SYSTEM_ACTOR, Actor
from kernel.addresses import keyed_hasher
from kernel.errors import Conflict, DomainError, InvalidInput, NotFound, Unavailable
from kernel.i18n import N_
from kernel.jobs import BROKER_DOWN, hand_over_lost, send_job
from kernel.signals import decisions_changed
from kernel.signals import sender as signal_sender
from kernel.timestamps import utcnow

# An import batch's statuses (queued, running, then done or failed), as pages
# show them, declared for extraction.
IMPORT_STATUS_LABELS = (N_("queued"), N_("running"), N_("done"), N_("failed"))

# Bases a file may carry. Consent cannot be imported: it needs per-person
# evidence (time, policy version, the wording agreed to) that a list does not hold.
IMPORT_BASES = {
    "customer": InterestKind.CUSTOMER,
    "industry_list": InterestKind.INDUSTRY_LIST,
}
# Rows per transaction: large enough that per-statement costs vanish, small
# enough that memory stays flat and no transaction holds locks for long.
BATCH_SIZE = 10_000
# How long a batch stays its worker's after the worker's last sign of life (its
# claim, or a chunk committed: a few seconds each). A second delivery of its job
# leaves it alone meanwhile; the sweeper (``resend_lost_imports``) hands over
# again a batch whose lease ran out, and a queued one not taken this long.
LEASE = timedelta(minutes=5)

REPORT_REJECTIONS = 1_000

# The worker's job that imports a stored file (consent.tasks declares it).
IMPORT_JOB = "run_import"

log = logging.getLogger(__name__)


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
    # The preset the file was read with ("hubspot", ...), "mapping" for the
    # importer's own, None for the recognised header names.
    preset: str | None = None
    # Read with the recognised names, a header that holds a preset's record id
    # and email columns: that preset is named here, never applied unasked.
    suggested_preset: str | None = None
    file_sha256: str | None = None
    error: str | None = None
    # Rows expected (counted at upload; exactly ``rows`` once done), for progress.
    rows_total: int | None = None
    filename: str | None = None
    actor: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def id(self) -> int:
        return self.batch_id

    @property
    def rows_done(self) -> int:
        return self.rows


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
            N_("Unknown basis %(basis)r; use customer or industry_list."),
            values={"basis": value},
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
    preset: str | None = None,
    mapping: str | None = None,
) -> ImportReport:
    """Import a CSV file of contacts with a legitimate-interest basis (R1, R3), now.

    Suppressed addresses on an industry list are skipped; as customers they
    are stored but never allowed (R22). Industry-list contacts are marked as
    owed the GDPR art. 14 notice. Raises ``FileRejected`` when the file as a
    whole cannot be read (nothing is stored then); otherwise returns the
    report, with every rejected row stored under the batch. ``progress`` is
    called with the bytes read after each committed batch.

    ``preset`` names a CRM's contact export (``consent.imports.mapping.PRESETS``)
    and ``mapping`` is the importer's own JSON object of header to field;
    either decides which columns are read, and the record id column is stored
    as the contact's external id in the preset's (or the mapping's) system. A
    record id another contact holds rejects its row only.

    The command line imports this way; the API and the staff page hand the
    file to the worker instead (``queue_import``), since a request must not
    outlast the web server's timeout.
    """
    opening = _open(stream, basis=basis, source=source, preset=preset, mapping=mapping)
    batch = _new_batch(actor, opening, filename, status="running")
    # This process's lease: the sweeper leaves a batch being imported here alone.
    lease = _Lease(batch.started_at)
    batch.claimed_at = lease.at
    db.session.commit()
    report = _report_for(batch, opening)
    if not _apply_file(batch.id, opening, actor, report, batch_size, progress, lease):
        raise Conflict(
            N_(
                "Import batch %(batch)s stopped before the end of the file: a chunk took "
                "longer than %(minutes)s minutes and the batch was marked stopped. The "
                "rows imported so far stay; import the file again to finish (they come "
                "back unchanged)."
            ),
            code="import_stopped",
            values={"batch": batch.id, "minutes": int(LEASE.total_seconds() // 60)},
        )
    return report


def queue_import(
    actor: Actor,
    stream: IO[bytes],
    *,
    basis: str,
    source: str,
    filename: str | None = None,
    preset: str | None = None,
    mapping: str | None = None,
) -> ImportReport:
    """Check a CSV file's header, store the file and hand its batch to the worker.

    Everything that refuses the whole file (the basis, the source, the preset
    or mapping, an empty, binary or UTF-16 file, a header without an email
    column) is raised here, before anything is stored; the rows are read by
    ``run_queued_import`` on the worker. Returns the batch's report, ``queued``.
    Raises ``Unavailable`` (nothing kept) when the broker cannot take the job.
    """
    opening = _open(stream, basis=basis, source=source, preset=preset, mapping=mapping)
    batch = _new_batch(actor, opening, filename, status="queued")
    batch.mapping = mapping if opening.plan.label == "mapping" else None
    batch.ignored_columns = opening.ignored
    batch.suggested_preset = opening.suggested_preset
    db.session.flush()
    batch.rows_total = max(store_upload(batch.id, stream) - opening.header_lines, 0)
    db.session.commit()
    batch_id = batch.id
    try:
        send_job(IMPORT_JOB, batch_id)
    except Exception as exc:
        # Without its job the batch would wait forever: keep nothing.
        log.warning("Import batch %s not handed to the broker (%s).", batch_id, exc)
        db.session.rollback()
        db.session.execute(sa.delete(ImportBatch).where(ImportBatch.id == batch_id))
        db.session.commit()
        raise Unavailable(BROKER_DOWN) from None
    return report_of(batch_id)


def run_queued_import(batch_id: int) -> None:
    """Import a stored file (the worker's job); safe to run twice.

    A batch already done or failed is left alone, and so is one running under
    another worker's lease (``LEASE``: a job handed over twice must not import
    the file twice at once). One whose lease ran out was cut off (a worker
    killed mid-file): the file is read again from the start, which changes
    nothing for the rows already imported (they come back ``unchanged``), and
    its counts start over.
    """
    now = utcnow()
    claimed = db.session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id == batch_id, _claimable(now))
        .values(
            status="running",
            started_at=now,
            claimed_at=now,
            rows=0,
            created=0,
            updated=0,
            unchanged=0,
            skipped_suppressed=0,
            rejected=0,
        )
    ).rowcount  # type: ignore[attr-defined]
    if not claimed:
        db.session.rollback()
        return
    db.session.execute(sa.delete(ImportRejection).where(ImportRejection.batch_id == batch_id))
    db.session.commit()
    batch = db.session.get(ImportBatch, batch_id)
    assert batch is not None  # claimed above
    kind, _, name = batch.actor.partition(":")
    actor = Actor(kind=kind, name=name)
    preset = batch.columns_read_as if batch.columns_read_as != "mapping" else None
    with open_upload(batch_id) as stream:
        try:
            opening = _open(
                stream,
                basis=batch.interest_kind,
                source=batch.source,
                preset=preset,
                mapping=batch.mapping,
            )
        except DomainError as exc:
            # Checked at upload, so only a changed preset list gets here.
            report = ImportReport(batch_id, batch.interest_kind, batch.source)
            _finish(batch_id, report, actor, _Lease(now), status="failed", error=exc.message)
            return
        report = _report_for(batch, opening)
        try:
            _apply_file(batch_id, opening, actor, report, BATCH_SIZE, None, _Lease(now))
        except Exception as exc:
            # Recorded on the batch by _apply_file; a retry would find it failed.
            log.warning("Import batch %s failed: %s", batch_id, type(exc).__name__)


# A batch the API or the staff page queued has its file stored until it has run;
# one ``flask contacts import`` reads in its own process has none, and is that
# process's alone.
_STORED = sa.exists().where(ImportUploadChunk.batch_id == ImportBatch.id)


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    """Queued, or running under a lease that ran out (its worker died; a batch
    running from before its table had leases has none); its file stored."""
    return sa.and_(
        _STORED,
        sa.or_(
            ImportBatch.status == "queued",
            sa.and_(
                ImportBatch.status == "running",
                sa.or_(ImportBatch.claimed_at.is_(None), ImportBatch.claimed_at <= now - LEASE),
            ),
        ),
    )


def resend_lost_imports(broker_emptied: bool = False) -> list[int]:
    """Hand over again the batches whose job was lost; returns their ids.

    - A batch running under a lease that ran out (its worker died, and the
      broker's redelivery, if any, came while the lease held) goes back to
      ``queued`` and is handed over again.
    - A queued batch is handed over again once the broker lost its stored
      messages (``broker_emptied``: a Redis restarted empty), and otherwise
      when it has waited ``LEASE`` since its upload, then after as long again
      as it has waited (``kernel.jobs.due_again``): a message truly lost is
      replaced soon, one waiting behind a long job gains few duplicates. A
      job handed over twice runs once: the first delivery claims the batch,
      the next finds it running under that worker's lease, or done.
    - A batch ``flask contacts import`` was reading whose lease ran out (the
      command was stopped) is marked failed: no worker can take it over, it
      has no stored file.

    A batch running from before migration 0045 (no lease) is left to the
    worker that may still be running it."""
    now = utcnow()
    # (A NULL lease compares as unknown: a batch from before 0045 is not expired.)
    expired = sa.and_(ImportBatch.status == "running", ImportBatch.claimed_at <= now - LEASE)
    _stop_commands_that_ended(expired)
    db.session.commit()
    return hand_over_lost(
        ImportBatch, ImportBatch.started_at, LEASE, IMPORT_JOB, broker_emptied, only=_STORED
    )


_COMMAND_ENDED = (
    "Stopped: the command that imported it ended before the end of the file. The rows "
    "imported so far stay; import the file again to finish (they come back unchanged)."
)


def _stop_commands_that_ended(expired: sa.ColumnElement[bool]) -> None:
    """Mark failed the command-line imports (no stored file) whose lease ran out."""
    ended = list(db.session.scalars(sa.select(ImportBatch.id).where(expired, sa.not_(_STORED))))
    if not ended:
        return
    db.session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id.in_(ended), expired)
        .values(status="failed", error=_COMMAND_ENDED, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    for batch_id in ended:
        crm.audit(SYSTEM_ACTOR, "import.run", detail=f"batch {batch_id} failed: its command ended")
    log.warning("Command-line imports whose process ended marked failed: %s", ended)


def stop_import(batch_id: int, reason: str) -> None:
    """Mark a running batch failed with ``reason`` and delete its file: its job
    cannot go on (it ran out of time), and a delivery again would only start
    the file over. Rolls back what the job had not committed."""
    db.session.rollback()
    stopped = db.session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id == batch_id, ImportBatch.status == "running")
        .values(status="failed", error=reason[:500], finished_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if stopped:
        delete_upload(batch_id)
        crm.audit(SYSTEM_ACTOR, "import.run", detail=f"batch {batch_id} failed: {reason}"[:500])
    db.session.commit()


def report_of(batch_id: int) -> ImportReport:
    """A batch's report as it stands: counts so far, the first rejected rows."""
    batch = get_batch(batch_id)
    rejections = [
        Rejection(r.row, r.reason)
        for r in itertools.islice(iter_rejections(batch_id), REPORT_REJECTIONS)
    ]
    return ImportReport(
        batch_id=batch.id,
        interest_kind=batch.interest_kind,
        source=batch.source,
        status=batch.status,
        rows=batch.rows,
        rows_total=batch.rows if batch.status == "done" else batch.rows_total,
        created=batch.created,
        updated=batch.updated,
        unchanged=batch.unchanged,
        skipped_suppressed=batch.skipped_suppressed,
        rejected=batch.rejected,
        rejections=rejections,
        ignored_columns=list(batch.ignored_columns or []),
        preset=batch.columns_read_as,
        suggested_preset=batch.suggested_preset,
        file_sha256=batch.file_sha256,
        error=batch.error,
        filename=batch.filename,
        actor=batch.actor,
        started_at=batch.started_at,
        finished_at=batch.finished_at,
    )


@dataclass
class _Lease:
    """The lease this process holds on the batch it imports (``claimed_at``)."""

    at: datetime


class _LeaseLost(Exception):
    """Another worker took the batch over after this one's lease ran out."""


@dataclass
class _Opening:
    """A file whose header has been read: how to read the rows that follow."""

    kind: InterestKind
    plan: ColumnPlan
    source: str
    lines: Lines
    rows: Iterator[str]
    reader: LineReader
    columns: dict[str, int]
    ignored: list[str]
    suggested_preset: str | None
    header_lines: int


def _open(
    stream: IO[bytes], *, basis: str, source: str, preset: str | None, mapping: str | None
) -> _Opening:
    """Check the request and the file's head and header; raise before anything is stored."""
    kind = parse_basis(basis)
    plan = plan_for(preset, mapping)
    source = (source or "").strip()
    if not source:
        raise InvalidInput(
            N_("Name the source of the list (e.g. the partner or fair it came from)."),
            code="missing_source",
            fields={"source": ["Required."]},
        )
    if not stream.seekable():
        raise InvalidInput(N_("The file must be seekable."), code="invalid_file")
    check_head(stream)
    lines = Lines(stream)
    line_iter = iter(lines)
    header_line = next(line_iter, "")
    header_lines = 1
    hint = header_line.strip()
    if hint.lower().startswith("sep=") and len(hint) == 5:
        # Excel's "sep=;" line names the delimiter; the header follows it.
        delimiter = hint[4]
        header_line = next(line_iter, "")
        header_lines = 2
    else:
        delimiter = sniff_delimiter(header_line)
    reader = LineReader(delimiter)
    try:
        header = reader.cells(header_line)
    except ValueError as exc:
        raise FileRejected(f"The header line cannot be read as CSV: {exc}.") from None
    columns, ignored = read_header(header, plan)
    return _Opening(
        kind=kind,
        plan=plan,
        source=source,
        lines=lines,
        rows=line_iter,
        reader=reader,
        columns=columns,
        ignored=ignored,
        suggested_preset=suggest_preset(header) if plan.label is None else None,
        header_lines=header_lines,
    )


def _new_batch(actor: Actor, opening: _Opening, filename: str | None, status: str) -> ImportBatch:
    batch = ImportBatch(
        actor=actor.label,
        interest_kind=opening.kind.value,
        source=opening.source[:200],
        filename=(filename or "")[:200] or None,
        columns_read_as=opening.plan.label,
        started_at=utcnow(),
        status=status,
    )
    db.session.add(batch)
    return batch


def _report_for(batch: ImportBatch, opening: _Opening) -> ImportReport:
    return ImportReport(
        batch_id=batch.id,
        interest_kind=opening.kind.value,
        source=batch.source,
        ignored_columns=opening.ignored,
        preset=opening.plan.label,
        suggested_preset=opening.suggested_preset,
        filename=batch.filename,
        actor=batch.actor,
        started_at=batch.started_at,
        rows_total=batch.rows_total,
    )


def _apply_file(
    batch_id: int,
    opening: _Opening,
    actor: Actor,
    report: ImportReport,
    batch_size: int,
    progress: Callable[[int], None] | None,
    lease: _Lease,
) -> bool:
    """Read the rows after the header and apply them a batch at a time, each
    renewing ``lease``. False when the lease was lost: the batch is left to
    whoever holds it now, unfinished here."""
    kind, reader, columns, lines = opening.kind, opening.reader, opening.columns, opening.lines
    hasher = keyed_hasher()
    pending: list[Row] = []
    pending_rejections: list[Rejection] = []
    seen: set[str] = set()

    def flush() -> None:
        _commit_batch(
            batch_id,
            pending,
            pending_rejections,
            kind,
            actor,
            report,
            hasher,
            lease,
            opening.plan.system,
        )
        pending.clear()
        pending_rejections.clear()
        seen.clear()
        if progress is not None:
            progress(lines.bytes_read)

    number = 1  # the header is row 1, as a spreadsheet shows it
    try:
        for line in opening.rows:
            # One physical line is one row: its number is the line's.
            number += 1
            try:
                cells = reader.cells(line)
            except ValueError as exc:
                report.rows += 1
                pending_rejections.append(Rejection(number, str(exc)))
                if len(pending) + len(pending_rejections) >= batch_size:
                    flush()
                continue
            if not any(cell.strip() for cell in cells):
                continue  # a blank line is not a contact
            report.rows += 1
            parsed = parse_row(number, cells, columns)
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
    except _LeaseLost:
        db.session.rollback()
        log.warning("Import batch %s was taken over; this process stops.", batch_id)
        return False
    except Exception as exc:
        db.session.rollback()
        message = exc.message if isinstance(exc, DomainError) else "an unexpected error"
        error = f"Stopped at row {number}: {message}"
        if not _finish(batch_id, report, actor, lease, status="failed", error=error):
            return False  # not ours any more: the error is moot
        raise
    report.file_sha256 = lines.digest.hexdigest()
    return _finish(batch_id, report, actor, lease, status="done")


def _commit_batch(
    batch_id: int,
    rows: list[Row],
    rejections: list[Rejection],
    kind: InterestKind,
    actor: Actor,
    report: ImportReport,
    hasher: Callable[[str], str],
    lease: _Lease,
    system: str | None = None,
) -> None:
    """Apply one batch in its own transaction, renewing ``lease``; on a
    conflict, row by row."""
    try:
        outcome = apply_batch(rows, kind, batch_id, actor, hasher, system) if rows else Outcome()
        outcome.rejections[:0] = rejections
        renewed = _store_outcome(batch_id, outcome, report, lease)
        db.session.commit()
        lease.at = renewed
    except sa.exc.IntegrityError:
        # A concurrent writer created one of these addresses or companies:
        # redo the rows one at a time so that only the clashing one is refused.
        db.session.rollback()
        if len(rows) <= 1:
            failed = [
                Rejection(r.number, "changed concurrently; import the file again") for r in rows
            ]
            renewed = _store_outcome(
                batch_id, Outcome(rejections=[*rejections, *failed]), report, lease
            )
            db.session.commit()
            lease.at = renewed
            _after_commit(report, Outcome(rejections=[*rejections, *failed]))
            return
        _commit_batch(batch_id, [], rejections, kind, actor, report, hasher, lease, system)
        for row in rows:
            _commit_batch(batch_id, [row], [], kind, actor, report, hasher, lease, system)
        return
    _after_commit(report, outcome)


def _store_outcome(
    batch_id: int, outcome: Outcome, report: ImportReport, lease: _Lease
) -> datetime:
    """Write a chunk's counts and rejections, and the lease renewed (returned,
    held once the caller commits); ``_LeaseLost`` when another worker holds it."""
    renewed = utcnow()
    if outcome.rejections:
        db.session.execute(
            sa.insert(ImportRejection.__table__),
            [{"batch_id": batch_id, "row": r.row, "reason": r.reason} for r in outcome.rejections],
        )
    held = db.session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id == batch_id, ImportBatch.claimed_at == lease.at)
        .values(
            claimed_at=renewed,
            rows=report.rows,
            created=report.created + outcome.created,
            updated=report.updated + outcome.updated,
            unchanged=report.unchanged + outcome.unchanged,
            skipped_suppressed=report.skipped_suppressed + outcome.skipped_suppressed,
            rejected=report.rejected + len(outcome.rejections),
        )
    ).rowcount  # type: ignore[attr-defined]
    if not held:
        raise _LeaseLost(batch_id)
    return renewed


def _after_commit(report: ImportReport, outcome: Outcome) -> None:
    report.created += outcome.created
    report.updated += outcome.updated
    report.unchanged += outcome.unchanged
    report.skipped_suppressed += outcome.skipped_suppressed
    report.rejected += len(outcome.rejections)
    room = REPORT_REJECTIONS - len(report.rejections)
    if room > 0:
        report.rejections.extend(outcome.rejections[:room])
    if outcome.changed_ids:
        # One announcement per committed batch, naming all its contacts: a
        # receiver answers a batch with one query, not one per contact.
        decisions_changed.send(
            signal_sender(), contact_ids=tuple(outcome.changed_ids), kind="import"
        )


def _finish(
    batch_id: int,
    report: ImportReport,
    actor: Actor,
    lease: _Lease,
    *,
    status: str,
    error: str | None = None,
) -> bool:
    """End the batch ``done`` or ``failed``, its file deleted, unless another
    holds its lease now (False: nothing written, the batch and file are theirs)."""
    held = db.session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id == batch_id, ImportBatch.claimed_at == lease.at)
        .values(
            status=status,
            error=error[:500] if error else None,
            finished_at=utcnow(),
            file_sha256=report.file_sha256,
            rows=report.rows,
            rows_total=report.rows if status == "done" else ImportBatch.rows_total,
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not held:
        db.session.rollback()
        log.warning("Import batch %s was taken over; this process stops.", batch_id)
        return False
    report.status = status
    report.error = error
    report.finished_at = utcnow()
    # The file was kept for this run only: it holds personal data.
    delete_upload(batch_id)
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
    metrics.count_import(
        status,
        {outcome: getattr(report, outcome) for outcome in metrics.IMPORT_ROW_OUTCOMES},
    )
    return True


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
