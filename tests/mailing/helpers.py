"""Acting like a person and a site: posting forms, reading decisions and the ledger."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from extensions import db

HOSTED = {"form_id": "hosted", "consent": "on", "language": "en"}
SITE_ORIGIN = "http://localhost"


# The reverse proxy a test app trusts (TRUSTED_PROXY_HOPS=1); the client's own
# address is the one it forwards.
PROXY = "10.0.0.5"


def post_from(client: Any, path: str, data: dict[str, Any], client_address: str) -> int:
    """Post a public form as a browser at ``client_address`` does, behind ``PROXY``."""
    response = client.post(
        path,
        data=data,
        headers={"Origin": SITE_ORIGIN, "X-Forwarded-For": client_address},
        environ_base={"REMOTE_ADDR": PROXY},
    )
    return response.status_code


def signup(client: Any, address: str, topics: str = "newsletter", **extra: Any) -> Any:
    """Post the hosted form as a browser does."""
    data = {**HOSTED, "email": address, "topics": topics, **extra}
    return client.post(
        "/subscribe",
        data=data,
        headers={"Origin": SITE_ORIGIN, "User-Agent": "Mozilla/5.0 (test)"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )


def consented_contacts(app: Any, people: list[tuple[str, str | None, str]]) -> list[int]:
    """Contacts (address, name, language) with a confirmed newsletter consent by
    email, in one transaction."""
    from consent.ledger import record
    from consent.models import Basis, EventKind
    from crm.models import Contact
    from kernel.access import Actor

    with app.app_context():
        ids = []
        for address, name, language in people:
            contact = Contact(email=address, name=name, language=language)
            db.session.add(contact)
            db.session.flush()
            record(
                contact,
                EventKind.CONFIRMED,
                actor=Actor(kind="person", name="form"),
                source="double_opt_in",
                topic="newsletter",
                channel="email",
                basis=Basis.CONSENT.value,
            )
            ids.append(contact.id)
        db.session.commit()
        db.session.remove()
        return ids


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


def eleven_minutes_pass(app: Any) -> None:
    """Move every email queued so far eleven minutes into the past, as if the
    person came back later: a mailbox gets one email a form can cause per ten
    minutes, counted from the outbox (mailing.outbox.mailbox_may_receive)."""
    from datetime import timedelta

    from mailing.models import OutboxMessage

    with app.app_context():
        for row in db.session.scalars(sa.select(OutboxMessage)):
            row.created_at -= timedelta(minutes=11)
        db.session.commit()
        db.session.remove()


def outbox(app: Any) -> list[Any]:
    from mailing.models import OutboxMessage

    with app.app_context():
        rows = list(db.session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))
        db.session.expunge_all()
        db.session.remove()
        return rows


def deliver_with_a_change_before_the_hold(
    app: Any, outbox_id: int, change: Callable[[], None]
) -> tuple[Any, bool]:
    """``deliver`` one row, with ``change`` committed by another thread after the
    row and its contact were read and just before the contact is held (the
    hold is the first locking read). Returns the Delivery and whether the
    change ran."""
    from mailing.delivery import deliver

    ran: list[bool] = []

    def just_before_the_hold(state: Any) -> None:
        if not ran and getattr(state.statement, "_for_update_arg", None) is not None:
            other = threading.Thread(target=change)
            other.start()
            other.join()
            ran.append(True)

    with app.app_context():
        session = db.session()
        sa.event.listen(session, "do_orm_execute", just_before_the_hold)
        try:
            return deliver(outbox_id), bool(ran)
        finally:
            sa.event.remove(session, "do_orm_execute", just_before_the_hold)
            db.session.remove()
