"""What every connector provides, and the shared handling of a CRM's faults.

A connector module (``connectors.hubspot``, a third one) turns its CRM's
records into the plain records below and writes decisions and deletions
back; ``connectors.sync`` does everything else (cursors, idempotency,
writing through the services, deletions owed, state and metrics). A CRM call
that fails is classified once, by the connector, into a ``Fault``; the
retries, waits and stops are decided here, the same for every CRM.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# What a fault means for the sync.
RETRY = "retry"  # 429, 5xx, no answer: wait and try again, then give up for this turn
REVOKED = "revoked"  # 401/403: the credentials no longer work; stop until an admin acts
GONE = "gone"  # 404 on a delete: already deleted, which is what we wanted
REFUSED = "refused"  # another 4xx: this one record is wrong; report it and go on


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int | None
    message: str
    # Seconds the CRM asked us to wait (Retry-After, or its rate-limit window).
    wait_s: float | None = None


class CrmError(Exception):
    """A CRM call that failed; ``str()`` quotes the CRM's own message, ``status``
    is its HTTP status (None when it did not answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def without_crm_text(self) -> str:
        """What failed, without the CRM's words: a CRM's message can name the
        record ("Your attempt to delete Anna Berg ..."), which must not outlive
        the erasure it reports on."""
        return (
            f"{type(self).__name__}: HTTP {self.status}"
            if self.status
            else (f"{type(self).__name__}: no answer")
        )


class CrmUnavailable(CrmError):
    """The CRM kept answering 429/5xx (or not at all): the turn ends, cursors stay."""


class CrmRevoked(CrmError):
    """The CRM refused the credentials: the connector stops and says why."""


class CrmRefused(CrmError):
    """The CRM refused one write as invalid (a 4xx other than 401/403/404/429)."""


@dataclass(frozen=True)
class RemoteCompany:
    remote_id: str
    name: str
    country: str | None = None
    # The day it became a customer in the CRM, None when it is not one.
    customer_since: date | None = None


@dataclass(frozen=True)
class RemoteContact:
    remote_id: str
    email: str | None
    name: str | None = None
    phone: str | None = None
    country: str | None = None
    language: str | None = None
    company: RemoteCompany | None = None

    def fingerprint(self) -> str:
        """A short digest of everything we take from the record."""
        import hashlib
        import json

        payload = json.dumps(
            [
                self.email,
                self.name,
                self.phone,
                self.country,
                self.language,
                None
                if self.company is None
                else [
                    self.company.remote_id,
                    self.company.name,
                    self.company.country,
                    self.company.customer_since and self.company.customer_since.isoformat(),
                ],
            ],
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class RemoteActivity:
    """An interaction logged in the CRM: a call, a meeting, an email the contact sent."""

    object_type: str
    remote_id: str
    kind: str  # crm.models.ActivityKind's value
    occurred_at: datetime | None
    contact_remote_ids: Sequence[str] = ()


@dataclass(frozen=True)
class SeenConsent:
    """A consent the CRM holds for a topic: what the person was shown there
    (``wording``) and which version of our policy the CRM's forms carry."""

    topic: str
    wording: str
    policy_version: str
    form_id: str


@dataclass(frozen=True)
class RemotePage:
    """One page of a CRM read; ``after`` continues it, None at the end."""

    records: list[Any] = field(default_factory=list)
    after: str | None = None


@dataclass(frozen=True)
class StatusWrite:
    """One decision as the CRM shows it to salespeople."""

    topic: str
    allowed: bool
    reason: str
    explanation: str


class Connector(Protocol):
    """What a connector module's class provides (docs/connectors.md, "A third connector").

    A connector that can read "changed since" (``reads_changes = True``) is
    called as ``contacts(after, since)`` and ``activities(type, after,
    since)``: with ``since`` None it reads everything (a full pass), else the
    records last modified at or after ``since`` (inclusive: the framework
    overlaps, the fingerprints drop what was seen). A connector without it
    is called with ``after`` only and read in full passes.
    """

    name: str

    def contacts(self, after: str | None) -> RemotePage: ...

    def consents(self, email: str) -> Sequence[SeenConsent]:
        """The consents the CRM holds for the address (none when the
        installation does not take consent from this CRM)."""
        ...

    def activity_types(self) -> Sequence[str]: ...

    def activities(self, object_type: str, after: str | None) -> RemotePage: ...

    def write_decisions(
        self, remote_id: str, email: str, writes: Sequence[StatusWrite], known: dict[str, str]
    ) -> dict[str, str]:
        """Write the decisions; ``known`` maps a topic to the last basis written
        for it (so that a "no" names the basis it ends); answers the new map."""
        ...

    def delete(self, object_type: str, remote_id: str) -> None: ...

    def anonymise(self, object_type: str, remote_id: str) -> None:
        """Instead of ``delete`` where the installation says so (``<NAME>_ERASURE
        = anonymise``): the record stays for the CRM's reports, with nothing
        left that names or reaches the person (a contact's address replaced by
        a placeholder that routes nowhere, its other personal properties
        cleared; an activity's body and title cleared). Idempotent."""
        ...

    def classify(self, exc: Exception) -> Fault | None:
        """The fault an exception of the client library is, None for any other."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    tries: int = 5
    backoff_s: float = 1.0
    max_wait_s: float = 60.0
    # Seconds between the end of one read of the CRM's records and the next.
    pass_interval_s: float = 0.0
    # A changed-since read starts this long before the previous read started
    # (clock skew, a search index that lags): what it reads again is dropped
    # by the fingerprints.
    read_overlap_s: float = 600.0
    sleep: Callable[[float], None] = time.sleep


def call(connector: Connector, policy: RetryPolicy, fn: Callable[[], T]) -> T:
    """``fn()``, retried on 429/5xx/no answer with the CRM's wait or a doubling
    backoff. Raises CrmUnavailable when the tries run out (or the CRM asks for
    a longer wait than ``max_wait_s``), CrmRevoked on refused credentials,
    CrmRefused on an invalid write; a 404 is returned to the caller as
    ``LookupError``."""
    backoff = policy.backoff_s
    last: Fault | None = None
    for attempt in range(max(policy.tries, 1)):
        try:
            return fn()
        except Exception as exc:
            fault = connector.classify(exc)
            if fault is None:
                raise
            last = fault
            if fault.kind == REVOKED:
                raise CrmRevoked(_describe(fault), fault.status) from None
            if fault.kind == GONE:
                raise LookupError(_describe(fault)) from None
            if fault.kind == REFUSED:
                raise CrmRefused(_describe(fault), fault.status) from None
            if attempt + 1 >= policy.tries:
                break
            wait = fault.wait_s if fault.wait_s is not None else backoff
            if wait > policy.max_wait_s:
                break
            policy.sleep(wait)
            backoff *= 2
    assert last is not None
    raise CrmUnavailable(_describe(last), last.status)


def _describe(fault: Fault) -> str:
    status = f"HTTP {fault.status}" if fault.status else "no answer"
    return f"{status}: {fault.message}"[:500]


def reads_changes(connector: Connector) -> bool:
    """Whether the connector takes ``since`` (see ``Connector``)."""
    return bool(getattr(connector, "reads_changes", False))


def first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)
