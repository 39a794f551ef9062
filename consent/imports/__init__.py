"""CSV imports of contacts on legitimate interest (docs/rules.md R1, R3), streamed and idempotent.

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

The package by job: ``reading`` (the file, its lines, header and rows),
``mapping`` (which column holds which field: CRM presets, the importer's mapping),
``applying`` (one batch in one transaction), ``uploads`` (a file kept for the
worker) and ``batches`` (the use case and its records: run now by the command
line, queued for the worker by the API and the staff page). Its public names are re-exported here.
"""

from consent.imports.batches import (
    BATCH_SIZE,
    IMPORT_BASES,
    IMPORT_JOB,
    REPORT_REJECTIONS,
    ImportReport,
    get_batch,
    import_contacts,
    iter_rejections,
    list_batches,
    parse_basis,
    queue_import,
    report_of,
    resend_lost_imports,
    run_queued_import,
    stop_import,
)
from consent.imports.mapping import (
    PRESETS,
    TARGET_FIELDS,
    Preset,
    plan_for,
    preset_names,
    suggest_preset,
)
from consent.imports.reading import (
    COLUMN_ALIASES,
    HEAD_BYTES,
    MAX_LINE_BYTES,
    FileRejected,
    Rejection,
)

__all__ = [
    "BATCH_SIZE",
    "COLUMN_ALIASES",
    "HEAD_BYTES",
    "IMPORT_BASES",
    "IMPORT_JOB",
    "MAX_LINE_BYTES",
    "PRESETS",
    "REPORT_REJECTIONS",
    "TARGET_FIELDS",
    "FileRejected",
    "ImportReport",
    "Preset",
    "Rejection",
    "get_batch",
    "import_contacts",
    "iter_rejections",
    "list_batches",
    "parse_basis",
    "plan_for",
    "preset_names",
    "queue_import",
    "report_of",
    "resend_lost_imports",
    "run_queued_import",
    "stop_import",
    "suggest_preset",
]
