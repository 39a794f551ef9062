"""What the staff page and the metrics read of the connectors, and the admin's
actions on them: resume a connector stopped by refused credentials; read the
CRM in full again (a full resync)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from connectors import config, sync
from connectors.models import ConnectorDeletion, ConnectorRecord, ConnectorState
from crm import services as crm
from crm.models import ExternalId
from crm.retention import CopyDeletions
from extensions import db
from kernel.access import Actor
from kernel.database import id_in
from kernel.errors import N_, Conflict
from kernel.timestamps import utcnow


@dataclass(frozen=True)
class Overview:
    name: str
    enabled: bool
    state: ConnectorState | None
    deletions_owed: list[ConnectorDeletion]
    # delete or anonymise (``<NAME>_ERASURE``), and the deletions done so far by each.
    erasure: str = config.DELETE
    done: dict[str, int] = field(default_factory=dict)


def overview() -> list[Overview]:
    """Every enabled connector, and any other that has a state, with the deletions it still owes."""
    enabled = config.enabled()
    states = {s.name: s for s in db.session.scalars(sa.select(ConnectorState))}
    owed: dict[str, list[ConnectorDeletion]] = {}
    for deletion in db.session.scalars(
        sa.select(ConnectorDeletion)
        .where(ConnectorDeletion.done_at.is_(None))
        .order_by(ConnectorDeletion.id)
    ):
        owed.setdefault(deletion.connector, []).append(deletion)
    done: dict[str, dict[str, int]] = {}
    for name, erasure, count in db.session.execute(
        sa.select(ConnectorDeletion.connector, ConnectorDeletion.erasure, sa.func.count())
        .where(ConnectorDeletion.done_at.is_not(None))
        .group_by(ConnectorDeletion.connector, ConnectorDeletion.erasure)
    ):
        # Done before the mode was recorded (migration 0038): deleted, the only way then.
        key = erasure or config.DELETE
        done.setdefault(name, {})[key] = done.get(name, {}).get(key, 0) + int(count)
    names = list(dict.fromkeys([*enabled, *sorted(states)]))
    return [
        Overview(
            n,
            n in enabled,
            states.get(n),
            owed.get(n, []),
            erasure=config.erasure(n),
            done=done.get(n, {}),
        )
        for n in names
    ]


def resume(actor: Actor, name: str) -> ConnectorState:
    """Let a connector stopped by refused credentials run again (the admin
    replaced the token); audited."""
    state = db.session.get(ConnectorState, name)
    if state is None or state.stopped_because is None:
        raise Conflict(N_("This connector is not stopped."), code="not_stopped")
    state.stopped_because = None
    crm.audit(actor, "connector.resume", detail=name)
    db.session.commit()
    return state


def full_resync(actor: Actor, name: str) -> ConnectorState:
    """Read every CRM record again at the connector's next turn, as the first
    sync did (a changed-since read may have missed a change the CRM did not
    date, or HubSpot's search could not page past); audited. Decisions,
    deletions owed and the change feed's cursor are untouched."""
    state = db.session.get(ConnectorState, name)
    if state is None:
        raise Conflict(N_("This connector has not run yet; its first sync reads everything."))
    sync.forget_reads(name)
    crm.audit(actor, "connector.full_resync", detail=name)
    db.session.commit()
    return state


def receivers_told(app: object, **_: object) -> list[str]:
    """For the retention preview (``crm.changes.receivers``): each enabled
    connector, which deletes the CRM's copy of what a purge removes here (the
    preview counts the contacts per system that holds their id)."""
    return [f"connector {name}" for name in config.enabled()]


def first_sync_exclusions(app: object, *, contact_ids: list[int], **_: object) -> dict[int, str]:
    """For retention (``kernel.signals.collect_retention_exclusions``): the
    contacts an enabled connector created while its first sync is not over
    (``sync.SETTLED``: not every read has completed a pass yet). A CRM lists
    old activities first, and a first sync spans many turns: a contact dated
    only by an old call read so far must not be purged (and deleted in the
    CRM) before a later activity of it is read. Two queries, whatever the count."""
    enabled = config.enabled()
    if not enabled or not contact_ids:
        return {}
    unsettled = [
        name
        for name, cursors in db.session.execute(
            sa.select(ConnectorState.name, ConnectorState.cursors).where(
                ConnectorState.name.in_(enabled)
            )
        )
        if not (cursors or {}).get(sync.SETTLED)
    ]
    # A connector enabled but never run has created nothing yet.
    if not unsettled:
        return {}
    reasons: dict[int, str] = {}
    for contact_id, name in db.session.execute(
        sa.select(ConnectorRecord.contact_id, ConnectorRecord.connector)
        .where(
            ConnectorRecord.connector.in_(unsettled),
            ConnectorRecord.object_type == sync.CONTACTS,
            ConnectorRecord.created_contact.is_(True),
            id_in(ConnectorRecord.contact_id, contact_ids),
        )
        .order_by(ConnectorRecord.connector)
    ):
        if contact_id is not None:
            reasons.setdefault(
                contact_id, f"the first sync of {name} has not finished reading its history"
            )
    return reasons


# Contact ids per query when counting a preview's copies: one array
# parameter on PostgreSQL, under SQLite's 32,766 variables.
CHUNK = 10000


def copy_deletions(
    app: object, *, contacts: set[int], activities: dict[int, set[int]], **_: object
) -> list[CopyDeletions]:
    """For the retention preview (``kernel.signals.collect_copy_deletions``):
    per enabled connector, what it will delete or anonymise in the CRM after
    the run, counted as its deletion path will (``sync._owe_deletions``): of
    each contact removed whole, the contact (when it carries the connector's
    id) with every other CRM contact linked to it, and every activity
    mirrored from the CRM; of the other contacts, the mirrored activities
    whose rows the run removes. Per CRM object type,
    and with the deletions still owed from before."""
    names = config.enabled()
    if not names:
        return []
    found = []
    for name in names:
        due: dict[str, int] = {}

        def add(object_type: str, count: int, due: dict[str, int] = due) -> None:
            due[object_type] = due.get(object_type, 0) + count

        whole = sorted(contacts)
        for start in range(0, len(whole), CHUNK):
            chunk = whole[start : start + CHUNK]
            # The contact's id in the CRM and every other CRM contact linked
            # to it (duplicates there), each once.
            remote_ids = set(
                db.session.scalars(
                    sa.select(ExternalId.value).where(
                        ExternalId.owner_type == "contact",
                        ExternalId.system == name,
                        id_in(ExternalId.owner_id, chunk),
                    )
                )
            ) | set(
                db.session.scalars(
                    sa.select(ConnectorRecord.remote_id).where(
                        ConnectorRecord.connector == name,
                        ConnectorRecord.object_type == sync.CONTACTS,
                        id_in(ConnectorRecord.contact_id, chunk),
                    )
                )
            )
            add(sync.CONTACTS, len(remote_ids))
            for object_type, count in db.session.execute(
                sa.select(ConnectorRecord.object_type, sa.func.count())
                .where(
                    ConnectorRecord.connector == name,
                    ConnectorRecord.object_type.not_in((sync.CONTACTS, sync.STATUS)),
                    id_in(ConnectorRecord.contact_id, chunk),
                )
                .group_by(ConnectorRecord.object_type)
            ):
                add(object_type, int(count))
        partly = sorted(activities)
        for start in range(0, len(partly), CHUNK):
            chunk = partly[start : start + CHUNK]
            # By contact (indexed), then the activities this run removes.
            for object_type, contact_id, activity_id in db.session.execute(
                sa.select(
                    ConnectorRecord.object_type,
                    ConnectorRecord.contact_id,
                    ConnectorRecord.activity_id,
                ).where(
                    ConnectorRecord.connector == name,
                    ConnectorRecord.object_type.not_in((sync.CONTACTS, sync.STATUS)),
                    ConnectorRecord.activity_id.is_not(None),
                    id_in(ConnectorRecord.contact_id, chunk),
                )
            ):
                if contact_id is not None and activity_id in activities.get(contact_id, ()):
                    add(object_type, 1)
        owed = {
            str(object_type): int(count)
            for object_type, count in db.session.execute(
                sa.select(ConnectorDeletion.object_type, sa.func.count())
                .where(ConnectorDeletion.connector == name, ConnectorDeletion.done_at.is_(None))
                .group_by(ConnectorDeletion.object_type)
            )
        }
        found.append(
            CopyDeletions(
                system=f"connector {name}",
                erasure=config.erasure(name),
                due={k: v for k, v in sorted(due.items()) if v},
                owed=dict(sorted(owed.items())),
            )
        )
    return found


def last_success_age_s() -> float | None:
    """Seconds since the enabled connector that succeeded longest ago last
    succeeded (the one an alert cares about); None when none is enabled or none
    has succeeded yet."""
    names = config.enabled()
    if not names:
        return None
    moments: list[datetime | None] = [
        db.session.scalar(sa.select(ConnectorState.last_success_at).where(ConnectorState.name == n))
        for n in names
    ]
    if any(m is None for m in moments):
        return None
    oldest = min(m for m in moments if m is not None)
    return (utcnow() - oldest).total_seconds()


def stopped_count() -> float:
    names = config.enabled()
    return float(
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(ConnectorState)
            .where(ConnectorState.name.in_(names), ConnectorState.stopped_because.is_not(None))
        )
        or 0
    )


def deletions_owed() -> float:
    return float(
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(ConnectorDeletion)
            .where(ConnectorDeletion.done_at.is_(None))
        )
        or 0
    )
