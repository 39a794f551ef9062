"""Why a person receives a marketing email, said truthfully in its footer.

From the decision behind the send (``consent.policy.Decision``): a consent to
the topic given on a date, a contact person at a customer company, or an
address from a named industry list. Read for a whole batch of letters with a
fixed number of queries (``reasons_for``); the named source of a basis is the
import's ``source`` as the importer named it, or the ``source`` the API
caller gave (``named_sources``), the same the GDPR art. 14 notice names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from consent.models import ConsentEvent, ImportBatch
from consent.policy import Decision, Reason
from crm.models import Company, Contact
from extensions import db

_BATCH_REF = "import-batch:"


@dataclass(frozen=True)
class Why:
    """``kind``: consent, customer or industry_list (the decision's reason);
    ``detail``: the consent's date (YYYY-MM-DD), the customer company's name
    or the industry list's source; None when not known."""

    kind: str
    detail: str | None = None


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


def reasons_for(pairs: Sequence[tuple[Contact, Decision]]) -> list[Why | None]:
    """The ``Why`` of each allowed decision (None for one that is not allowed).
    Two queries for the whole batch: the customers' companies and the lists' sources."""
    company_ids = {
        c.company_id for c, d in pairs if d.reason is Reason.CUSTOMER and c.company_id is not None
    }
    companies: dict[int, str] = (
        dict(
            db.session.execute(
                sa.select(Company.id, Company.name).where(Company.id.in_(company_ids))
            ).all()
        )
        if company_ids
        else {}
    )
    event_ids = {
        d.event_id for _, d in pairs if d.reason is Reason.INDUSTRY_LIST and d.event_id is not None
    }
    sources = (
        named_sources(
            db.session.execute(
                sa.select(ConsentEvent.id, ConsentEvent.source, ConsentEvent.source_ref).where(
                    ConsentEvent.id.in_(event_ids)
                )
            ).all()
        )
        if event_ids
        else {}
    )
    found: list[Why | None] = []
    for contact, decision in pairs:
        if not decision.allowed:
            found.append(None)
        elif decision.reason is Reason.CONSENT:
            since = decision.since.date().isoformat() if decision.since else None
            found.append(Why("consent", since))
        elif decision.reason is Reason.CUSTOMER:
            company = companies.get(contact.company_id) if contact.company_id else None
            found.append(Why("customer", company))
        else:
            source = sources.get(decision.event_id) if decision.event_id else None
            found.append(Why("industry_list", source))
    return found
