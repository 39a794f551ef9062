"""Staff users, signed-in clients and contacts for the staff page tests."""

from __future__ import annotations

import time
from typing import Any

from werkzeug.security import generate_password_hash

from consent import services
from consent.models import Basis, InterestKind
from crm.services import CompanyInput
from extensions import db
from kernel.access import (
    CLI_ACTOR,
    SESSION_EPOCH,
    SESSION_SIGNED_IN_AT,
    SESSION_STAMP,
    SESSION_USER,
    session_stamp,
)
from kernel.models import StaffUser

ROLES = ("sales", "marketing", "admin", "dpo")
PASSWORD = "staff-password-1"
# Hashed once: a staff user per test must not cost a scrypt each.
_HASH = generate_password_hash(PASSWORD)


def make_user(app: Any, role: str, *, email: str | None = None, name: str | None = None) -> int:
    with app.app_context():
        user = StaffUser(
            email=email or f"{role}@staff.example",
            name=name if name is not None else f"Test {role}",
            role=role,
            password_hash=_HASH,
            is_active=True,
        )
        db.session.add(user)
        db.session.commit()
        user_id = user.id
        db.session.remove()
    return user_id


def sign_in(client: Any, app: Any, user_id: int) -> None:
    """What a successful sign-in leaves in the session cookie."""
    with app.app_context():
        user = db.session.get(StaffUser, user_id)
        stamp, epoch = session_stamp(user), user.session_epoch
        db.session.remove()
    with client.session_transaction() as session:
        session[SESSION_USER] = user_id
        session[SESSION_STAMP] = stamp
        session[SESSION_SIGNED_IN_AT] = int(time.time())
        session[SESSION_EPOCH] = epoch


def client_as(app: Any, role: str, **kwargs: Any) -> Any:
    """A test client signed in as a new user with ``role``."""
    client = app.test_client()
    sign_in(client, app, make_user(app, role, **kwargs))
    return client


def make_contact(
    app: Any,
    email: str = "anna.kund@kund.example",
    name: str = "Anna Kund",
    company: str = "Kund AB",
    *,
    customer: bool = True,
) -> int:
    with app.app_context():
        contact = services.register_contact(
            CLI_ACTOR,
            email,
            {"name": name, "country": "SE"},
            company=CompanyInput(name=company),
            basis=services.BasisInput(
                type=Basis.LEGITIMATE_INTEREST,
                source="crm-sync",
                interest_kind=InterestKind.CUSTOMER,
            )
            if customer
            else None,
        ).contact
        contact_id = contact.id
        db.session.remove()
    return contact_id
