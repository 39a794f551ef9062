"""Who may do what: roles, the one permission function, staff users and API tokens."""

from __future__ import annotations

import functools
import getpass
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import current_app, g, redirect, request, session, url_for
from sqlalchemy.dialects import postgresql
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash, generate_password_hash

from extensions import db
from kernel import idempotency
from kernel.addresses import normalise_email
from kernel.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotAuthenticated,
    NotPermitted,
)
from kernel.i18n import N_
from kernel.models import ApiToken, Role, StaffUser
from kernel.timestamps import utcnow

ALL_ROLES = frozenset(Role)
# The roles that do the company's sales and marketing work; the dpo is not one.
STAFF_WORK = frozenset({Role.SALES, Role.MARKETING, Role.ADMIN})
# Need to know (R25): who reads the details of consent evidence that identify a
# person's device or visit (``consent.evidence.IDENTIFYING_EVIDENCE``).
EVIDENCE_READERS = frozenset({Role.ADMIN, Role.DPO})

# R25: only staff who need the data for their task reach it. Every staff page
# and API route names one of these actions; ``may`` is the only check.
ACTIONS: dict[str, frozenset[Role]] = {
    "contacts.read": ALL_ROLES,
    "contacts.write": frozenset({Role.MARKETING, Role.ADMIN}),
    # Every contact changed since a time, a thousand at a time (a connector's
    # reconciliation, GET /api/v1/contacts?updated_after=): a bulk read, for
    # the roles that sync contacts in, not for looking one up.
    "contacts.sync": frozenset({Role.MARKETING, Role.ADMIN}),
    # The list of every contact with filters (/staff/contacts): a list of
    # everyone is more than looking one person up (R25), so only the roles
    # that plan marketing to many at once, not sales (who look up their own
    # customers) nor the dpo (who reads one person's file for a request).
    "contacts.list": frozenset({Role.MARKETING, Role.ADMIN}),
    # A CSV of the filtered list: a copy of many people's data that leaves the
    # service (a print shop, an event tool). Audited with its filter and size.
    # Admin only, as contacts.export is (R25): a file of everyone's address
    # lets mail go out past the service's consent, suppression and
    # deliverability checks, which marketing's sends must pass through.
    "contacts.list_export": frozenset({Role.ADMIN}),
    # One change to every contact of a filtered list (end an industry-list
    # basis, set or lift a legal hold): the widest write a page offers, so
    # only the admin, who alone takes the single-contact legal hold.
    "contacts.bulk": frozenset({Role.ADMIN}),
    "contacts.erase": frozenset({Role.ADMIN}),
    "contacts.export": frozenset({Role.ADMIN}),
    "contacts.restrict": frozenset({Role.ADMIN}),
    "contacts.legal_hold": frozenset({Role.ADMIN}),
    "activities.create": STAFF_WORK,
    # The person's own "no" is taken by whoever they tell it to (GDPR art. 21).
    "objections.record": ALL_ROLES,
    # A withdrawal taken on the person's behalf ("stop the newsletter"): whoever
    # may take their objection may take this smaller "no".
    "withdrawals.record": ALL_ROLES,
    "permissions.read": ALL_ROLES,
    "evidence.read": EVIDENCE_READERS,
    "imports.run": frozenset({Role.MARKETING, Role.ADMIN}),
    "campaigns.manage": frozenset({Role.MARKETING, Role.ADMIN}),
    # Saved filters that narrow campaigns (mailing.segments): they list who is
    # in them, so only those who plan the mailings, as the contact list.
    "segments.manage": frozenset({Role.MARKETING, Role.ADMIN}),
    # A bounce or complaint another system saw (POST /api/v1/bounces): it can end
    # email marketing to an address, so only those who run the mailings report it.
    "bounces.record": frozenset({Role.MARKETING, Role.ADMIN}),
    "retention.read": frozenset({Role.ADMIN}),
    "retention.run": frozenset({Role.ADMIN}),
    "users.manage": frozenset({Role.ADMIN}),
    # Every user's own account: their password and their second factor.
    "account.manage": ALL_ROLES,
    "tokens.manage": frozenset({Role.ADMIN}),
    "audit.read": frozenset({Role.ADMIN, Role.DPO}),
    # The filtered audit log as a CSV file: those who read the log answer a
    # supervisory authority or an internal review with it (GDPR art. 5(2), 30).
    "audit.export": frozenset({Role.ADMIN, Role.DPO}),
    # The records of processing (GDPR art. 30) and the DPO's home page: the
    # DPO keeps them, the admin configures what they are generated from.
    "processing_records.read": frozenset({Role.ADMIN, Role.DPO}),
    "webhooks.manage": frozenset({Role.ADMIN}),
    # The change feed a CRM mirrors: a CRM sync token holds ``marketing`` (it
    # writes contacts and imports, "contacts.write" and "imports.run"), and
    # the feed carries contacts' fields and decisions, so not every role.
    "changes.read": frozenset({Role.MARKETING, Role.ADMIN}),
    "policies.manage": frozenset({Role.ADMIN}),
    "privacy_requests.read": frozenset({Role.ADMIN, Role.DPO}),
    # Extend a request's deadline (GDPR art. 12(3)) or refuse it with the reason.
    "privacy_requests.manage": frozenset({Role.ADMIN}),
    "policies.read": ALL_ROLES,
    # /staff/dashboard: counts only, never a person. Marketing plans on the
    # reachable audience and campaign outcomes; admin runs the service; the dpo
    # watches opt-outs, purges and request deadlines (GDPR art. 5(2), 39). Sales
    # works one contact at a time and does not need the whole (R25).
    "dashboard.read": frozenset({Role.MARKETING, Role.ADMIN, Role.DPO}),
    # The CRM connectors' page (/staff/connectors): their credentials' state,
    # CRM ids and skipped records are the administrator's business, and
    # resuming a stopped connector starts writes to and from the CRM (R25).
    "connectors.read": frozenset({Role.ADMIN}),
    "connectors.manage": frozenset({Role.ADMIN}),
}


def may(role: str | None, action: str) -> bool:
    """Whether ``role`` may take ``action``. Unknown actions are refused."""
    allowed = ACTIONS.get(action)
    if allowed is None or role is None:
        return False
    return role in allowed


@dataclass(frozen=True)
class Actor:
    """Whoever causes a change: recorded in the ledger and the audit log."""

    kind: str  # "user", "token", "cli", "person", "system"
    name: str
    role: str | None = None
    id: int | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


CLI_ACTOR = Actor(kind="cli", name="flask", role=Role.ADMIN)


def cli_actor() -> Actor:
    """Whoever runs a ``flask`` command: the operating-system user, for the audit log."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Actor(kind="cli", name=name, role=Role.ADMIN)


SYSTEM_ACTOR = Actor(kind="system", name="consent-service")


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(
            f"Unknown role {value!r}; use one of: {', '.join(r.value for r in Role)}.",
            code="invalid_role",
        ) from None


MIN_PASSWORD_LENGTH = 10


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The password must be at least {MIN_PASSWORD_LENGTH} characters.",
            code="weak_password",
        )


def create_staff_user(email: str, password: str, role: str, name: str | None = None) -> StaffUser:
    address = normalise_email(email)
    role_value = parse_role(role)
    _check_password(password)
    if db.session.scalar(sa.select(StaffUser.id).where(StaffUser.email == address)):
        raise Conflict(f"A staff user {address} already exists.", code="user_exists")
    user = StaffUser(
        email=address,
        name=name,
        role=role_value.value,
        password_hash=generate_password_hash(password),
    )
    db.session.add(user)
    db.session.commit()
    return user


def set_staff_password(user: StaffUser, password: str) -> None:
    """Give ``user`` a new password and end every session they have. Does not commit."""
    _check_password(password)
    user.password_hash = generate_password_hash(password)
    end_every_session(user)


def authenticate_staff(email: str, password: str) -> StaffUser | None:
    """The active user with these credentials, or None. Always hashes once, so
    that a missing user and a wrong password take the same time."""
    try:
        address = normalise_email(email)
    except InvalidInput:
        address = ""
    user = db.session.scalar(sa.select(StaffUser).where(StaffUser.email == address))
    stored = user.password_hash if user else _DUMMY_HASH
    if not check_password_hash(stored, password) or user is None or not user.is_active:
        return None
    return user


_DUMMY_HASH = generate_password_hash("not-a-real-password")


def _hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_api_token(
    name: str, role: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is never stored.

    ``expires_at``: refused from then on (None: until revoked). A token for a
    partner or a short project should not outlive the need for it.
    """
    role_value = parse_role(role)
    if not name.strip():
        raise InvalidInput(N_("A token needs a name."), code="invalid_name")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput(N_("The expiry must be in the future."), code="invalid_expiry")
    if db.session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name)):
        raise Conflict(f"A token named {name!r} already exists.", code="token_exists")
    raw = "cst_" + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name, role=role_value.value, token_hash=_hash_token(raw), expires_at=expires_at
    )
    db.session.add(token)
    db.session.commit()
    return token, raw


_LAST_USED_RESOLUTION = timedelta(minutes=5)


# Columns, not an ORM object, in a statement built once and run on the session's
# connection (no ORM loading): this runs on every API request. Its parameter is
# named after no column: in the last-used UPDATE of ``token_row`` a parameter
# named like a column of api_token would be taken as that column's new value.
_TOKEN_BY_HASH = sa.select(
    ApiToken.id,
    ApiToken.name,
    ApiToken.role,
    ApiToken.revoked_at,
    ApiToken.last_used_at,
    ApiToken.expires_at,
).where(ApiToken.token_hash == sa.bindparam("hashed_token"))


def authenticate_token(raw: str) -> Actor:
    return _authenticate_hash(_hash_token(raw))


def _authenticate_hash(token_hash: str) -> Actor:
    token = (
        db.session.connection().execute(_TOKEN_BY_HASH, {"hashed_token": token_hash}).one_or_none()
    )
    if token is None:
        raise _invalid_token()
    now = utcnow()
    actor = _token_actor(token.id, token.name, token.role, token.revoked_at, token.expires_at, now)
    # Written at most every few minutes, so that reads stay reads.
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        db.session.execute(
            sa.update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now)
        )
        db.session.commit()
    return actor


def _invalid_token() -> NotAuthenticated:
    return NotAuthenticated(N_("The API token is not valid."), code="invalid_token")


def _token_actor(
    token_id: int,
    name: str,
    role: str,
    revoked_at: datetime | None,
    expires_at: datetime | None,
    now: datetime,
) -> Actor:
    """The actor of a token row read at ``now``, or why it is refused (401)."""
    if revoked_at is not None:
        raise _invalid_token()
    if expires_at is not None and expires_at <= now:
        raise NotAuthenticated(N_("The API token has expired."), code="expired_token")
    return Actor(kind="token", name=name, role=role, id=token_id)


class BearerToken:
    """The request's API token, not yet checked, for a route whose own statement
    reads it (``requires(..., token_read_by_route=True)``): on PostgreSQL the
    permission check reads the token, writes its audit entry and reads the
    standings in one round trip (issue 25), instead of a token SELECT first.

    The token row is read by that statement, never remembered between
    requests, so a revoked or expired token is refused on its very next
    request. The statement acts only for a usable token (``may_act``): an
    invalid one leaves no audit entry and gets no contact back. ``accept`` then
    decides from the row exactly as ``authenticate_token`` does. Where the
    route cannot read it in its statement (SQLite), ``authenticate`` reads it
    the usual way first.
    """

    def __init__(self, token_hash: str, action: str) -> None:
        self.token_hash = token_hash
        self.action = action
        # Set once the token was found usable for ``action``.
        self.actor: Actor | None = None

    def authenticate(self) -> Actor:
        """Read and check the token on its own (a SELECT; the last-used UPDATE)."""
        actor = _authenticate_hash(self.token_hash)
        _check_may(actor, self.action)
        self.actor = actor
        return actor

    def parameters(self, at: datetime) -> dict[str, Any]:
        """The values of ``token_row``'s parameters for a statement run at ``at``."""
        return {
            "hashed_token": self.token_hash,
            "token_at": at,
            "token_used_before": at - _LAST_USED_RESOLUTION,
            "token_roles": sorted(role.value for role in ACTIONS.get(self.action, ())),
        }

    def accept(self, row: Any, at: datetime) -> Actor:
        """The actor, from the ``token_*`` columns of the statement's first row
        (None: no row, no such token), or the 401/403 ``requires`` would give."""
        if row is None or row.token_id is None:
            raise _invalid_token()
        actor = _token_actor(
            row.token_id,
            row.token_name,
            row.token_role,
            row.token_revoked_at,
            row.token_expires_at,
            at,
        )
        _check_may(actor, self.action)
        self.actor = actor
        return actor


def _check_may(actor: Actor, action: str) -> None:
    if not may(actor.role, action):
        raise NotPermitted(f"The role {actor.role!r} may not do this ({action}).", code="forbidden")


@dataclass(frozen=True)
class TokenRow:
    """What a statement needs to read the request's token itself (``BearerToken``):

    - ``token``: the token's row as a CTE (none when no token has that hash);
    - ``may_act``: true when it is neither revoked nor expired and its role may
      take the action, so that the statement writes and reads only then;
    - ``label``: the actor's label (``Actor.label``) as SQL, for the audit entry;
    - ``columns``: the ``token_*`` columns ``BearerToken.accept`` reads;
    - ``used``: the last-used UPDATE (at most every few minutes, as
      ``authenticate_token``), a CTE to add to the statement (``add_cte``).
    """

    token: sa.CTE
    may_act: sa.ColumnElement[bool]
    label: sa.ColumnElement[str]
    columns: tuple[Any, ...]
    used: sa.CTE


def token_row() -> TokenRow:
    """Parts of a statement that reads the token (PostgreSQL: a data-modifying CTE
    for the last use). Parameters: ``BearerToken.parameters``."""
    token = _TOKEN_BY_HASH.cte("token")
    at = sa.bindparam("token_at", type_=ApiToken.last_used_at.type)
    usable = sa.and_(
        token.c.revoked_at.is_(None),
        sa.or_(token.c.expires_at.is_(None), token.c.expires_at > at),
    )
    used = (
        sa.update(ApiToken)
        .where(
            ApiToken.id == token.c.id,
            usable,
            sa.or_(
                token.c.last_used_at.is_(None),
                token.c.last_used_at
                < sa.bindparam("token_used_before", type_=ApiToken.last_used_at.type),
            ),
        )
        .values(last_used_at=at)
        .returning(ApiToken.id)
        .cte("token_used")
    )
    roles = sa.bindparam("token_roles", type_=postgresql.ARRAY(sa.String))
    return TokenRow(
        token=token,
        may_act=sa.and_(usable, token.c.role == sa.any_(roles)),
        # Actor.label of a token's actor: "token:<name>".
        label=sa.literal("token:", sa.String) + token.c.name,
        columns=(
            token.c.id.label("token_id"),
            token.c.name.label("token_name"),
            token.c.role.label("token_role"),
            token.c.revoked_at.label("token_revoked_at"),
            token.c.expires_at.label("token_expires_at"),
        ),
        used=used,
    )


F = TypeVar("F", bound=Callable[..., Any])


def requires(action: str, *, token_read_by_route: bool = False) -> Callable[[F], F]:
    """Guard an API route: a valid bearer token whose role ``may`` take ``action``.

    The actor is kept in ``g.actor`` for the route to pass to services. How the
    route's statements are committed is the route's choice
    (``kernel.database.autocommit_statements``), not the guard's. A write's
    ``Idempotency-Key`` is claimed here, once the token is known, so that no
    write route can forget it (``kernel.idempotency.claim``): a repeat is
    answered from the stored answer without running the route.

    ``token_read_by_route``: for a read (GET, or ``read_by_post``) whose own
    statement reads the token (``BearerToken``, in ``g.bearer_token``; the
    permission check, issue 25). The guard refuses a missing token itself; if
    the route fails before its statement has read the token (a malformed
    body), the token is read then, so that an unknown caller gets the 401 (or
    a refused role the 403) that every other route gives first.
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, raw = header.partition(" ")
            if scheme.lower() != "bearer" or not raw.strip():
                raise NotAuthenticated(
                    N_("Send an API token as 'Authorization: Bearer <token>'."),
                    code="missing_token",
                )
            if token_read_by_route:
                return _read_by_route(
                    view, BearerToken(_hash_token(raw.strip()), action), args, kwargs
                )
            actor = authenticate_token(raw.strip())
            _check_may(actor, action)
            g.actor = actor
            # Every write of the API honours an Idempotency-Key, once the caller
            # (whose keys these are) is known: a repeat gets the first answer.
            replay = idempotency.claim(actor.id)
            if replay is not None:
                return replay
            return view(*args, **kwargs)

        wrapped._required_action = action  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


def _read_by_route(view: Any, bearer: BearerToken, args: Any, kwargs: Any) -> Any:
    if request.method in idempotency.WRITE_METHODS and not getattr(view, "_read_by_post", False):
        # A write claims its Idempotency-Key once the token is known, here: only
        # reads (GET, or read_by_post) may leave the token to the route.
        raise TypeError(f"{request.endpoint} is a write: its guard must read the token")
    g.bearer_token = bearer
    try:
        answer = view(*args, **kwargs)
    except (NotAuthenticated, NotPermitted):
        raise
    except (DomainError, HTTPException):
        # A refusal of what was asked (422, 404...): who asks comes first.
        if bearer.actor is None:
            bearer.authenticate()
        raise
    if bearer.actor is None:
        # The route answered without its statement reading the token (a path
        # that skipped it): the token is read now, so that no answer leaves
        # for a caller the guard has not accepted.
        bearer.authenticate()
    g.actor = bearer.actor
    return answer


# Staff pages: a signed session cookie names the user ------------------------------

SESSION_USER = "staff_user_id"
SESSION_STAMP = "staff_stamp"
SESSION_SIGNED_IN_AT = "staff_signed_in_at"
SESSION_EPOCH = "staff_epoch"
# Set when this sign-in passed the second factor (kernel.access.is_mfa_required).
SESSION_MFA = "staff_mfa"
DEFAULT_SESSION_MAX_AGE = timedelta(hours=12)


def session_stamp(user: StaffUser) -> str:
    """Changes when the password does, so that a new password ends old sessions."""
    return hashlib.sha256(f"{user.id}:{user.password_hash}".encode()).hexdigest()[:32]


def start_staff_session(user: StaffUser, *, second_factor: bool = False) -> None:
    """Sign ``user`` in in this browser. ``second_factor``: they also gave a
    valid TOTP code (or enrolled one) in this sign-in."""
    session.clear()
    # Whoever this request took as signed in (nobody, on the sign-in page) is
    # no longer who it is: the landing page depends on the new user's role.
    g.pop("staff_user", None)
    session[SESSION_USER] = user.id
    session[SESSION_STAMP] = session_stamp(user)
    session[SESSION_SIGNED_IN_AT] = int(utcnow().timestamp())
    session[SESSION_EPOCH] = user.session_epoch
    if second_factor:
        session[SESSION_MFA] = True


# A sign-in halfway: the password was right, the second factor is owed. Kept in
# the cookie apart from SESSION_USER, so that no guard ever reads it as signed in.
PENDING_USER = "staff_pending_user"
PENDING_STAMP = "staff_pending_stamp"
PENDING_AT = "staff_pending_at"
PENDING_NEXT = "staff_pending_next"
PENDING_MAX_AGE = timedelta(minutes=5)


def begin_sign_in(user: StaffUser, next_target: str | None = None) -> str | None:
    """After a right password: sign in, or remember the user until the second
    factor is given. Returns what is owed: None (signed in), "code" (their
    TOTP code) or "enrol" (their role needs a second factor they do not have)."""
    if not is_mfa_required(user):
        start_staff_session(user)
        return None
    session.clear()
    session[PENDING_USER] = user.id
    session[PENDING_STAMP] = session_stamp(user)
    session[PENDING_AT] = int(utcnow().timestamp())
    if next_target:
        session[PENDING_NEXT] = next_target
    return "code" if user.has_second_factor else "enrol"


def pending_staff_user() -> StaffUser | None:
    """The active user of a sign-in halfway (password given, factor owed), or None."""
    user_id = session.get(PENDING_USER)
    if not isinstance(user_id, int):
        return None
    started = datetime.fromtimestamp(session.get(PENDING_AT, 0), UTC)
    if utcnow() - started >= PENDING_MAX_AGE:
        return None
    user = db.session.get(StaffUser, user_id)
    if user is None or not user.is_active or session.get(PENDING_STAMP) != session_stamp(user):
        return None
    return user


def finish_sign_in(user: StaffUser) -> str | None:
    """The second factor was given: sign ``user`` in; returns where they were going."""
    next_target = session.get(PENDING_NEXT)
    start_staff_session(user, second_factor=True)
    return next_target if isinstance(next_target, str) else None


def mfa_required_roles() -> frozenset[str]:
    """The roles that must sign in with a second factor (``MFA_REQUIRED_ROLES``)."""
    return frozenset(current_app.config.get("MFA_REQUIRED_ROLES", ()))


def is_mfa_required(user: StaffUser) -> bool:
    """Whether ``user`` signs in with a TOTP code: they enrolled one, or their
    role must (an admin reaches every contact; a password alone is one phish away)."""
    return user.has_second_factor or user.role in mfa_required_roles()


def end_every_session(user: StaffUser) -> None:
    """End every session ``user`` has, on every device, from their next request.

    The cookie is signed, not stored: the server cannot delete a copy of it.
    Raising the user's epoch makes every cookie that carries the old one
    useless (``current_staff_user`` compares them). An SQL increment, so that
    two changes at once both count. Does not commit.
    """
    db.session.execute(
        sa.update(StaffUser)
        .where(StaffUser.id == user.id)
        .values(session_epoch=StaffUser.session_epoch + 1)
    )
    # The user this request cached may be the one whose sessions just ended.
    g.pop("staff_user", None)


def end_staff_session() -> None:
    """Forget the session in this browser (the caller ends it for every other copy)."""
    language = session.get("staff_lang")
    session.clear()
    if language:
        session["staff_lang"] = language


def current_staff_user() -> StaffUser | None:
    """The signed-in, active staff user of this request, or None.

    Read from the database on every request, so that deactivating a user or
    changing a role takes effect at once, and sessions older than
    ``STAFF_SESSION_MAX_AGE`` (seconds; 12 hours by default) end. The cookie's
    epoch must be the user's current one: sign-out, deactivation and a new
    role or password raise it (``end_every_session``), ending every copy. A
    user who needs a second factor (``is_mfa_required``) needs a session that
    passed it.
    """
    if "staff_user" in g:
        return g.staff_user
    user = None
    user_id = session.get(SESSION_USER)
    if isinstance(user_id, int):
        candidate = db.session.get(StaffUser, user_id)
        max_age = current_app.config.get("STAFF_SESSION_MAX_AGE", DEFAULT_SESSION_MAX_AGE)
        if not isinstance(max_age, timedelta):
            max_age = timedelta(seconds=int(max_age))
        signed_in_at = datetime.fromtimestamp(session.get(SESSION_SIGNED_IN_AT, 0), UTC)
        if (
            candidate is not None
            and candidate.is_active
            and session.get(SESSION_STAMP) == session_stamp(candidate)
            and session.get(SESSION_EPOCH) == candidate.session_epoch
            # A session without the second factor ends once the user has one,
            # or their role comes to need one (MFA_REQUIRED_ROLES).
            and (session.get(SESSION_MFA) is True or not is_mfa_required(candidate))
            and utcnow() - signed_in_at < max_age
        ):
            user = candidate
    g.staff_user = user
    return user


def staff_actor(user: StaffUser) -> Actor:
    return Actor(kind="user", name=user.email, role=user.role, id=user.id)


def staff_requires(action: str) -> Callable[[F], F]:
    """Guard a staff page: a signed-in active user whose role ``may`` take ``action``.

    Anonymous visitors are sent to the sign-in page; a refused role gets the
    403 page. The actor is kept in ``g.actor`` for the view to pass to services.
    """

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_staff_user()
            if user is None:
                if request.method != "GET":
                    # Not back to a POST-only address: to the search after signing in.
                    return redirect(url_for("staff.login"))
                return redirect(url_for("staff.login", next=request.full_path.rstrip("?")))
            if not may(user.role, action):
                raise NotPermitted(
                    f"The role {user.role!r} may not do this ({action}).", code="forbidden"
                )
            g.actor = staff_actor(user)
            return view(*args, **kwargs)

        wrapped._required_action = action  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator
