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

from crm.models import Contact, ExternalId, external_system_problem, external_value_problem
from extensions import db
from kernel.database import id_in, one_of
from kernel.errors import Conflict, InvalidInput
from kernel.timestamps import utcnow

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
    systems not named keep their ids. Does not commit. A real change moves
    the contact's ``updated_at`` (the changed-since read); setting the ids it
    already holds writes nothing.

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


def find_contact_by_reference(text: str) -> int | None:
    """The contact named by ``"system:id"``, or None (also for text that is no
    such reference: a search box's words)."""
    system, colon, value = text.partition(":")
    if not colon or external_system_problem(system) or external_value_problem(value):
        return None
    return _find(CONTACT, system, value)


def find_company(system: str, value: str) -> int | None:
    """The id of the company that ``system`` knows as ``value``, or None."""
    return _find(COMPANY, system, value)


def contacts_holding(system: str, values: Sequence[str]) -> dict[str, int]:
    """{value: contact id} for those of ``values`` a contact holds in ``system``:
    one query whatever their number (imports check a batch at once)."""
    wanted = list(dict.fromkeys(values))
    if not wanted:
        return {}
    return dict(
        db.session.execute(
            sa.select(_TABLE.c.value, _TABLE.c.owner_id).where(
                _TABLE.c.owner_type == CONTACT,
                _TABLE.c.system == system,
                one_of(_TABLE.c.value, wanted),
            )
        ).all()
    )


def set_many_for_contacts(system: str, values: Mapping[int, str]) -> None:
    """Give each contact (key) its id (value) in ``system``, replacing the one it
    held there: two statements whatever the number of contacts (a DELETE and
    one executemany INSERT, and one UPDATE of the contacts' ``updated_at``).
    Does not commit.

    For imports, which check the values first (``contacts_holding``) and
    reject the rows whose id another contact holds; a value taken meanwhile
    by a concurrent writer fails on the unique constraint (IntegrityError),
    which the caller's retry turns into that row's rejection.
    """
    if not values:
        return
    problem = external_system_problem(system)
    bad = next((v for v in values.values() if external_value_problem(v)), None)
    if problem or bad is not None:
        raise InvalidInput(
            problem or external_value_problem(bad or "") or "Invalid external id.",
            code="invalid_external_id",
        )
    owners = list(values)
    db.session.execute(
        sa.delete(_TABLE).where(
            _TABLE.c.owner_type == CONTACT,
            _TABLE.c.system == system,
            id_in(_TABLE.c.owner_id, owners),
        )
    )
    db.session.execute(
        _TABLE.insert(),
        [
            {"owner_type": CONTACT, "owner_id": owner, "system": system, "value": value}
            for owner, value in values.items()
        ],
    )
    # As set_for_contact: a changed id is a change of the contact for the
    # changed-since read (callers pass only the contacts whose id changes).
    db.session.execute(
        sa.update(Contact)
        .where(id_in(Contact.id, owners))
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def changes_for_contact(contact_id: int, ids: Mapping[str, str | None]) -> dict[str, str | None]:
    """The entries of ``ids`` (validated) that differ from what the contact
    holds: setting them again is no change (a connector's repeated sync)."""
    return _changes(CONTACT, contact_id, check(ids))


def changes_for_company(company_id: int, ids: Mapping[str, str | None]) -> dict[str, str | None]:
    """``changes_for_contact`` for a company."""
    return _changes(COMPANY, company_id, check(ids, "company"))


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


def _changes(
    owner_type: str, owner_id: int | None, wanted: Mapping[str, str | None]
) -> dict[str, str | None]:
    if not wanted:
        return {}
    held: dict[str, str] = {}
    if owner_id is not None:
        held = dict(
            db.session.execute(
                sa.select(_TABLE.c.system, _TABLE.c.value).where(
                    _TABLE.c.owner_type == owner_type,
                    _TABLE.c.owner_id == owner_id,
                    _TABLE.c.system.in_(list(wanted)),
                )
            ).all()
        )
    return {system: value for system, value in wanted.items() if held.get(system) != value}


def _set(owner_type: str, owner_id: int, ids: Mapping[str, str | None]) -> None:
    changes = _changes(owner_type, owner_id, check(ids))
    if not changes:
        return
    to_set = {system: value for system, value in changes.items() if value is not None}
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
    # Replace this owner's ids of the changed systems: delete then insert.
    db.session.execute(
        sa.delete(_TABLE).where(
            _TABLE.c.owner_type == owner_type,
            _TABLE.c.owner_id == owner_id,
            _TABLE.c.system.in_(list(changes)),
        )
    )
    if to_set:
        _insert(owner_type, owner_id, to_set)
    if owner_type == CONTACT:
        # A changed id is a change of the contact for the changed-since read.
        db.session.execute(
            sa.update(Contact)
            .where(Contact.id == owner_id)
            .values(updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def _insert(owner_type: str, owner_id: int, ids: Mapping[str, str]) -> None:
    """Insert the rows, in a savepoint: a concurrent transaction that gave one
    of these ids to another owner and committed after the check above makes
    the insert fail on the unique constraint, which is then the same 409 as
    when the check sees it (rather than a 500 and an aborted transaction)."""
    rows = [
        {"owner_type": owner_type, "owner_id": owner_id, "system": s, "value": v}
        for s, v in ids.items()
    ]
    try:
        with db.session.begin_nested():
            db.session.execute(_TABLE.insert(), rows)
    except sa.exc.IntegrityError:
        holders = db.session.execute(
            sa.select(_TABLE.c.owner_id, _TABLE.c.system, _TABLE.c.value).where(
                _TABLE.c.owner_type == owner_type,
                sa.tuple_(_TABLE.c.system, _TABLE.c.value).in_(list(ids.items())),
                _TABLE.c.owner_id != owner_id,
            )
        ).first()
        if holders is not None:
            raise _taken(owner_type, *holders) from None
        raise Conflict(
            "The external ids were changed by another request at the same time; "
            "nothing was saved. Read the record and send again.",
            code="concurrent_change",
        ) from None


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
