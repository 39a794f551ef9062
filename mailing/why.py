"""Why a person receives a marketing email, said truthfully in its footer.

From the decision behind the send (``consent.policy.Decision``): a consent to
the topic given on a date, a contact person at a customer company, or an
address from a named industry list. Read for a whole batch of letters with a
fixed number of queries (``reasons_for``); the industry list is named by
``consent.sources.industry_list_sources``, the same the GDPR art. 14 notice
names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from consent.policy import Decision, Reason
from consent.sources import industry_list_sources
from crm.models import Company, Contact
from extensions import db


@dataclass(frozen=True)
class Why:
    """``kind``: consent, customer or industry_list (the decision's reason);
    ``detail``: the consent's date (YYYY-MM-DD), the customer company's name
    or the industry list's source; None when not known."""

    kind: str
    detail: str | None = None


def reasons_for(pairs: Sequence[tuple[Contact, Decision]]) -> list[Why | None]:
    """The ``Why`` of each allowed decision (None for one that is not allowed).
    A fixed number of queries for the whole batch: the customers' companies and
    the lists' sources."""
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
    sources = industry_list_sources(
        {c.id for c, d in pairs if d.allowed and d.reason is Reason.INDUSTRY_LIST}
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
            found.append(Why("industry_list", sources.get(contact.id)))
    return found
