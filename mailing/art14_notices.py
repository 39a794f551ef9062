"""The GDPR art. 14 notice as its own email, within a month of obtaining the data.

A contact whose data came from someone else (an industry list, or a customer
company that gave us its contact person) must be told who we are, where the
data came from and what they may do about it: within one month of our
obtaining it (art. 14(3)(a)), or with the first email if that is earlier
(art. 14(3)(b), the campaign path: ``mailing.messages`` adds the notice to
the first marketing email). The scheduler's daily job (``ART14_NOTICES_JOB``)
and ``flask notices art14`` queue the notice for every contact still owed
one; delivery marks it given (``crm.services.note_art14_notice_given``).

It is information the law owes, not marketing: it carries no unsubscribe
link, is not asked of the policy and goes to a contact in a country where
email marketing needs consent, or who objected to marketing or is on the
suppression list, alike (docs/rules.md X15). An erased contact has no row
and gets nothing; an address known to bounce is left owed (visible on the
staff page) rather than sent a message that cannot arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from consent.models import ConsentEvent, EventKind, InterestKind
from consent.policies import current_policy_version
from consent.sources import industry_list_sources, named_sources
from crm.models import Company, Contact
from extensions import db
from kernel.timestamps import utcnow
from mailing import messages
from mailing.models import OutboxMessage
from mailing.outbox import insert_and_hand_over, transactional_row

TEMPLATE = messages.SOURCE_NOTICE
# Sent daily by the scheduler (kernel.scheduling), at RETENTION_DAILY_AT.
ART14_NOTICES_JOB = "send_art14_notices"
CHUNK = 1_000


def notice_key(contact_id: int) -> str:
    """One notice per contact, ever: a second run finds the first row."""
    return f"art14-notice:contact:{contact_id}"


def _owed_chunks() -> Iterator[list[Any]]:
    """Contacts owed the notice that none was queued for yet, by id, a chunk at a time."""
    last_id = 0
    queued = sa.exists().where(
        OutboxMessage.contact_id == Contact.id, OutboxMessage.template == TEMPLATE
    )
    while True:
        rows = db.session.execute(
            sa.select(Contact.id, Contact.language, Company.name.label("company"))
            .outerjoin(Company, Company.id == Contact.company_id)
            .where(
                Contact.id > last_id,
                Contact.art14_notice_owed_since.is_not(None),
                Contact.hard_bounced_at.is_(None),
                ~queued,
            )
            .order_by(Contact.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        yield list(rows)
        last_id = rows[-1].id


def sources_of(contact_ids: list[int]) -> dict[int, tuple[str, str]]:
    """Per contact, the kind and the named source of the first legitimate-interest
    basis it was given: an industry list named as the footer names it
    (``consent.sources.industry_list_sources``), a customer's grant by its own
    source (``consent.sources.named_sources``). A fixed number of queries."""
    events = db.session.execute(
        sa.select(
            ConsentEvent.contact_id,
            ConsentEvent.interest_kind,
            ConsentEvent.source,
            ConsentEvent.source_ref,
        )
        .where(
            ConsentEvent.contact_id.in_(contact_ids),
            ConsentEvent.kind == EventKind.BASIS_GRANTED,
            ConsentEvent.interest_kind.is_not(None),
        )
        # A grant a caller named wins over the one the company's relationship
        # gave (consent.bases): it says where the address came from.
        .order_by((ConsentEvent.source != "company").asc(), ConsentEvent.id.desc())
    ).all()
    first = {e.contact_id: e for e in events}  # the last written wins: the earliest event
    lists = industry_list_sources(
        [cid for cid, e in first.items() if e.interest_kind == InterestKind.INDUSTRY_LIST]
    )
    named = named_sources((cid, e.source, e.source_ref) for cid, e in first.items())
    return {cid: (str(e.interest_kind), lists.get(cid, named[cid])) for cid, e in first.items()}


def queue_art14_notices(at: datetime | None = None) -> int:
    """Queue the art. 14 notice for every contact still owed one; returns how many
    were queued. Set-based, a chunk of contacts per transaction, then handed
    to the delivery jobs; running it twice queues nothing the second time."""
    now = at or utcnow()
    policy = current_policy_version()
    policy_params = {
        "policy_url": policy.url if policy is not None else None,
        "policy_version": policy.version if policy is not None else None,
    }
    queued = 0
    for chunk in _owed_chunks():
        sources = sources_of([r.id for r in chunk])
        rows = []
        for row in chunk:
            kind, source = sources.get(row.id, ("industry_list", ""))
            params = {"kind": kind, "source": source, "company": row.company, **policy_params}
            rows.append(
                transactional_row(notice_key(row.id), row.id, TEMPLATE, row.language, params, now)
            )
        try:
            queued += insert_and_hand_over(rows)
        except sa.exc.IntegrityError:
            # A run at the same moment queued some of them; they are owed no second row.
            db.session.rollback()
    return queued
