"""Where an address came from, by the name its source was given.

The one answer for every text that tells the person (the footer of a
marketing email, ``mailing.why``; the GDPR art. 14 notice,
``mailing.art14_notices``): an import batch's own ``source`` as the importer
named it, or the ``source`` the API caller gave.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import Any

import sqlalchemy as sa

from consent.models import ALL, ConsentEvent, EventKind, ImportBatch, InterestKind, PermissionState
from extensions import db

_BATCH_REF = "import-batch:"


def _batch_id(source_ref: str | None) -> int | None:
    ref = source_ref or ""
    number = ref.removeprefix(_BATCH_REF)
    return int(number) if ref.startswith(_BATCH_REF) and number.isdigit() else None


def named_sources(events: Iterable[Any]) -> dict[int, str]:
    """``{key: source}`` for ``(key, source, source_ref)`` of ledger events: an
    import batch's own name where the event came from one. One query."""
    rows = list(events)
    batch_ids = {b for _, _, ref in rows if (b := _batch_id(ref)) is not None}
    batches: dict[int, str] = (
        dict(
            db.session.execute(
                sa.select(ImportBatch.id, ImportBatch.source).where(ImportBatch.id.in_(batch_ids))
            ).all()
        )
        if batch_ids
        else {}
    )
    named = {}
    for key, source, ref in rows:
        batch = _batch_id(ref)
        named[key] = batches.get(batch, source) if batch is not None else source
    return named


def industry_list_sources(contact_ids: Collection[int]) -> dict[int, str]:
    """``{contact id: source}``: the named source of each contact's industry-list
    grant, the one the decision names (the projection's ``industry_list_event_id``)
    or, where the ground has ended, the latest in the ledger. Contacts never
    given the basis are absent. Three queries, whatever the number of contacts."""
    if not contact_ids:
        return {}
    named_by_projection = dict(
        db.session.execute(
            sa.select(PermissionState.contact_id, PermissionState.industry_list_event_id).where(
                PermissionState.contact_id.in_(contact_ids),
                PermissionState.topic == ALL,
                PermissionState.channel == ALL,
                PermissionState.industry_list_event_id.is_not(None),
            )
        ).all()
    )
    grants = db.session.execute(
        sa.select(
            ConsentEvent.contact_id, ConsentEvent.id, ConsentEvent.source, ConsentEvent.source_ref
        )
        .where(
            ConsentEvent.contact_id.in_(contact_ids),
            ConsentEvent.kind == EventKind.BASIS_GRANTED,
            ConsentEvent.interest_kind == InterestKind.INDUSTRY_LIST,
        )
        .order_by(ConsentEvent.id)
    ).all()
    of_contact: dict[int, list[Any]] = defaultdict(list)
    for grant in grants:
        of_contact[grant.contact_id].append(grant)
    chosen = {
        cid: next((g for g in given if g.id == named_by_projection.get(cid)), given[-1])
        for cid, given in of_contact.items()
    }
    return named_sources((cid, g.source, g.source_ref) for cid, g in chosen.items())
