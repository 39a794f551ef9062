"""The ids other systems give our contacts and companies (issue 20, item 1).

A CRM knows a contact as ``hubspot: 1234``; we store that pair on the contact
(``crm.models.ExternalId``), return it with every read and find the contact by
it. An id names one contact per system (and one company per system), and a
contact has at most one id per system.

Nothing here commits: the caller's use case owns the transaction. Reads of
many owners are one query whatever their number.

The rows of a contact are deleted with it (``crm.services.remove_contacts``);
whoever must tell another system about the deletion (the change feed's
tombstones) reads them first, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa

from crm.models import ExternalId, external_system_problem, external_value_problem
from extensions import db
from kernel.database import id_in
from kernel.errors import Conflict, InvalidInput

CONTACT = "contact"
COMPANY = "company"
# How many systems one contact or company may hold ids of: a handful in
# practice; the bound keeps a request from writing thousands of rows.
MAX_SYSTEMS = 20


def for_contacts(contact_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """{contact id: {system: value}} for these contacts, in one query.

    A contact without external ids is left out of the answer (use ``.get(id, {})``).
    """
    return _for_owners(CONTACT, contact_ids)


def for_companies(company_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """{company id: {system: value}} for these companies, in one query."""
    return _for_owners(COMPANY, company_ids)


def set_for_contact(contact_id: int, ids: Mapping[str, str | None]) -> None:
    """Set (or with ``None`` remove) the contact's id in each named system;
    systems not named keep their ids. Does not commit.

    Raises InvalidInput for a bad system name or value, and Conflict
    ``external_id_taken`` (``details``: ``contact_id`` of the other contact and
    the ``system``; the API answers 409 ``{"error": {"code", "contact_id", ...}}``) when another contact already holds one of the ids; either way
    before anything is written.
    """
    _set(CONTACT, contact_id, ids)


def set_for_company(company_id: int, ids: Mapping[str, str | None]) -> None:
    """``set_for_contact`` for a company (Conflict names ``company_id``)."""
    _set(COMPANY, company_id, ids)


def find_contact(system: str, value: str) -> int | None:
    """The id of the contact that ``system`` knows as ``value``, or None."""
    return _find(CONTACT, system, value)


def find_company(system: str, value: str) -> int | None:
    """The id of the company that ``system`` knows as ``value``, or None."""
    return _find(COMPANY, system, value)


def delete_for_contacts(contact_ids: Sequence[int]) -> None:
    """Remove every external id of these contacts (one statement). Does not
    commit. Called by ``crm.services.remove_contacts``."""
    _delete(CONTACT, contact_ids)


def delete_for_companies(company_ids: Sequence[int]) -> None:
    """Remove every external id of these companies (one statement)."""
    _delete(COMPANY, company_ids)


def check(ids: Mapping[str, str | None], field: str = "external_ids") -> dict[str, str | None]:
    """``ids`` validated: system names, values (or None), at most ``MAX_SYSTEMS``.
    Raises InvalidInput naming each bad entry under ``field``."""
    if not isinstance(ids, Mapping):
        raise InvalidInput(
            "external_ids must be an object of system name to id.",
            code="invalid_external_id",
            fields={field: ["Not an object."]},
        )
    problems: dict[str, list[str]] = {}
    for system, value in ids.items():
        problem = external_system_problem(system)
        if problem is None and value is not None:
            problem = external_value_problem(value)
        if problem:
            problems[str(system)[:40]] = [problem]
    if len(ids) > MAX_SYSTEMS:
        problems["_schema"] = [f"At most {MAX_SYSTEMS} systems."]
    if problems:
        raise InvalidInput(
            "Invalid external ids: " + "; ".join(f"{k}: {v[0]}" for k, v in problems.items()),
            code="invalid_external_id",
            fields={field: problems},
        )
    return dict(ids)


def parse_reference(text: str) -> tuple[str, str]:
    """``"hubspot:1234"`` as ``("hubspot", "1234")``: the system before the
    first colon, the id after it (an id may itself hold colons)."""
    system, colon, value = text.partition(":")
    if not colon:
        raise InvalidInput(
            "external_id must be 'system:id', e.g. 'hubspot:1234'.",
            code="invalid_external_id",
            fields={"external_id": ["Expected 'system:id'."]},
        )
    check({system: value}, field="external_id")
    return system, value


# --- internals ----------------------------------------------------------------

_TABLE = ExternalId.__table__


def _for_owners(owner_type: str, owner_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    ids = list(dict.fromkeys(owner_ids))
    if not ids:
        return {}
    rows = db.session.execute(
        sa.select(_TABLE.c.owner_id, _TABLE.c.system, _TABLE.c.value)
        .where(_TABLE.c.owner_type == owner_type, id_in(_TABLE.c.owner_id, ids))
        .order_by(_TABLE.c.owner_id, _TABLE.c.system)
    )
    found: dict[int, dict[str, str]] = {}
    for owner_id, system, value in rows:
        found.setdefault(owner_id, {})[system] = value
    return found


def _find(owner_type: str, system: str, value: str) -> int | None:
    return db.session.scalar(
        sa.select(_TABLE.c.owner_id).where(
            _TABLE.c.owner_type == owner_type,
            _TABLE.c.system == system,
            _TABLE.c.value == value,
        )
    )


def _set(owner_type: str, owner_id: int, ids: Mapping[str, str | None]) -> None:
    wanted = check(ids)
    if not wanted:
        return
    to_set = {system: value for system, value in wanted.items() if value is not None}
    # Who holds the wanted values now: one query. Another owner means a 409,
    # raised before any row is written, so the caller's transaction stays clean.
    if to_set:
        holders = db.session.execute(
            sa.select(_TABLE.c.owner_id, _TABLE.c.system, _TABLE.c.value).where(
                _TABLE.c.owner_type == owner_type,
                sa.tuple_(_TABLE.c.system, _TABLE.c.value).in_(list(to_set.items())),
            )
        ).all()
        for holder, system, value in holders:
            if holder != owner_id:
                raise _taken(owner_type, holder, system, value)
    # Replace this owner's ids of the named systems: delete then insert, two
    # statements. A concurrent writer of the same value fails on the unique
    # constraint (IntegrityError), which the caller's retry turns into the 409.
    db.session.execute(
        sa.delete(_TABLE).where(
            _TABLE.c.owner_type == owner_type,
            _TABLE.c.owner_id == owner_id,
            _TABLE.c.system.in_(list(wanted)),
        )
    )
    if to_set:
        db.session.execute(
            _TABLE.insert(),
            [
                {"owner_type": owner_type, "owner_id": owner_id, "system": s, "value": v}
                for s, v in to_set.items()
            ],
        )


def _taken(owner_type: str, holder: int, system: str, value: str) -> Conflict:
    return Conflict(
        f"The {system} id {value!r} already belongs to {owner_type} {holder}; nothing was saved.",
        code="external_id_taken",
        fields={"external_ids": {system: [f"Already used by {owner_type} {holder}."]}},
        details={f"{owner_type}_id": holder, "system": system},
    )


def _delete(owner_type: str, owner_ids: Sequence[int]) -> None:
    ids = list(owner_ids)
    if not ids:
        return
    db.session.execute(
        sa.delete(_TABLE).where(_TABLE.c.owner_type == owner_type, id_in(_TABLE.c.owner_id, ids))
    )
