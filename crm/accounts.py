"""A staff user's own account: their password, a reset link, the TOTP second factor.

The admin's side (creating users, roles, deactivating) is ``crm.staff``; this
module holds what proves a person is the account's owner. Links and the
enrolment form are signed with ``SECRET_KEY`` (one salt per purpose); nothing
here stores a code, a link or a password, only hashes and the TOTP secret the
authenticator shares.
"""

from __future__ import annotations

import hmac
import logging
import re
from datetime import datetime, timedelta
from typing import Any

import pyotp
import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.security import check_password_hash

from crm.services import audit
from extensions import db
from kernel import access
from kernel.access import SYSTEM_ACTOR, Actor
from kernel.addresses import normalise_email
from kernel.errors import Conflict, InvalidInput, NotFound
from kernel.i18n import N_
from kernel.models import StaffUser
from kernel.signals import sender, staff_password_reset_requested
from kernel.timestamps import is_zone, utcnow

log = logging.getLogger(__name__)

DEFAULT_RESET_MAX_AGE = timedelta(hours=1)
# Time to scan the code and type the first one; the form carries the secret
# signed, so an abandoned enrolment leaves nothing behind.
ENROLMENT_MAX_AGE = timedelta(minutes=15)
TOTP_STEP_SECONDS = 30
_CODE = re.compile(r"\d{6}")


class LinkNotValid(InvalidInput):
    """A reset link that is tampered, expired, used, or whose user is inactive.

    One message for every case: the page must not tell a guesser which
    addresses have accounts, nor which links were once genuine.
    """

    code = "invalid_reset_link"

    def __init__(self) -> None:
        super().__init__(
            "This password-reset link is not valid: it may be used, expired or incomplete. "
            "Ask an admin for a new one."
        )


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    config = current_app.config
    keys = [*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=f"consent-service/staff-{purpose}")


def _get_user(user_id: int) -> StaffUser:
    user = db.session.get(StaffUser, user_id)
    if user is None:
        raise NotFound(f"No staff user with id {user_id}.", code="user_not_found")
    return user


# Own password ------------------------------------------------------------------------


def change_own_password(user_id: int, current: str, new: str) -> StaffUser:
    """The signed-in user replaces their password, proving the current one.

    Asking for the current password keeps a session left open on a shared
    screen from taking the account over. Every session of the user ends
    (the caller signs this browser in again).
    """
    user = _get_user(user_id)
    if not check_password_hash(user.password_hash, current):
        raise InvalidInput(N_("The current password is wrong."), code="wrong_password")
    if current == new:
        raise InvalidInput(
            N_("Choose a password other than the current one."), code="same_password"
        )
    access.set_staff_password(user, new)
    audit(access.staff_actor(user), "staff.user.password_own", detail=user.email)
    db.session.commit()
    return user


def set_own_time_zone(user_id: int, zone: str) -> StaffUser:
    """The signed-in user chooses the IANA zone their pages show times in.

    Only the display changes: times stay stored in UTC. A name zoneinfo does
    not know is refused, so that no page ever falls back silently.
    """
    user = _get_user(user_id)
    if not is_zone(zone):
        raise InvalidInput(
            N_("Choose a time zone from the list, such as Europe/Stockholm."),
            code="invalid_time_zone",
            fields={"time_zone": ["Unknown zone."]},
        )
    user.time_zone = zone
    db.session.commit()
    return user


# Reset links ---------------------------------------------------------------------------


def reset_max_age() -> timedelta:
    seconds = current_app.config.get("PASSWORD_RESET_MAX_AGE_S")
    return timedelta(seconds=int(seconds)) if seconds else DEFAULT_RESET_MAX_AGE


def password_reset_token(user: StaffUser) -> str:
    """A link's token for ``user``: their id and the stamp of their password.

    Single use without a table of used links: setting a password changes the
    stamp, so the link (and every older one) stops working.
    """
    return _serializer("password-reset").dumps({"u": user.id, "s": access.session_stamp(user)})


def user_for_reset(token: str) -> StaffUser:
    """The active user a genuine, unused, unexpired link names, or ``LinkNotValid``."""
    try:
        payload = _serializer("password-reset").loads(
            token, max_age=int(reset_max_age().total_seconds())
        )
    except BadSignature:  # SignatureExpired is one
        raise LinkNotValid() from None
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), int):
        raise LinkNotValid()
    user = db.session.get(StaffUser, payload["u"])
    if (
        user is None
        or not user.is_active
        or not hmac.compare_digest(str(payload.get("s", "")), access.session_stamp(user))
    ):
        raise LinkNotValid()
    return user


def reset_password(token: str, password: str) -> StaffUser:
    """Set a new password from a reset link; the link and every session end."""
    user = user_for_reset(token)
    access.set_staff_password(user, password)
    audit(access.staff_actor(user), "staff.user.password_reset", detail=user.email)
    db.session.commit()
    return user


def send_password_reset(actor: Actor, user_id: int) -> StaffUser:
    """An admin mails ``user_id`` a one-time link to choose a new password.

    The admin never learns or sets the password. The email is sent by a
    worker after the commit (``staff_password_reset_requested``); the link is
    signed when it leaves, so a slow queue does not shorten its life.
    """
    user = _get_user(user_id)
    if not user.is_active:
        raise Conflict(N_("The user is not active; reactivate them first."), code="user_inactive")
    audit(actor, "staff.user.password_reset_sent", detail=user.email)
    db.session.commit()
    staff_password_reset_requested.send(sender(), user_id=user.id)
    return user


def request_password_reset(email: str) -> None:
    """Someone at the sign-in page asks for a link for ``email``.

    The answer never says whether an account exists (the page shows the same
    text, and the email goes from a worker, so the time taken is the same):
    a stranger must not learn who the staff are. Only an active user's own
    mailbox receives the link.
    """
    try:
        address = normalise_email(email)
    except InvalidInput:
        return
    user = db.session.scalar(
        sa.select(StaffUser).where(StaffUser.email == address, StaffUser.is_active)
    )
    if user is None:
        return
    audit(SYSTEM_ACTOR, "staff.user.password_reset_sent", detail=user.email)
    db.session.commit()
    staff_password_reset_requested.send(sender(), user_id=user.id)


# The TOTP second factor ----------------------------------------------------------------


def _issuer() -> str:
    return str(current_app.config.get("BRAND_NAME") or "Consent service")


def new_enrolment(user: StaffUser) -> dict[str, str]:
    """A fresh secret to show, and the signed form value that carries it back.

    Nothing is stored until a code proves the authenticator holds the secret:
    a GET that shows the page changes nothing, and a secret the user never
    scanned cannot lock them out.
    """
    secret = pyotp.random_base32()
    return {
        "secret": secret,
        "uri": pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=_issuer()),
        "enrolment": _serializer("totp-enrolment").dumps({"u": user.id, "k": secret}),
    }


def _enrolled_secret(user_id: int, enrolment: str) -> str:
    try:
        payload = _serializer("totp-enrolment").loads(
            enrolment, max_age=int(ENROLMENT_MAX_AGE.total_seconds())
        )
    except BadSignature:
        raise InvalidInput(
            N_("The enrolment has expired; scan the new code shown."), code="enrolment_expired"
        ) from None
    if not isinstance(payload, dict) or payload.get("u") != user_id:
        raise InvalidInput(N_("The enrolment is not valid."), code="enrolment_invalid")
    return str(payload["k"])


def _matching_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step whose code ``code`` is: this one or a neighbour (clock drift)."""
    code = code.strip().replace(" ", "")
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(at.timestamp()) // TOTP_STEP_SECONDS
    for step in (now_step - 1, now_step, now_step + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _take_step(user_id: int, step: int) -> bool:
    """Record ``step`` as used; False if it (or a later one) already was.

    One conditional UPDATE, so that two requests carrying the same code at
    once cannot both pass.
    """
    result: Any = db.session.execute(
        sa.update(StaffUser)
        .where(
            StaffUser.id == user_id,
            sa.or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    return bool(result.rowcount == 1)


def enrol_second_factor(user_id: int, enrolment: str, code: str) -> StaffUser:
    """Keep the secret the enrolment form carries, once ``code`` proves it scanned.

    Every other session of the user ends: they began without the factor.
    """
    user = _get_user(user_id)
    secret = _enrolled_secret(user_id, enrolment)
    step = _matching_step(secret, code, utcnow())
    if step is None:
        raise InvalidInput(
            N_("The code does not match. Check the authenticator's clock and try the next code."),
            code="wrong_code",
        )
    user.totp_secret = secret
    user.totp_last_step = step
    access.end_every_session(user)
    audit(access.staff_actor(user), "staff.user.mfa_enrol", detail=user.email)
    db.session.commit()
    return user


def verify_second_factor(user_id: int, code: str, at: datetime | None = None) -> bool:
    """Whether ``code`` is the user's current TOTP code, not used before."""
    user = _get_user(user_id)
    if user.totp_secret is None:
        return False
    step = _matching_step(user.totp_secret, code, at or utcnow())
    if step is None or not _take_step(user.id, step):
        db.session.rollback()
        log.warning("Failed second-factor code for a staff user")
        return False
    audit(access.staff_actor(user), "staff.sign_in.second_factor")
    db.session.commit()
    return True


def remove_second_factor(actor: Actor, user_id: int) -> StaffUser:
    """Forget a user's second factor (a lost phone); every session of theirs ends.

    If their role requires one (``MFA_REQUIRED_ROLES``) they enrol again at
    their next sign-in, before they reach any page.
    """
    user = _get_user(user_id)
    if user.totp_secret is None:
        raise Conflict(
            N_("%(email)s has no second factor."),
            values={"email": user.email},
            code="no_second_factor",
        )
    user.totp_secret = None
    user.totp_last_step = None
    access.end_every_session(user)
    audit(actor, "staff.user.mfa_remove", detail=user.email)
    db.session.commit()
    return user
