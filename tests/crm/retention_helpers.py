"""Building contacts at chosen times, and reading back what a run left."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from crm.models import Activity, AnonymisedActivity, Company, Contact
from extensions import db

FAR_PAST = datetime(2000, 1, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    """An aware instant from ISO text; a bare date or time means UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_contact(
    email: str,
    *,
    last_interaction: str | None = None,
    created: str = "2000-01-01T00:00:00",
    legal_hold: str | None = None,
    company: Company | None = None,
    activities: list[tuple[str, str, str | None]] = (),  # type: ignore[assignment]
) -> Contact:
    """A contact as the CRM holds it, with activities (kind, occurred_at, note). Not committed."""
    contact = Contact(
        email=email,
        name=email.split("@")[0].title(),
        phone="+46 70 000 00 00",
        created_at=at(created),
        last_interaction_at=at(last_interaction) if last_interaction else None,
        legal_hold_reason=legal_hold,
        company=company,
    )
    db.session.add(contact)
    db.session.flush()
    for kind, occurred, note in activities:
        db.session.add(
            Activity(
                contact_id=contact.id,
                kind=kind,
                occurred_at=at(occurred),
                author="user:anna@example.com",
                note=note,
            )
        )
    return contact


def contact_emails() -> set[str]:
    return set(db.session.scalars(sa.select(Contact.email)))


def exists(email: str) -> bool:
    return email in contact_emails()


def snapshot() -> dict[str, Any]:
    """What is left, by values that do not depend on ids."""
    db.session.expire_all()
    return {
        "contacts": sorted(contact_emails()),
        "activities": sorted(
            (email, kind, note or "")
            for email, kind, note in db.session.execute(
                sa.select(Contact.email, Activity.kind, Activity.note).join(
                    Contact, Activity.contact_id == Contact.id
                )
            )
        ),
        "anonymised": sorted(
            (kind, month.isoformat(), rule)
            for kind, month, rule in db.session.execute(
                sa.select(
                    AnonymisedActivity.kind,
                    AnonymisedActivity.occurred_month,
                    AnonymisedActivity.rule,
                )
            )
        ),
    }


def wipe() -> None:
    """Empty every table, as the test fixture does between tests."""
    db.session.remove()
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())


def day(text: str) -> date:
    return date.fromisoformat(text)
