"""Staff accounts: signing in, managing users and API tokens, reading the audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

import sqlalchemy as sa

from crm.services import audit
from extensions import db
from kernel import access
from kernel.access import Actor
from kernel.addresses import normalise_email
from kernel.errors import N_, Conflict, InvalidInput, NotFound
from kernel.models import ApiToken, Role, StaffUser
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)


def sign_in(email: str, password: str) -> StaffUser | None:
    """The active user with these credentials, or None; a success is audited."""
    user = access.authenticate_staff(email, password)
    if user is None:
        log.warning("Failed staff sign-in")
        return None
    audit(access.staff_actor(user), "staff.sign_in")
    db.session.commit()
    return user


def sign_out(user: StaffUser) -> None:
    """End every session of ``user``: this browser's and any copy of its cookie."""
    access.end_every_session(user)
    db.session.commit()


def list_users() -> list[StaffUser]:
    return list(db.session.scalars(sa.select(StaffUser).order_by(StaffUser.email)))


def create_user(actor: Actor, email: str, password: str, role: str, name: str | None) -> StaffUser:
    audit(actor, "staff.user.create", detail=role)
    return access.create_staff_user(email, password, role, name=name or None)


def _get_user(user_id: int) -> StaffUser:
    user = db.session.get(StaffUser, user_id)
    if user is None:
        raise NotFound(f"No staff user with id {user_id}.", code="user_not_found")
    return user


def user_id_by_email(email: str) -> int:
    """The id of the staff user with this address (for the command line)."""
    try:
        address = normalise_email(email)
    except InvalidInput:
        address = email.strip().lower()
    user_id = db.session.scalar(sa.select(StaffUser.id).where(StaffUser.email == address))
    if user_id is None:
        raise NotFound(f"No staff user {address}.", code="user_not_found")
    return user_id


def _is_last_active_admin(user: StaffUser) -> bool:
    if user.role != Role.ADMIN or not user.is_active:
        return False
    others = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(StaffUser)
        .where(StaffUser.role == Role.ADMIN.value, StaffUser.is_active, StaffUser.id != user.id)
    )
    return not others


def set_role(actor: Actor, user_id: int, role: str) -> StaffUser:
    """Change a user's role and end every session they have: they sign in again
    under the new role, and no copy of an old cookie outlives the change."""
    user = _get_user(user_id)
    new_role = access.parse_role(role)
    if new_role != Role.ADMIN and _is_last_active_admin(user):
        raise Conflict(N_("The last active admin cannot lose the role."), code="last_admin")
    audit(actor, "staff.user.role", detail=f"{user.email}: {user.role} -> {new_role.value}")
    if user.role != new_role.value:
        user.role = new_role.value
        access.end_every_session(user)
    db.session.commit()
    return user


def set_active(actor: Actor, user_id: int, active: bool) -> StaffUser:
    """Deactivate (every session of the user ends at once) or reactivate a user."""
    user = _get_user(user_id)
    if not active and actor.kind == "user" and actor.id == user.id:
        raise Conflict(N_("You cannot deactivate yourself."), code="self_deactivation")
    if not active and _is_last_active_admin(user):
        raise Conflict(N_("The last active admin cannot be deactivated."), code="last_admin")
    audit(actor, "staff.user.activate" if active else "staff.user.deactivate", detail=user.email)
    user.is_active = active
    if not active:
        # Not only refused while inactive: a session from before must not come
        # back to life when the account is reactivated.
        access.end_every_session(user)
    db.session.commit()
    return user


def set_password(actor: Actor, user_id: int, password: str) -> StaffUser:
    """Give a user a new password; every session they have ends."""
    user = _get_user(user_id)
    access.set_staff_password(user, password)
    audit(actor, "staff.user.password", detail=user.email)
    db.session.commit()
    return user


def list_tokens() -> list[ApiToken]:
    return list(
        db.session.scalars(
            sa.select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.name)
        )
    )


def create_token(
    actor: Actor, name: str, role: str, expires_in: timedelta | None = None
) -> tuple[ApiToken, str]:
    """A new token and its secret, which is shown once and stored only as a hash.

    ``expires_in``: the token is refused after that long (None: until revoked).
    """
    expires_at = utcnow() + expires_in if expires_in is not None else None
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
    audit(actor, "api_token.create", detail=f"{name.strip()} ({role}{until})")
    return access.create_api_token(name.strip(), role, expires_at=expires_at)


def token_id_by_name(name: str) -> int:
    """The id of the API token called ``name`` (for the command line)."""
    token_id = db.session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name))
    if token_id is None:
        raise NotFound(f"No API token named {name!r}.", code="token_not_found")
    return token_id


def revoke_token(actor: Actor, token_id: int) -> ApiToken:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"No API token with id {token_id}.", code="token_not_found")
    if token.revoked_at is not None:
        raise Conflict(N_("The token is already revoked."), code="token_revoked")
    token.revoked_at = utcnow()
    audit(actor, "api_token.revoke", detail=token.name)
    db.session.commit()
    return token


def display_names(labels: Iterable[str]) -> dict[str, str]:
    """Readable names for actor labels such as ``user:ann@example.com``.

    A staff user is shown as "Name (email)"; other actors keep their label.
    """
    wanted = set(labels)
    emails = {label.removeprefix("user:") for label in wanted if label.startswith("user:")}
    names = {}
    if emails:
        for user in db.session.scalars(sa.select(StaffUser).where(StaffUser.email.in_(emails))):
            names[f"user:{user.email}"] = f"{user.name} ({user.email})" if user.name else user.email
    return {label: names.get(label, label) for label in wanted}
