"""Acting like a person and a site: posting forms, reading decisions and the ledger."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from extensions import db

HOSTED = {"form_id": "hosted", "consent": "on", "language": "en"}
SITE_ORIGIN = "http://localhost"


def signup(client: Any, address: str, topics: str = "newsletter", **extra: Any) -> Any:
    """Post the hosted form as a browser does."""
    data = {**HOSTED, "email": address, "topics": topics, **extra}
    return client.post(
        "/subscribe",
        data=data,
        headers={"Origin": SITE_ORIGIN, "User-Agent": "Mozilla/5.0 (test)"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )


def contact_id_of(app: Any, address: str) -> int | None:
    from crm.models import Contact

    with app.app_context():
        found = db.session.scalar(sa.select(Contact.id).where(Contact.email == address))
        db.session.remove()
        return found


def decision(api: Any, contact_id: int, topic: str, channel: str = "email") -> dict[str, Any]:
    decisions = api.get(f"/api/v1/contacts/{contact_id}/permissions").json["decisions"]
    return next(d for d in decisions if d["topic"] == topic and d["channel"] == channel)


def events(api: Any, contact_id: int) -> list[dict[str, Any]]:
    return api.get(f"/api/v1/contacts/{contact_id}/events").json


def outbox(app: Any) -> list[Any]:
    from mailing.models import OutboxMessage

    with app.app_context():
        rows = list(db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))
        db.session.expunge_all()
        db.session.remove()
        return rows
