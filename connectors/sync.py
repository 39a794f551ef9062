"""One sync of one connector: CRM → here, here → CRM, and the deletions owed.

Idempotent: every CRM record is remembered with a fingerprint of what was
taken from it (``ConnectorRecord``), so a record seen again unchanged writes
nothing, and an activity is logged once. Nothing is lost when the CRM fails:
a read's cursor is saved only in the transaction after its page was
written, so the next turn resumes at the first page not written. A CRM that
refuses the credentials stops the connector (``stopped_because``) until an
admin resumes it. Inbound writes go through the services only, a page of
records at a time (``consent.services.register_new_contacts`` for the
contacts new here, ``consent.services.register_contact`` for the others,
``crm.bulk.log_activities`` checked as ``crm.services.log_activity``), so a
CRM never sets a decision those services would not take from any caller.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa

from connectors import config
from connectors.base import (
    Connector,
    CrmRefused,
    CrmRevoked,
    CrmUnavailable,
    RemoteActivity,
    RemoteContact,
    RetryPolicy,
    SeenConsent,
    StatusWrite,
    call,
    reads_changes,
)
from connectors.models import ConnectorDeletion, ConnectorRecord, ConnectorState
from consent import feed
from consent import services as consent
from consent.evidence import Evidence
from consent.models import Basis
from consent.policies import wording_hash
from crm import bulk, external_ids
from crm import changes as change_feed
from crm import services as crm
from crm.models import Activity, Contact, external_value_problem
from extensions import db
from kernel import metrics
from kernel.access import Actor
from kernel.addresses import normalise_email
from kernel.countries import country_code_from_name, normalise_language
from kernel.database import id_in, one_of
from kernel.errors import DomainError, Gone, InvalidInput
from kernel.timestamps import utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")
CONTACTS = "contacts"
STATUS = "status"
FEED = "feed"
# The fingerprint prefix of a record skipped with its reason.
SKIPPED = "skip:"
# The cursors' key suffixes: when a read's last pass ended; where the next
# changed-since read starts (absent: a full pass); when the read under way started.
PASSED = "@passed"
SINCE = "@since"
STARTED = "@started"
# Written when every read the connector does (contacts and each activity
# type) has completed a pass: its first sync is over ("settled"). Dropped
# with the reads' cursors by ``forget_reads`` and when a read is added.
SETTLED = "settled"
# How many skipped records the state keeps for the staff page.
REPORT_KEEP = 50
# A run holds its connector this long at most (the actor's time limit is shorter).
LEASE = timedelta(hours=1)
FEED_PAGE = 200
CURSOR_EXPIRED = (
    "The change feed no longer holds items after this connector's cursor (it was stopped "
    "longer than CHANGE_FEED_KEEP_DAYS): read again from the oldest item kept. Erasures and "
    "purges in the gap may not have reached the CRM; check it against the erasure journal."
)
# Only email decisions are subscription statuses; a blanket "*" row is not a channel.
EMAIL = "email"


@dataclass
class Run:
    """What one run did, for its state row, its metrics and its caller."""

    name: str
    items_in: int = 0
    items_out: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    outcome: str = "done"  # done, busy, stopped, unavailable, revoked
    # Per contact, the decisions this run wrote to the CRM (and to which CRM
    # records): a later feed item that renders the same is not written again.
    # A page of new contacts puts their contact.created items before their
    # decisions_changed items, so the two may fall on different feed pages.
    written: dict[int, str] = field(default_factory=dict)


# While a sync runs, its transactions commit without waiting for the WAL flush
# (PostgreSQL's synchronous_commit off, per transaction). A sync commits a few
# times per record (the services own their transactions), and on a busy disk
# each wait costs more than the record's work. Safe: a server crash can lose
# only the last fraction of a second of commits, whole and in order, and
# everything a sync writes is read again from the CRM by the next one
# (the cursors were lost with them); nothing is corrupted.
_FAST_COMMITS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "connector_fast_commits", default=False
)


@sa.event.listens_for(sa.orm.Session, "after_begin")
def _fast_commit(session: Any, transaction: Any, connection: Any) -> None:
    if _FAST_COMMITS.get() and connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")


def actor_of(name: str) -> Actor:
    return Actor(kind="system", name=f"connector:{name}")


def sync(name: str, connector: Connector | None = None, policy: RetryPolicy | None = None) -> Run:
    """Run connector ``name`` once: inbound, outbound, then the deletions owed.

    Safe to run twice, also at once: a second run finds the connector held
    and does nothing (``busy``)."""
    run = Run(name)
    state = _state(name)
    if state.stopped_because:
        run.outcome = "stopped"
        return run
    if not _take(name):
        run.outcome = "busy"
        return run
    policy = policy or config.retry_policy()
    fast = _FAST_COMMITS.set(True)
    try:
        connector = connector or config.build(name)
        _settle(run, connector)  # a read added since is not settled
        _inbound_contacts(run, connector, policy)
        for object_type in connector.activity_types():
            _inbound_activities(run, connector, policy, object_type)
        _settle(run, connector)
        _outbound(run, connector, policy)
        _deletions(run, connector, policy)
    except CrmRevoked as exc:
        db.session.rollback()
        run.outcome = "revoked"
        _finish(run, error=str(exc), stop=f"The CRM refused the credentials ({exc}).")
        return run
    except (CrmUnavailable, RuntimeError) as exc:
        db.session.rollback()
        run.outcome = "unavailable"
        _finish(run, error=str(exc))
        return run
    except BaseException:
        db.session.rollback()
        _finish(run, error="The sync failed; see the worker's log.")
        raise
    finally:
        _FAST_COMMITS.reset(fast)
    _finish(run)
    return run


# State ------------------------------------------------------------------------------


def _state(name: str) -> ConnectorState:
    state = db.session.get(ConnectorState, name)
    if state is None:
        state = ConnectorState(name=name, cursors={}, report=[], items_in=0, items_out=0, errors=0)
        db.session.add(state)
        try:
            db.session.commit()
        except sa.exc.IntegrityError:  # another run made it first
            db.session.rollback()
            state = db.session.get(ConnectorState, name)
            assert state is not None
    return state


def _take(name: str) -> bool:
    """Hold the connector for this run (a conditional UPDATE: one winner)."""
    now = utcnow()
    table = ConnectorState.__table__
    taken = db.session.execute(
        sa.update(table)
        .where(
            table.c.name == name,
            sa.or_(table.c.running_until.is_(None), table.c.running_until < now),
        )
        .values(running_until=now + LEASE)
    )
    db.session.commit()
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def _save(
    run: Run,
    cursor_key: str,
    cursor: str | None,
    *,
    items_in: int = 0,
    items_out: int = 0,
    skipped: Sequence[dict[str, str]] = (),
    also: dict[str, str | None] | None = None,
) -> None:
    """Move one cursor (and the ``also`` ones; None drops one) with the counts
    of the page it ends, and commit: the items before it are written, so the
    next run starts after them."""
    state = db.session.get(ConnectorState, run.name)
    assert state is not None
    cursors = dict(state.cursors or {})
    for name, value in {cursor_key: cursor, **(also or {})}.items():
        if value is None:
            cursors.pop(name, None)
        else:
            cursors[name] = value
    state.cursors = cursors
    state.items_in += items_in
    state.items_out += items_out
    if skipped:
        state.report = [*(state.report or []), *skipped][-REPORT_KEEP:]
    db.session.commit()
    run.items_in += items_in
    run.items_out += items_out
    run.skipped.extend(skipped)
    if items_in:
        metrics.CONNECTOR_ITEMS.labels(run.name, "in").inc(items_in)
    if items_out:
        metrics.CONNECTOR_ITEMS.labels(run.name, "out").inc(items_out)
    if skipped:
        metrics.CONNECTOR_SKIPPED.labels(run.name).inc(len(skipped))


def _finish(run: Run, error: str | None = None, stop: str | None = None) -> None:
    state = db.session.get(ConnectorState, run.name)
    assert state is not None
    now = utcnow()
    state.running_until = None
    state.last_run_at = now
    if error is None:
        state.last_success_at = now
        state.last_error = None
    else:
        state.errors += 1
        state.last_error = error[:500]
        metrics.CONNECTOR_ERRORS.labels(run.name, run.outcome).inc()
        log.warning("Connector %s: %s", run.name, run.outcome)
    if stop is not None:
        state.stopped_because = stop[:500]
    db.session.commit()


def _skip(kind: str, remote_id: str, reason: str) -> dict[str, str]:
    return {"at": utcnow().isoformat(), "object": kind, "id": remote_id, "reason": reason[:300]}


# Inbound ----------------------------------------------------------------------------


def _pages(
    run: Run,
    connector: Connector,
    policy: RetryPolicy,
    key: str,
    read: Callable[[str | None, datetime | None], Any],
    apply: Callable[[Sequence[Any]], tuple[int, list[dict[str, str]]]],
) -> None:
    """Read every page from the saved cursor on; apply its records together
    (``apply`` takes the page's records: how many it wrote, and the records
    skipped with their reasons), then save the page's cursor. At the end the
    cursor is dropped and the next read starts: from the start again (a full
    pass), or, for a connector that reads changes, from the records modified
    since this read started (less ``read_overlap_s``). Either way what was
    applied is found unchanged."""
    cursors = db.session.get(ConnectorState, run.name).cursors or {}  # type: ignore[union-attr]
    after = cursors.get(key)
    passed = cursors.get(key + PASSED)
    if after is None and passed is not None:
        since_last = utcnow() - datetime.fromisoformat(passed)
        if since_last.total_seconds() < policy.pass_interval_s:
            return  # the last read is recent enough; decisions still go out
    changes = reads_changes(connector)
    since_text = cursors.get(key + SINCE) if changes else None
    since = datetime.fromisoformat(since_text) if since_text else None
    # When this read started (kept while it runs over several turns): the next
    # changed-since read starts there, so a record changed meanwhile is read again.
    started = (after is not None and cursors.get(key + STARTED)) or utcnow().isoformat()
    while True:
        page = call(connector, policy, functools.partial(read, after, since))
        written, skipped = apply(page.records) if page.records else (0, [])
        _save(
            run,
            key,
            page.after,
            items_in=written,
            skipped=skipped,
            also={key + STARTED: started if page.after is not None else None},
        )
        if page.after is None:
            done: dict[str, str | None] = {}
            if changes:
                start = datetime.fromisoformat(started) - timedelta(seconds=policy.read_overlap_s)
                done[key + SINCE] = start.isoformat()
            _save(run, key + PASSED, utcnow().isoformat(), also=done)
            return
        after = page.after


def forget_reads(name: str) -> None:
    """Drop every read's cursors (not the change feed's): the next turn reads
    the CRM's records in a full pass, as the first sync did. The caller commits."""
    state = db.session.get(ConnectorState, name)
    if state is not None:
        state.cursors = {k: v for k, v in (state.cursors or {}).items() if k == FEED}


def _settle(run: Run, connector: Connector) -> None:
    """Mark the connector settled when each of its reads has completed a
    pass, or not: until then retention keeps the contacts it created
    (``connectors.services.first_sync_exclusions``), since an activity not
    read yet may be later than the contact's last interaction here."""
    cursors = db.session.get(ConnectorState, run.name).cursors or {}  # type: ignore[union-attr]
    settled = all(cursors.get(key + PASSED) for key in [CONTACTS, *connector.activity_types()])
    if bool(cursors.get(SETTLED)) != settled:
        _save(run, SETTLED, utcnow().isoformat() if settled else None)


def _inbound_contacts(run: Run, connector: Connector, policy: RetryPolicy) -> None:
    actor = actor_of(run.name)
    _pages(
        run,
        connector,
        policy,
        CONTACTS,
        (
            connector.contacts  # type: ignore[arg-type]
            if reads_changes(connector)
            else lambda after, since: connector.contacts(after)
        ),
        lambda records: _apply_contacts(run.name, actor, records, connector, policy),
    )


@dataclass
class _Changed:
    """A CRM contact record that is new or changed since it was last applied."""

    remote: RemoteContact
    seen: Sequence[SeenConsent]
    fingerprint: str


def _apply_contacts(
    name: str,
    actor: Actor,
    remotes: Sequence[RemoteContact],
    connector: Connector,
    policy: RetryPolicy,
) -> tuple[int, list[dict[str, str]]]:
    """Create or update the contacts a page of CRM records names: how many were
    written, and the records skipped with their reasons.

    A page at a time: one query each for the page's deletions owed, its
    records' fingerprints and their contacts here, so that an unchanged page
    costs three statements; the contacts new here are created together
    (``consent.services.register_new_contacts``, one commit); the rest (a
    known address, the same person twice in the CRM, a record the batch
    refuses) go through ``register_contact`` one by one, in the page's order,
    which updates them or says why not. A record linked to a contact here
    goes that way too, so that its fingerprint commits with its update."""
    remotes, refused = _usable(CONTACTS, remotes)
    ids = [r.remote_id for r in remotes]
    owed = _deletions_owed(name, CONTACTS, ids)
    known = {
        r.remote_id: r
        for r in db.session.scalars(
            sa.select(ConnectorRecord).where(
                ConnectorRecord.connector == name,
                ConnectorRecord.object_type == CONTACTS,
                one_of(ConnectorRecord.remote_id, ids),
            )
        )
    }
    linked = [r.contact_id for r in known.values() if r.contact_id is not None]
    present = (
        set(db.session.scalars(sa.select(Contact.id).where(id_in(Contact.id, linked))))
        if linked
        else set()
    )
    changed: list[_Changed] = []
    for remote in remotes:
        if remote.remote_id in owed:
            # Erased or purged here: the CRM's copy is (being) deleted, and must
            # never bring the person back, whatever it holds meanwhile.
            continue
        # The consents the CRM holds are part of what was taken from the record:
        # read whenever the record is read (a changed-since read: when it
        # changed), so that a consent given in the CRM arrives even when the
        # contact's own fields did not change. Read before anything is written:
        # a CRM failing here leaves nothing half done.
        seen: Sequence[SeenConsent] = (
            call(connector, policy, functools.partial(connector.consents, remote.email))
            if remote.email
            else ()
        )
        fingerprint = _fingerprint(remote, seen)
        record = known.get(remote.remote_id)
        if record is not None and record.fingerprint == SKIPPED + fingerprint:
            continue  # skipped before, reported then, and not changed since
        if record is not None and record.contact_id is not None:
            if record.contact_id not in present:
                # Erased or purged here: the CRM's copy is owed a deletion, and
                # must never bring the person back.
                continue
            if record.fingerprint == fingerprint:
                continue
        changed.append(_Changed(remote, seen, fingerprint))
    if not changed:
        return 0, refused
    skipped: list[dict[str, str]] = refused
    invalid: list[_Changed] = []
    batch: list[tuple[_Changed, bulk.ContactInput]] = []
    for item in changed:
        record = known.get(item.remote.remote_id)
        if record is not None and record.contact_id is not None:
            # Linked to a contact here: an update, one by one below. Its new
            # fingerprint must commit with the update, never before it.
            continue
        try:
            batch.append((item, _contact_input(name, item.remote)))
        except DomainError as exc:
            invalid.append(item)
            skipped.append(_skip(CONTACTS, item.remote.remote_id, str(exc)))
    # Remembered as skipped, so that the report names it once per change in the CRM.
    for item in invalid:
        _remember(name, item.remote.remote_id, SKIPPED + item.fingerprint, known)
    for item, _ in batch:
        _remember(name, item.remote.remote_id, item.fingerprint, known)

    def link(created: dict[int, int]) -> None:
        # Brought here by this CRM: its interactions there are its own history.
        # In the contacts' own transaction: a run stopped after they commit
        # must not leave them unlinked, read later as known here already.
        db.session.execute(
            sa.update(ConnectorRecord),
            [
                {
                    "connector": name,
                    "object_type": CONTACTS,
                    "remote_id": batch[index][0].remote.remote_id,
                    "contact_id": contact_id,
                    "created_contact": True,
                }
                for index, contact_id in created.items()
            ],
        )

    try:
        # Commits the page's records, linked, with the contacts it creates.
        created = consent.register_new_contacts(
            actor, [entry for _, entry in batch], with_created=link
        )
    except (DomainError, sa.exc.IntegrityError):
        # Refused as a whole (a concurrent writer took an address meanwhile):
        # the page again one by one below, each refusal that record's alone.
        db.session.rollback()
        created = {}
        for item in invalid:
            _remember(name, item.remote.remote_id, SKIPPED + item.fingerprint, None)
        db.session.commit()
    written = len(created)
    new = {id(batch[index][0]) for index in created}
    passed = {id(item) for item in invalid}
    for item in changed:  # in the page's order
        if id(item) in passed:
            continue
        if id(item) in new:
            email = normalise_email(item.remote.email or "")
            problem = _claim_consents(name, actor, email, item.remote.remote_id, item.seen)
        else:
            count, problem = _register_one(name, actor, item)
            written += count
        if problem is not None:
            skipped.append(problem)
    return written, skipped


_R = TypeVar("_R", RemoteContact, RemoteActivity)


def _usable(object_type: str, remotes: Sequence[_R]) -> tuple[list[_R], list[dict[str, str]]]:
    """The records whose CRM ids this service can hold, and a skip for each
    other (its id shown escaped). A record's id is written to
    ``connector_record`` and compared in the page's queries, where PostgreSQL
    refused a NUL or more than 200 characters and failed the whole page."""
    usable: list[_R] = []
    refused: list[dict[str, str]] = []
    for remote in remotes:
        problem = external_value_problem(remote.remote_id)
        if problem is not None:
            shown = ascii(remote.remote_id)[1:-1][:100]
            refused.append(_skip(object_type, shown, f"The record's id cannot be held: {problem}"))
        else:
            usable.append(remote)
    return usable, refused


def _held_contact_ids(remote: RemoteActivity) -> RemoteActivity:
    """The activity without the contact ids this service cannot hold: they
    name no contact of ours, and PostgreSQL refused them in the query."""
    ids = tuple(i for i in remote.contact_remote_ids if external_value_problem(i) is None)
    if len(ids) == len(remote.contact_remote_ids):
        return remote
    return dataclasses.replace(remote, contact_remote_ids=ids)


def _remember(
    name: str, remote_id: str, fingerprint: str, known: dict[str, ConnectorRecord] | None
) -> None:
    """Note the record's fingerprint (with ``SKIPPED``: skipped) in the page's
    transaction. ``known``: the page's records as read at its start (a record
    not in it is new), else None."""
    record = (known or {}).get(remote_id)
    if record is not None and record not in db.session:
        record = None
    if record is None and (known is None or remote_id in known):
        record = db.session.get(ConnectorRecord, (name, CONTACTS, remote_id))
    if record is None:
        # Every column given: the rows of a page go in one INSERT.
        record = ConnectorRecord(
            connector=name,
            object_type=CONTACTS,
            remote_id=remote_id,
            contact_id=None,
            activity_id=None,
            created_contact=False,
        )
        db.session.add(record)
    if known is not None:
        known[remote_id] = record
    record.fingerprint = fingerprint
    record.updated_at = utcnow()


def _contact_input(name: str, remote: RemoteContact) -> bulk.ContactInput:
    """What the services take from a CRM record; InvalidInput when it has no
    address, a country we cannot read, or text no column can hold (a NUL, a
    5,000-character name: refused here before anything of the page is
    written, where PostgreSQL failed the whole page)."""
    if not remote.email:
        raise InvalidInput("The record has no email address.")
    profile: dict[str, Any] = {"name": remote.name, "phone": remote.phone}
    crm.clean_profile(profile)
    profile["country"] = country_code_from_name(remote.country)
    if remote.language:
        # A language we cannot read is no reason to leave the contact out.
        with contextlib.suppress(InvalidInput):
            profile["language"] = normalise_language(remote.language.split("-")[0])
    company = None
    if remote.company is not None:
        company = crm.CompanyInput(
            name=remote.company.name,
            country=country_code_from_name(remote.company.country),
            customer_since=remote.company.customer_since,
            external_ids={name: remote.company.remote_id},
        )
        crm.check_company(company)
    return bulk.ContactInput(remote.email, profile, company, {name: remote.remote_id})


def _register_one(name: str, actor: Actor, item: _Changed) -> tuple[int, dict[str, str] | None]:
    """One record through ``register_contact``: an address known here updated
    (its external id now this record's), or the reason it is skipped."""
    remote = item.remote
    try:
        entry = _contact_input(name, remote)
        _remember(name, remote.remote_id, item.fingerprint, None)
        # The record's row commits with the contact (register_contact commits).
        registration = consent.register_contact(
            actor, entry.email, dict(entry.profile), entry.company, external_ids=entry.external_ids
        )
    except DomainError as exc:
        db.session.rollback()
        _remember(name, remote.remote_id, SKIPPED + item.fingerprint, None)
        db.session.commit()
        return 0, _skip(CONTACTS, remote.remote_id, str(exc))
    record = db.session.get(ConnectorRecord, (name, CONTACTS, remote.remote_id))
    assert record is not None
    record.contact_id = registration.contact.id
    if registration.created:
        # Brought here by this CRM: its interactions there are its own history.
        record.created_contact = True
    db.session.commit()
    problem = _claim_consents(name, actor, registration.contact.email, remote.remote_id, item.seen)
    return 1, problem


def _fingerprint(remote: RemoteContact, seen: Sequence[SeenConsent]) -> str:
    """The record's fingerprint, with the consents seen when there are any
    (without, it is the record's own: unchanged for CRMs that hold none)."""
    import hashlib

    own = remote.fingerprint()
    if not seen:
        return own
    consents = json.dumps(sorted([c.topic, c.wording, c.policy_version, c.form_id] for c in seen))
    return hashlib.sha256(f"{own}:{consents}".encode()).hexdigest()


def _claim_consents(
    name: str, actor: Actor, email: str, remote_id: str, seen: Sequence[SeenConsent]
) -> dict[str, str] | None:
    """A consent the CRM holds, asked of this service like any caller's (R7, R8,
    X6): ``consent.claims`` records it, or sends the double opt-in email where
    a form's would need one, and never reopens the person's "no". The CRM's
    wording is the evidence, so a wording our policy version never published
    is refused (R23) and reported; the contact stays."""
    for consent_seen in seen:
        try:
            consent.register_contact(
                actor,
                email,
                {},
                basis=consent.BasisInput(
                    type=Basis.CONSENT,
                    source=name,
                    topics=[consent_seen.topic],
                    obtained_at=utcnow(),
                    evidence=Evidence(
                        policy_version=consent_seen.policy_version,
                        wording_hash=wording_hash(consent_seen.wording),
                        form_id=consent_seen.form_id,
                    ),
                ),
            )
        except DomainError as exc:
            db.session.rollback()
            return _skip(CONTACTS, remote_id, f"Consent to {consent_seen.topic} not taken: {exc}")
    return None


def _deletions_owed(name: str, object_type: str, remote_ids: Sequence[str]) -> set[str]:
    """Those of ``remote_ids`` whose deletion the CRM owes: one query."""
    return set(
        db.session.scalars(
            sa.select(ConnectorDeletion.remote_id).where(
                ConnectorDeletion.connector == name,
                ConnectorDeletion.object_type == object_type,
                one_of(ConnectorDeletion.remote_id, list(remote_ids)),
            )
        )
    )


def _inbound_activities(
    run: Run, connector: Connector, policy: RetryPolicy, object_type: str
) -> None:
    actor = actor_of(run.name)
    _pages(
        run,
        connector,
        policy,
        object_type,
        (
            (lambda after, since: connector.activities(object_type, after, since))  # type: ignore[call-arg]
            if reads_changes(connector)
            else lambda after, since: connector.activities(object_type, after)
        ),
        lambda records: _apply_activities(run.name, actor, object_type, records),
    )


def _apply_activities(
    name: str, actor: Actor, object_type: str, remotes: Sequence[RemoteActivity]
) -> tuple[int, list[dict[str, str]]]:
    """Log a page of the CRM's interactions, each once, in one transaction with
    the records that remember them (``crm.bulk.log_activities``): how many were
    logged, and those skipped with their reasons. One query each for the
    records logged before, the deletions owed, the contacts the page names and
    which of them this connector created."""
    usable, refused = _usable(object_type, remotes)
    remotes = [_held_contact_ids(r) for r in usable]
    ids = [r.remote_id for r in remotes]
    logged = set(
        db.session.scalars(
            sa.select(ConnectorRecord.remote_id).where(
                ConnectorRecord.connector == name,
                ConnectorRecord.object_type == object_type,
                one_of(ConnectorRecord.remote_id, ids),
            )
        )
    )
    owed = _deletions_owed(name, object_type, ids)
    holders = external_ids.contacts_holding(
        name, [rid for r in remotes for rid in r.contact_remote_ids]
    )
    # A contact this connector brought here takes the CRM's interactions at
    # their own dates (bounded by now), also before its creation here: its
    # history is the CRM's, and the seven years count from the real last
    # interaction. A contact that was here first keeps X16: a CRM date before
    # its creation here does not move its clock (docs/retention.md).
    brought_here = (
        set(
            db.session.scalars(
                sa.select(ConnectorRecord.contact_id).where(
                    ConnectorRecord.connector == name,
                    ConnectorRecord.object_type == CONTACTS,
                    id_in(ConnectorRecord.contact_id, list(set(holders.values()))),
                    ConnectorRecord.created_contact.is_(True),
                )
            )
        )
        if holders
        else set()
    )
    skipped: list[dict[str, str]] = refused
    entries: list[tuple[RemoteActivity, bulk.ActivityInput]] = []
    for remote in remotes:
        if remote.remote_id in logged:
            continue  # logged before
        if remote.remote_id in owed:
            continue  # purged here; its deletion in the CRM may still be under way
        contact_id = next(
            (holders[rid] for rid in remote.contact_remote_ids if rid in holders), None
        )
        if contact_id is None:
            # Not a contact of ours (not synced, or skipped with its reason): the
            # activity comes once the contact does, at a later run.
            continue
        if remote.occurred_at is None:
            skipped.append(_skip(remote.object_type, remote.remote_id, "The activity has no time."))
            continue
        logged.add(remote.remote_id)  # once, should a page name it twice
        entries.append(
            (
                remote,
                bulk.ActivityInput(
                    contact_id,
                    remote.kind,
                    remote.occurred_at,
                    from_source=contact_id in brought_here,
                ),
            )
        )
    if not entries:
        return 0, skipped
    results = bulk.log_activities(actor, [entry for _, entry in entries])
    records: list[dict[str, Any]] = []
    for (remote, entry), result in zip(entries, results, strict=True):
        if isinstance(result, DomainError):
            skipped.append(_skip(remote.object_type, remote.remote_id, str(result)))
            continue
        records.append(
            {
                "connector": name,
                "object_type": remote.object_type,
                "remote_id": remote.remote_id,
                "contact_id": entry.contact_id,
                "activity_id": result,
                "fingerprint": remote.kind,
                "created_contact": False,
                "updated_at": utcnow(),
            }
        )
    if records:
        db.session.execute(sa.insert(ConnectorRecord), records)
    # The activities with their records: each logged once, whatever happens next.
    db.session.commit()
    return len(records), skipped


# Outbound ---------------------------------------------------------------------------


def _outbound(run: Run, connector: Connector, policy: RetryPolicy) -> None:
    """The change feed from the connector's cursor: decisions written to the
    CRM, erasures and purges turned into deletions owed. The cursor moves
    once a page is applied; a page applied twice writes the same again."""
    cursor = (db.session.get(ConnectorState, run.name).cursors or {}).get(FEED)  # type: ignore[union-attr]
    while True:
        try:
            page = feed.read(cursor, FEED_PAGE)
        except Gone:
            # The connector was stopped longer than the feed keeps items: start
            # from the oldest kept. Every item is applied again (idempotent
            # writes); tombstones pruned meanwhile are lost to this connector,
            # which the report says so that an admin checks the CRM.
            db.session.rollback()
            _save(run, FEED, None, skipped=[_skip(FEED, str(cursor), CURSOR_EXPIRED)])
            cursor = None
            continue
        _add_first_decisions(run.name, page.items)
        # Each item renders the contact's current decisions: the last one of a
        # contact on the page says all, so earlier ones are not written again.
        last = {
            int(item["contact_id"]): index
            for index, item in enumerate(page.items)
            if item["type"] == change_feed.DECISIONS_CHANGED
        }
        written, skipped = 0, []
        for index, item in enumerate(page.items):
            if (
                item["type"] == change_feed.DECISIONS_CHANGED
                and last[int(item["contact_id"])] != index
            ):
                continue
            count, problem = _apply_item(run, connector, policy, item)
            written += count
            if problem is not None:
                skipped.append(problem)
        if page.next_cursor is not None:
            _save(run, FEED, page.next_cursor, items_out=written, skipped=skipped)
        cursor = page.next_cursor
        if not page.has_more:
            return


def _add_first_decisions(name: str, items: list[dict[str, Any]]) -> None:
    """A contact new to the feed that the CRM knows gets its decisions written
    too, even when none was written to the ledger (no basis yet): the CRM's
    summary then says "no, and why" from the start. One query for the page."""
    created = [
        item
        for item in items
        if item["type"] == change_feed.CONTACT_CREATED
        and not item.get("tombstone")
        and (item.get("external_ids") or {}).get(name)
    ]
    if not created:
        return
    found = consent.decisions_for_contacts([int(i["contact_id"]) for i in created])
    for item in created:
        item["type"] = change_feed.DECISIONS_CHANGED
        item["decisions"] = [d.as_json() for d in found.get(int(item["contact_id"]), [])]


def _apply_item(
    run: Run, connector: Connector, policy: RetryPolicy, item: dict[str, Any]
) -> tuple[int, dict[str, str] | None]:
    name = run.name
    remote_id = (item.get("external_ids") or {}).get(name)
    kind = item["type"]
    contact_id = int(item["contact_id"])
    if kind in change_feed.TOMBSTONES:
        _owe_deletions(name, contact_id, kind, remote_id, with_contact=True)
        db.session.commit()
        return 0, None
    if kind == change_feed.ACTIVITIES_PURGED:
        _owe_deletions(name, contact_id, kind, remote_id, with_contact=False)
        db.session.commit()
        return 0, None
    if kind != change_feed.DECISIONS_CHANGED or item.get("tombstone") or remote_id is None:
        return 0, None
    decisions = [d for d in item.get("decisions", []) if d["channel"] == EMAIL]
    if not decisions:
        return 0, None
    writes = [
        StatusWrite(d["topic"], bool(d["allowed"]), d["reason"], d["explanation"])
        for d in decisions
    ]
    email = decisions[0]["email"]
    # Every CRM contact linked to this one (duplicates in the CRM with the same
    # address), not only the one the external id names: an objection reaches all.
    others = db.session.scalars(
        sa.select(ConnectorRecord.remote_id)
        .where(
            ConnectorRecord.connector == name,
            ConnectorRecord.object_type == CONTACTS,
            ConnectorRecord.contact_id == contact_id,
            ConnectorRecord.remote_id != remote_id,
        )
        .order_by(ConnectorRecord.remote_id)
    ).all()
    rendered = json.dumps(
        [[remote_id, *others], [[w.topic, w.allowed, w.reason, w.explanation] for w in writes]]
    )
    if run.written.get(contact_id) == rendered:
        return 0, None  # written so in this run already
    written, problem = 0, None
    for rid in [remote_id, *others]:
        count, skipped = _write_decisions(name, connector, policy, contact_id, rid, email, writes)
        written += count
        problem = problem or skipped
    if problem is None:
        run.written[contact_id] = rendered
    return written, problem


def _write_decisions(
    name: str,
    connector: Connector,
    policy: RetryPolicy,
    contact_id: int,
    remote_id: str,
    email: str,
    writes: list[StatusWrite],
) -> tuple[int, dict[str, str] | None]:
    status = db.session.get(ConnectorRecord, (name, STATUS, remote_id))
    known = _written_before(status)
    try:
        bases = call(
            connector, policy, lambda: connector.write_decisions(remote_id, email, writes, known)
        )
    except LookupError:
        return 0, _skip(CONTACTS, remote_id, "Not in the CRM any more; decisions not written.")
    except CrmRefused as exc:
        return 0, _skip(CONTACTS, remote_id, f"The CRM refused the decisions: {exc}")
    if status is None:
        status = ConnectorRecord(connector=name, object_type=STATUS, remote_id=remote_id)
        db.session.add(status)
    status.contact_id = contact_id
    status.fingerprint = json.dumps(bases, sort_keys=True)
    status.updated_at = utcnow()
    return 1, None


def _written_before(status: ConnectorRecord | None) -> dict[str, str]:
    """What was last written per topic. A record that does not read as JSON
    (cut at 200 characters before migration 0043) counts as nothing written:
    every status is written again, and a "no" is never cleared by it."""
    try:
        known = json.loads(status.fingerprint) if status is not None and status.fingerprint else {}
    except ValueError:
        return {}
    return known if isinstance(known, dict) else {}


def _owe_deletions(
    name: str, contact_id: int, reason: str, remote_id: str | None, *, with_contact: bool
) -> None:
    """Record what the CRM must delete for this contact: its activities that we
    mirrored, and with an erasure or purge the contact itself (the tombstone's
    id and every other CRM contact we linked to this one). Our records of
    them go: the deletion rows now say what is owed."""
    records = db.session.scalars(
        sa.select(ConnectorRecord).where(
            ConnectorRecord.connector == name, ConnectorRecord.contact_id == contact_id
        )
    ).all()
    gone = _activities_gone([r.activity_id for r in records if r.activity_id is not None])
    owed: list[tuple[str, str]] = []
    contacts: list[str] = []
    for record in records:
        if record.object_type in (CONTACTS, STATUS):
            if with_contact:
                # Every CRM contact linked to this one: duplicates in the CRM
                # (two records with the same email) are all the person, though
                # the external id names only the last one read.
                if record.object_type == CONTACTS:
                    contacts.append(record.remote_id)
                db.session.delete(record)
            continue
        # A purge of some activities: only those whose rows were deleted here.
        # (Anonymisation keeps the row: the rules that anonymise name kinds a
        # connector does not bring in, support cases.)
        if not with_contact and record.activity_id not in gone:
            continue
        owed.append((record.object_type, record.remote_id))
        db.session.delete(record)
    if with_contact:
        # The contacts after their activities (deletions go in id order).
        if remote_id is not None:
            contacts.append(remote_id)
        owed.extend((CONTACTS, rid) for rid in dict.fromkeys(contacts))
    for object_type, rid in owed:
        exists = db.session.scalar(
            sa.select(ConnectorDeletion.id).where(
                ConnectorDeletion.connector == name,
                ConnectorDeletion.object_type == object_type,
                ConnectorDeletion.remote_id == rid,
            )
        )
        if exists is None:
            db.session.add(
                ConnectorDeletion(
                    connector=name,
                    object_type=object_type,
                    remote_id=rid,
                    reason=reason,
                    created_at=utcnow(),
                    attempts=0,
                )
            )
    db.session.flush()


def _activities_gone(activity_ids: Sequence[int]) -> set[int]:
    if not activity_ids:
        return set()
    present = set(db.session.scalars(sa.select(Activity.id).where(Activity.id.in_(activity_ids))))
    return set(activity_ids) - present


# Deletions --------------------------------------------------------------------------


def _deletions(run: Run, connector: Connector, policy: RetryPolicy) -> None:
    """Every deletion still owed, oldest first; each one's outcome committed."""
    pending = db.session.scalars(
        sa.select(ConnectorDeletion)
        .where(ConnectorDeletion.connector == run.name, ConnectorDeletion.done_at.is_(None))
        .order_by(ConnectorDeletion.id)
    ).all()
    if not pending:
        return
    # Delete or anonymise (``<NAME>_ERASURE``), read at every turn: a change
    # applies to the deletions still owed too.
    mode = config.erasure(run.name)
    remove = connector.anonymise if mode == config.ANONYMISE else connector.delete
    for deletion in pending:
        deletion.attempts += 1
        deletion.erasure = mode
        try:
            call(
                connector,
                policy,
                functools.partial(remove, deletion.object_type, deletion.remote_id),
            )
        except LookupError:
            pass  # already gone from the CRM: what we wanted
        except CrmRefused as exc:
            deletion.last_error = exc.without_crm_text()
            db.session.commit()
            continue
        except CrmUnavailable as exc:
            deletion.last_error = exc.without_crm_text()
            db.session.commit()
            raise
        deletion.done_at = utcnow()
        deletion.last_error = None
        db.session.commit()
        run.items_out += 1
        metrics.CONNECTOR_ITEMS.labels(
            run.name, "anonymised" if mode == config.ANONYMISE else "deleted"
        ).inc()
