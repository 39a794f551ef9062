"""Which column of an import file holds which field: the recognised header
names, a CRM's export preset, or a mapping the importer gives.

A CRM export names its columns its own way (HubSpot's "Record ID", "First
Name", "Country/Region"), and the default recognised names (``COLUMN_ALIASES``)
read only some of them. A **preset** names the columns of one vendor's
contact export and the system whose id the record id column holds; a
**mapping** is the importer's own ``{"header": "field"}`` object (JSON). With
either, exactly the columns it names are read and every other column is
ignored (listed in the report), so a column is never read by a guess.

The presets' header names come from each vendor's public documentation of
its contact fields and its export or import files (named per preset below).
None was checked against a live export: no vendor account is reachable from
where this was built. A header a vendor renames, or an export in another UI
language, needs a mapping (docs/imports.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from consent.imports.reading import COLUMN_ALIASES, FileRejected, canonical_header, map_header
from crm.models import external_system_problem
from kernel.errors import N_, InvalidInput

# The fields a column can fill. "external_id" is the record id of the system
# the preset names (a mapping names it: "external_id:<system>").
TARGET_FIELDS: tuple[str, ...] = (*COLUMN_ALIASES, "external_id")
EXTERNAL_ID = "external_id"
MAX_MAPPING_BYTES = 16 * 1024
MAX_MAPPING_COLUMNS = 100


@dataclass(frozen=True)
class Preset:
    """One vendor's contact export: the headers of each field, most likely first."""

    name: str
    vendor: str
    system: str
    columns: Mapping[str, tuple[str, ...]]

    def signature(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The record id and email headers: a file holding one of each looks like this export."""
        return self.columns[EXTERNAL_ID], self.columns["email"]


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="hubspot",
            vendor="HubSpot",
            system="hubspot",
            # A contacts export writes each property's label as its header: the
            # labels of HubSpot's default contact properties (knowledge.hubspot.com,
            # "Set up your import files" and the default contact properties), and
            # the four columns issue 20 found lost: Record ID, First Name, Last
            # Name, Country/Region. Its "Preferred language" holds language names,
            # not ISO codes, so it is not read.
            columns={
                EXTERNAL_ID: ("Record ID",),
                "email": ("Email",),
                "first_name": ("First Name",),
                "last_name": ("Last Name",),
                "company": ("Company Name",),
                "country": ("Country/Region",),
            },
        ),
        Preset(
            name="salesforce",
            vendor="Salesforce",
            system="salesforce",
            # The Contact object's field labels, as a report export writes them,
            # and its API names, as Data Loader and the weekly Data Export write
            # them (developer.salesforce.com, Object Reference: Contact).
            columns={
                EXTERNAL_ID: ("Contact ID", "Id"),
                "email": ("Email",),
                "first_name": ("First Name", "FirstName"),
                "last_name": ("Last Name", "LastName"),
                "company": ("Account Name", "Account.Name"),
                "country": ("Mailing Country", "MailingCountry"),
            },
        ),
        Preset(
            name="pipedrive",
            vendor="Pipedrive",
            system="pipedrive",
            # Pipedrive names its fields by item ("Person - Name", "Person -
            # Email", "Organization - Name", as its import mapping shows them)
            # and an email by its label ("- Work"); the person fields (name, first
            # and last name, email, organization) are those Pipedrive's support
            # page "Importing: mandatory fields" names. The exact export headers
            # come from secondary sources (import guides, a CSV alias list that
            # strips these prefixes): the weakest-sourced preset. A person has no
            # country field of its own in Pipedrive, so none is read.
            columns={
                EXTERNAL_ID: ("Person - ID",),
                "email": ("Person - Email - Work", "Person - Email"),
                "name": ("Person - Name",),
                "first_name": ("Person - First name",),
                "last_name": ("Person - Last name",),
                "company": ("Person - Organization", "Organization - Name"),
            },
        ),
        Preset(
            name="lime",
            vendor="Lime CRM",
            system="lime",
            # Lime CRM's person card in the Swedish client (Förnamn, Efternamn,
            # E-post, Företag, Land) and the database names of the same fields
            # (docs.lime-crm.com, "Import: Concepts and behavior", shows a person
            # file with firstname, lastname, email); idperson is the person
            # table's key.
            columns={
                EXTERNAL_ID: ("idperson",),
                "email": ("E-post", "email"),
                "first_name": ("Förnamn", "firstname"),
                "last_name": ("Efternamn", "lastname"),
                "company": ("Företag", "company"),
                "country": ("Land", "country"),
            },
        ),
        Preset(
            name="superoffice",
            vendor="SuperOffice",
            system="superoffice",
            # In SuperOffice a "contact" is the company and a "person" the
            # individual. The person fields (ID, First name, Last name, E-mail,
            # Country) as SuperOffice's import pages (docs.superoffice.com) and a
            # partner's import specification for SuperOffice persons name them;
            # "Person ID" as a list export labels the id; Swedish client labels.
            columns={
                EXTERNAL_ID: ("Person ID", "ID"),
                "email": ("E-mail", "E-post"),
                "first_name": ("First name", "Firstname", "Förnamn"),
                "last_name": ("Last name", "Lastname", "Efternamn"),
                "company": ("Company", "Company name", "Företag"),
                "country": ("Country", "Land"),
            },
        ),
    )
}


@dataclass(frozen=True)
class ColumnPlan:
    """How the header of a file is read: its name for the report, the external
    id's system, and what each header (canonical form) fills. ``explicit`` means
    the file must hold every header named (a user's mapping); a preset's
    alternatives are each optional."""

    label: str | None = None
    system: str | None = None
    targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    explicit: bool = False


DEFAULT_PLAN = ColumnPlan()


def preset_names() -> list[str]:
    return sorted(PRESETS)


def plan_for(preset: str | None, mapping: str | None) -> ColumnPlan:
    """The column plan an import asked for: a preset by name, a user's mapping
    (JSON text), or neither (the recognised header names). Raises
    ``InvalidInput`` (the request is answered 422, nothing stored) for an
    unknown preset, both at once, or a mapping that is not a JSON object of
    header to field, names a field that does not exist, or maps no column to
    the email."""
    preset = (preset or "").strip() or None
    mapping = (mapping or "").strip() or None
    if preset and mapping:
        raise InvalidInput(
            N_("Give either a preset or a mapping, not both: a preset is a mapping."),
            code="invalid_mapping",
            fields={"mapping": ["Leave it empty when a preset is chosen."]},
        )
    if preset:
        chosen = PRESETS.get(preset.lower())
        if chosen is None:
            raise InvalidInput(
                f"Unknown preset; use one of {', '.join(preset_names())}.",
                code="unknown_preset",
                fields={"preset": [f"One of {', '.join(preset_names())}."]},
            )
        return ColumnPlan(label=chosen.name, system=chosen.system, targets=chosen.columns)
    if mapping:
        return _plan_from_mapping(mapping)
    return DEFAULT_PLAN


def _mapping_error(message: str) -> InvalidInput:
    return InvalidInput(message, code="invalid_mapping", fields={"mapping": [message]})


def _plan_from_mapping(text: str) -> ColumnPlan:
    if len(text.encode()) > MAX_MAPPING_BYTES:
        raise _mapping_error(f"The mapping is longer than {MAX_MAPPING_BYTES // 1024} KiB.")
    try:
        loaded: Any = json.loads(text)
    except (ValueError, RecursionError):
        raise _mapping_error(
            "The mapping is not JSON; give an object of header to field, e.g. "
            '{"E-post": "email", "Förnamn": "first_name"}.'
        ) from None
    if not isinstance(loaded, dict) or not loaded:
        raise _mapping_error(
            'The mapping must be a JSON object of header to field, e.g. {"E-post": "email"}.'
        )
    if len(loaded) > MAX_MAPPING_COLUMNS:
        raise _mapping_error(f"The mapping names more than {MAX_MAPPING_COLUMNS} columns.")
    targets: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    system: str | None = None
    valid = ", ".join((*TARGET_FIELDS[:-1], "external_id:<system>"))
    for header, target in loaded.items():
        if not isinstance(target, str) or not header.strip() or len(header) > 200:
            raise _mapping_error(
                "Each entry of the mapping is a header (1-200 characters) and a field name."
            )
        key = canonical_header(header)
        if not key:
            raise _mapping_error("A header of the mapping has no letters or digits.")
        if key in seen:
            raise _mapping_error("Two headers of the mapping are the same column.")
        name, colon, named_system = target.strip().partition(":")
        if name == EXTERNAL_ID:
            if not colon or external_system_problem(named_system):
                raise _mapping_error(
                    "A record id column maps to external_id:<system>, the system in lower "
                    "case (e.g. external_id:hubspot)."
                )
            system = named_system
        elif colon or name not in TARGET_FIELDS:
            raise _mapping_error(f"The mapping names a field that does not exist; use {valid}.")
        if name in targets:
            raise _mapping_error(f"The mapping maps two columns to {name}; keep one.")
        seen[key] = name
        targets[name] = (header,)
    if "email" not in targets:
        raise _mapping_error("The mapping maps no column to email; every contact needs one.")
    return ColumnPlan(label="mapping", system=system, targets=targets, explicit=True)


def read_header(cells: list[str], plan: ColumnPlan) -> tuple[dict[str, int], list[str]]:
    """The column index of each field, and the headers not read. Raises
    ``FileRejected`` when the file has no email column, holds a field twice,
    or lacks a column the mapping names."""
    if not plan.targets:
        return _default_columns(cells)
    positions: dict[str, list[int]] = {}
    for position, cell in enumerate(cells):
        positions.setdefault(canonical_header(cell), []).append(position)
    columns: dict[str, int] = {}
    missing = []
    for target, headers in plan.targets.items():
        # A preset lists a field's spellings in order of preference: the first
        # one the file holds is read and the others ignored.
        key = next((k for k in map(canonical_header, headers) if k in positions), None)
        if key is None:
            if plan.explicit:
                missing.append(headers[0])
            continue
        if len(positions[key]) > 1:
            raise FileRejected(
                f"Two columns are named {cells[positions[key][0]].strip()[:100]!r}; keep one."
            )
        columns[target] = positions[key][0]
    if missing:
        raise FileRejected(
            "The file has no column named "
            + ", ".join(repr(m[:100]) for m in missing)
            + " although the mapping names it; check the spelling against the header row."
        )
    if "email" not in columns:
        wanted = " or ".join(repr(h) for h in plan.targets["email"])
        raise FileRejected(
            f"The file has no email column: the {plan.label} columns want {wanted}. "
            "Check the preset, or give a mapping."
        )
    read = set(columns.values())
    ignored = [c.strip()[:100] for i, c in enumerate(cells) if i not in read and c.strip()]
    return columns, ignored


def _default_columns(cells: list[str]) -> tuple[dict[str, int], list[str]]:
    try:
        return map_header(cells)
    except FileRejected as exc:
        suggestion = suggest_preset(cells)
        if suggestion is None:
            raise
        raise FileRejected(
            f"{exc.message} The header looks like a {PRESETS[suggestion].vendor} export: "
            f"import it with the preset {suggestion}."
        ) from None


def suggest_preset(cells: list[str]) -> str | None:
    """The one preset whose record id and email columns the header holds, or
    None. Only ever a suggestion shown to the importer: a preset is applied
    when asked for, never because a header looked like one."""
    keys = {canonical_header(cell) for cell in cells}
    matches = [
        name
        for name, preset in PRESETS.items()
        if all(any(canonical_header(h) in keys for h in headers) for headers in preset.signature())
    ]
    return matches[0] if len(matches) == 1 else None
