"""What the staff page and the metrics read of the connectors, and the admin's
actions on them: resume a connector stopped by refused credentials; read the
CRM in full again (a full resync)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from connectors import config, sync
from connectors.models import ConnectorDeletion, ConnectorState
from crm import services as crm
from extensions import db
from kernel.access import Actor
from kernel.errors import Conflict
from kernel.timestamps import utcnow


@dataclass(frozen=True)
class Overview:
    name: str
    enabled: bool
    state: ConnectorState | None
    deletions_owed: list[ConnectorDeletion]


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
    names = list(dict.fromkeys([*enabled, *sorted(states)]))
    return [Overview(n, n in enabled, states.get(n), owed.get(n, [])) for n in names]


def resume(actor: Actor, name: str) -> ConnectorState:
    """Let a connector stopped by refused credentials run again (the admin
    replaced the token); audited."""
    state = db.session.get(ConnectorState, name)
    if state is None or state.stopped_because is None:
        raise Conflict("This connector is not stopped.", code="not_stopped")
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
        raise Conflict("This connector has not run yet; its first sync reads everything.")
    sync.forget_reads(name)
    crm.audit(actor, "connector.full_resync", detail=name)
    db.session.commit()
    return state


def receivers_told(app: object, **_: object) -> list[str]:
    """For the retention preview (``crm.changes.receivers``): each enabled
    connector, which deletes the CRM's copy of what a purge removes here (the
    preview counts the contacts per system that holds their id)."""
    return [f"connector {name}" for name in config.enabled()]


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
