"""Salesforce, through the client library ``simple-salesforce`` (REST API).

Inbound: contacts with their account (SOQL, ``queryMore`` paging by
``nextRecordsUrl``, ordered by ``SystemModstamp, Id``), and the objects that
are interactions: closed call and email Tasks, and Events (meetings), with the
contact each one names (``WhoId``). Outbound: per mapped topic a
``ContactPointTypeConsent`` (the contact's Individual, channel Email, the
topic's ``DataUsePurpose``) with ``PrivacyConsentStatus`` and the legal basis,
the contact's ``HasOptedOutOfEmail`` and the Individual's
``HasOptedOutSolicit`` on the person's own "no", and the summary fields
(``Consent_May_Market__c``, ``Consent_Explanation__c``) on the contact.
Deletions and anonymisations of contacts (with their Individual and consent
records) and of purged Tasks and Events.

Only the instance URL changes between Salesforce and the tests' stand-in
(``SALESFORCE_INSTANCE_URL``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from connectors.base import (
    GONE,
    REFUSED,
    RETRY,
    REVOKED,
    Fault,
    RemoteActivity,
    RemoteCompany,
    RemoteContact,
    RemotePage,
    SeenConsent,
    StatusWrite,
)

if TYPE_CHECKING:
    from simple_salesforce.api import SFType

NAME = "salesforce"
# Salesforce answers 200 to 2000 records a batch; we ask for the smallest.
BATCH = "batchSize=200"
# What an interaction type reads: its sObject and the filter that makes a
# record an interaction (a closed Task of that subtype; any Event).
INTERACTIONS = {
    "calls": ("Task", "TaskSubtype = 'Call' AND IsClosed = true", "call"),
    "emails": ("Task", "TaskSubtype = 'Email' AND IsClosed = true", "email"),
    "meetings": ("Event", "", "meeting"),
}
ACTIVITY_FIELDS = {
    "Task": "Id, WhoId, CompletedDateTime, ActivityDate, CreatedDate",
    "Event": "Id, WhoId, StartDateTime, ActivityDateTime, CreatedDate",
}
CONTACT_FIELDS = (
    "Id, Email, FirstName, LastName, Phone, MailingCountry, "
    "Account.Id, Account.Name, Account.BillingCountry, Account.Type, Account.CreatedDate"
)
# Our reason for a "yes" → the legal basis written on the consent record.
LEGAL_BASIS = {
    "customer": "Legitimate interest (customer)",
    "industry_list": "Legitimate interest (industry list)",
    "consent": "Consent",
}
# The person's own "no" (our reason codes): the only decisions written as OptOut.
PERSONS_NO = frozenset({"objection", "unsubscribed", "suppressed"})
OPT_IN, OPT_OUT, NOT_SEEN = "OptIn", "OptOut", "NotSeen"
# Written in ``known`` when we set the contact's HasOptedOutOfEmail, so that
# only an opt-out of ours is ever cleared again.
OPTED_OUT_BY_US = "@email"
# ... and the topics whose OptOut we wrote (only those may become OptIn again).
# ``known`` is stored as JSON in connector_record.fingerprint (a text column
# since migration 0043): short keys, our reason codes rather than Salesforce's labels.
OPTED_OUT_TOPICS = "@out"
# ... and that we set the Individual's HasOptedOutSolicit.
OBJECTED = "@sol"
CAPTURE_SOURCE = "Consent service"
ANONYMOUS = "Anonymised"
# The Individual's required LastName when the contact has none (never the email:
# an Individual is not where the address belongs).
NO_NAME = "(no name)"
# A contact's personal fields cleared when it is anonymised.
PERSONAL_FIELDS = (
    "FirstName",
    "Email",
    "Phone",
    "MobilePhone",
    "HomePhone",
    "OtherPhone",
    "AssistantName",
    "AssistantPhone",
    "Title",
    "Department",
    "Birthdate",
    "MailingStreet",
    "MailingCity",
    "MailingPostalCode",
    "MailingState",
    "OtherStreet",
    "OtherCity",
    "OtherPostalCode",
    "OtherState",
    "OtherCountry",
    "Description",
)
DAY_S = 24 * 60 * 60.0
HOUR_S = 60 * 60.0
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Fields:
    """The custom fields an administrator creates (docs/connectors.md)."""

    may_market: str = "Consent_May_Market__c"
    explanation: str = "Consent_Explanation__c"
    legal_basis: str = "Legal_Basis__c"
    customer_since: str | None = None


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """``["newsletter=0ZW..."]`` → ``{"newsletter": "0ZW..."}``; a clear error otherwise."""
    mapping = {}
    for pair in pairs:
        topic, sep, purpose_id = pair.partition("=")
        if not sep or not topic.strip() or not purpose_id.strip():
            raise RuntimeError(f"SALESFORCE_DATA_USE_PURPOSES takes topic=id pairs, not {pair!r}.")
        mapping[topic.strip()] = purpose_id.strip()
    return mapping


class Salesforce:
    name = NAME
    # Reads "changed since" (SystemModstamp) when the framework asks with ``since``.
    reads_changes = True

    def __init__(
        self,
        instance_url: str,
        purposes: Mapping[str, str],
        interactions: Sequence[str],
        *,
        access_token: str | None = None,
        consumer_key: str | None = None,
        consumer_secret: str | None = None,
        api_version: str = "59.0",
        customer_types: Sequence[str] = ("Customer - Direct", "Customer - Channel"),
        fields: Fields | None = None,
    ) -> None:
        from simple_salesforce import Salesforce as Client

        unknown = sorted(set(interactions) - set(INTERACTIONS))
        if unknown:
            raise RuntimeError(
                f"SALESFORCE_INTERACTIONS: unknown objects {', '.join(unknown)}; "
                f"use {', '.join(INTERACTIONS)}."
            )
        if access_token:
            # An access token of the connected app (or a session id): the
            # library calls the instance it is given, which the tests point
            # at the stand-in.
            self.client = Client(
                instance_url=instance_url, session_id=access_token, version=api_version
            )
        elif consumer_key and consumer_secret:
            # The connected app's client credentials flow, at the org's My
            # Domain (the library asks https://<domain>.salesforce.com for a
            # token, and renews it when Salesforce says the session expired).
            host = urlsplit(instance_url).hostname or ""
            if not host.endswith(".salesforce.com"):
                raise RuntimeError(
                    "SALESFORCE_CONSUMER_KEY needs SALESFORCE_INSTANCE_URL to be the org's "
                    "My Domain, https://<name>.my.salesforce.com."
                )
            self.client = Client(
                consumer_key=consumer_key,
                consumer_secret=consumer_secret,
                domain=host.removesuffix(".salesforce.com"),
                version=api_version,
            )
        else:
            raise RuntimeError(
                "Set SALESFORCE_ACCESS_TOKEN, or SALESFORCE_CONSUMER_KEY and "
                "SALESFORCE_CONSUMER_SECRET."
            )
        self.purposes = dict(purposes)
        self.interactions = list(interactions)
        self.customer_types = frozenset(customer_types)
        self.fields = fields or Fields()
        for field_name in (
            self.fields.may_market,
            self.fields.explanation,
            self.fields.legal_basis,
            self.fields.customer_since or "CreatedDate",
        ):
            # They go into SOQL and JSON as names: API names only.
            if not FIELD_NAME.match(field_name):
                raise RuntimeError(f"{field_name!r} is not a Salesforce field's API name.")

    def _sobject(self, name: str) -> SFType:
        return cast("SFType", getattr(self.client, name))

    # Faults -----------------------------------------------------------------------

    def classify(self, exc: Exception) -> Fault | None:
        import requests
        from simple_salesforce import exceptions as sf

        if isinstance(exc, sf.SalesforceAuthenticationFailed):
            return Fault(REVOKED, 401, str(getattr(exc, "message", "")) or "login failed")
        if isinstance(exc, sf.SalesforceError):
            status = exc.status
            code, message = _error(exc.content)
            if code == "REQUEST_LIMIT_EXCEEDED":
                return Fault(RETRY, status, f"{code}: {message}", _limit_wait(message))
            if isinstance(exc, sf.SalesforceExpiredSession) or status == 401:
                return Fault(REVOKED, status, f"{code}: {message}")
            if isinstance(exc, sf.SalesforceRefusedRequest) or status == 403:
                # API access withdrawn from the user or the org: not one record's fault.
                return Fault(REVOKED, status, f"{code}: {message}")
            if isinstance(exc, sf.SalesforceResourceNotFound) or status == 404:
                return Fault(GONE, status, f"{code}: {message}")
            if status == 429 or status >= 500:
                return Fault(RETRY, status, f"{code}: {message}")
            return Fault(REFUSED, status, f"{code}: {message}")
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return Fault(RETRY, None, type(exc).__name__)
        return None

    # Inbound ----------------------------------------------------------------------

    def _page(self, soql: str, after: str | None) -> dict[str, Any]:
        """The first batch of ``soql``, or the batch ``after`` (a
        ``nextRecordsUrl``) continues. A query locator Salesforce no longer
        holds (they expire after some minutes unused) starts the query over:
        the records read again are found unchanged."""
        from simple_salesforce.exceptions import SalesforceMalformedRequest

        headers = {"Sforce-Query-Options": BATCH}
        if after:
            try:
                return self.client.query_more(after, identifier_is_url=True, headers=headers)  # type: ignore[no-any-return]
            except SalesforceMalformedRequest as exc:
                if _error(exc.content)[0] != "INVALID_QUERY_LOCATOR":
                    raise
        return self.client.query(soql, headers=headers)  # type: ignore[no-any-return]

    def contacts(self, after: str | None, since: datetime | None = None) -> RemotePage:
        """A batch of every contact (``since`` None), or of those modified at or after ``since``."""
        fields = CONTACT_FIELDS
        if self.fields.customer_since:
            fields += f", Account.{self.fields.customer_since}"
        # Field names are constants or checked API names (no input from a record).
        where = f" WHERE SystemModstamp >= {_literal(since)}" if since else ""
        answer = self._page(
            f"SELECT {fields} FROM Contact{where} ORDER BY SystemModstamp, Id",  # noqa: S608
            after,
        )
        records = []
        for found in answer.get("records") or []:
            name = " ".join(v for v in (found.get("FirstName"), found.get("LastName")) if v)
            records.append(
                RemoteContact(
                    remote_id=str(found["Id"]),
                    email=found.get("Email") or None,
                    name=name or None,
                    phone=found.get("Phone") or None,
                    country=found.get("MailingCountry") or None,
                    company=self._company(found.get("Account")),
                )
            )
        return RemotePage(records, _next(answer))

    def _company(self, account: Mapping[str, Any] | None) -> RemoteCompany | None:
        if not account or not account.get("Name"):
            return None
        customer_since = None
        if account.get("Type") in self.customer_types:
            since = account.get(self.fields.customer_since) if self.fields.customer_since else None
            customer_since = _day(since) or _day(account.get("CreatedDate"))
        return RemoteCompany(
            remote_id=str(account["Id"]),
            name=str(account["Name"]),
            country=account.get("BillingCountry") or None,
            customer_since=customer_since,
        )

    def consents(self, email: str) -> Sequence[SeenConsent]:
        """Consent is not taken from Salesforce (docs/connectors.md): its
        consent records carry no wording to check against our policy."""
        return []

    def activity_types(self) -> Sequence[str]:
        return self.interactions

    def activities(
        self, object_type: str, after: str | None, since: datetime | None = None
    ) -> RemotePage:
        """A batch of the interactions of ``object_type`` (``since`` None: all;
        else those modified at or after ``since``, and for meetings also those
        that began since: a meeting left for later when it was still to come
        becomes an interaction without being modified)."""
        sobject, condition, kind = INTERACTIONS[object_type]
        conditions = [condition] if condition else []
        if since is not None:
            changed = f"SystemModstamp >= {_literal(since)}"
            if sobject == "Event":
                changed = f"({changed} OR StartDateTime >= {_literal(since)})"
            conditions.append(changed)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        soql = (
            f"SELECT {ACTIVITY_FIELDS[sobject]} FROM {sobject}{where} ORDER BY SystemModstamp, Id"  # noqa: S608
        )
        answer = self._page(soql, after)
        now = datetime.now(UTC)
        records = []
        for found in answer.get("records") or []:
            if sobject == "Task":
                occurred = _time(found.get("CompletedDateTime")) or _time(found.get("ActivityDate"))
            else:
                occurred = _time(found.get("StartDateTime")) or _time(found.get("ActivityDateTime"))
            occurred = occurred or _time(found.get("CreatedDate"))
            if occurred is not None and occurred > now:
                # A meeting still to come is no interaction yet: the next pass reads it again.
                continue
            who = found.get("WhoId")
            records.append(
                RemoteActivity(
                    object_type=object_type,
                    remote_id=str(found["Id"]),
                    kind=kind,
                    occurred_at=occurred,
                    contact_remote_ids=[str(who)] if who else [],
                )
            )
        return RemotePage(records, _next(answer))

    # Outbound ---------------------------------------------------------------------

    def write_decisions(
        self, remote_id: str, email: str, writes: Sequence[StatusWrite], known: dict[str, str]
    ) -> dict[str, str]:
        """One consent record per mapped topic on the contact's Individual
        (created when the contact has none), then the contact's flags and
        summary in one update. A record already saying the same is not
        written again."""
        contact = self._sobject("Contact").get(remote_id)
        written = dict(known)
        mapped = [w for w in writes if w.topic in self.purposes]
        individual_id = contact.get("IndividualId")
        if mapped and not individual_id:
            created = self._sobject("Individual").create(
                {
                    "FirstName": contact.get("FirstName"),
                    "LastName": contact.get("LastName") or NO_NAME,
                }
            )
            individual_id = str(created["id"])
            # Linked at once, so that a retry after a fault finds it and makes no second one.
            self._sobject("Contact").update(remote_id, {"IndividualId": individual_id})
        if mapped:
            self._write_consents(str(individual_id), mapped, written)
            if not written.get(OPTED_OUT_TOPICS):
                written.pop(OPTED_OUT_TOPICS, None)
        update: dict[str, Any] = {}
        persons_no = bool(writes) and all(not w.allowed and w.reason in PERSONS_NO for w in writes)
        if persons_no and not contact.get("HasOptedOutOfEmail"):
            update["HasOptedOutOfEmail"] = True
            written[OPTED_OUT_BY_US] = "1"
        elif (
            any(w.allowed for w in writes)
            and contact.get("HasOptedOutOfEmail")
            and written.pop(OPTED_OUT_BY_US, None)
        ):
            # Our own opt-out, ended by the person's own confirmation here; an
            # opt-out a salesperson set in Salesforce is never cleared.
            update["HasOptedOutOfEmail"] = False
        if individual_id:
            self._solicit(str(individual_id), writes, written)
        summary = next((w for w in writes if w.allowed), writes[0] if writes else None)
        if summary is not None:
            update[self.fields.may_market] = summary.allowed
            update[self.fields.explanation] = summary.explanation[:1000]
        if update:
            self._sobject("Contact").update(remote_id, update)
        return written

    def _solicit(
        self, individual_id: str, writes: Sequence[StatusWrite], written: dict[str, str]
    ) -> None:
        """The Individual's "don't solicit" on an objection here; cleared only
        when we set it and the person then said yes here."""
        individuals = self._sobject("Individual")
        if any(w.reason == "objection" for w in writes):
            if OBJECTED not in written and not individuals.get(individual_id).get(
                "HasOptedOutSolicit"
            ):
                individuals.update(individual_id, {"HasOptedOutSolicit": True})
                written[OBJECTED] = "1"
        elif any(w.allowed for w in writes) and OBJECTED in written:
            del written[OBJECTED]
            individuals.update(individual_id, {"HasOptedOutSolicit": False})

    def _write_consents(
        self, individual_id: str, writes: Sequence[StatusWrite], written: dict[str, str]
    ) -> None:
        # A checked field name; the id a quoted literal.
        soql = (
            "SELECT Id, DataUsePurposeId, PrivacyConsentStatus, "  # noqa: S608
            f"{self.fields.legal_basis} FROM ContactPointTypeConsent "
            f"WHERE PartyId = '{_quote(individual_id)}' AND ContactPointType = 'Email'"
        )
        answer = self.client.query(soql)
        existing = {str(r["DataUsePurposeId"]): r for r in answer.get("records") or []}
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        ours_out = set(filter(None, written.get(OPTED_OUT_TOPICS, "").split(",")))
        for write in writes:
            purpose_id = self.purposes[write.topic]
            found = existing.get(purpose_id)
            was_out = found is not None and found.get("PrivacyConsentStatus") == OPT_OUT
            if write.allowed:
                if was_out and write.topic not in ours_out:
                    # An opt-out entered in Salesforce stays (as HubSpot's API
                    # cannot undo one): we never undo a "no" we did not write.
                    continue
                code: str | None = write.reason if write.reason in LEGAL_BASIS else None
                status = OPT_IN
                if code:
                    written[write.topic] = code
                ours_out.discard(write.topic)
            elif write.reason in PERSONS_NO:
                # The "no" names the basis it ends, as the last one written.
                status, code = OPT_OUT, written.get(write.topic)
                ours_out.add(write.topic)
            else:
                # No basis yet, pending confirmation, restricted, bounced: not
                # the person's "no". Shown as not seen, and never over an opt-out.
                if was_out:
                    continue
                status, code = NOT_SEEN, None
            basis = LEGAL_BASIS.get(code) if code else None
            fields: dict[str, Any] = {
                "PrivacyConsentStatus": status,
                self.fields.legal_basis: basis,
            }
            if found is not None:
                if (
                    found.get("PrivacyConsentStatus") == status
                    and found.get(self.fields.legal_basis) == basis
                ):
                    continue
                self._sobject("ContactPointTypeConsent").update(
                    str(found["Id"]), {**fields, "EffectiveFrom": now}
                )
            else:
                self._sobject("ContactPointTypeConsent").create(
                    {
                        **fields,
                        "Name": f"{write.topic} (Email)"[:255],
                        "PartyId": individual_id,
                        "ContactPointType": "Email",
                        "DataUsePurposeId": purpose_id,
                        "CaptureContactPointType": "Web",
                        "CaptureDate": now,
                        "CaptureSource": CAPTURE_SOURCE,
                        "EffectiveFrom": now,
                    }
                )
        written[OPTED_OUT_TOPICS] = ",".join(sorted(ours_out))

    def delete(self, object_type: str, remote_id: str) -> None:
        """Delete the record; a contact with its Individual and the consent
        records on it (they hold the person's name and choices too), unless
        another contact shares that Individual: then its consents are that
        contact's too (a "no" among them), and this contact is only unlinked."""
        if object_type != "contacts":
            getattr(self.client, _sobject(object_type)).delete(remote_id)
            return
        contact = self._sobject("Contact").get(remote_id)
        individual_id = contact.get("IndividualId")
        # The Individual first: a retry after a fault still finds it through the contact.
        if individual_id:
            if self._shared(str(individual_id), remote_id):
                self._sobject("Contact").update(remote_id, {"IndividualId": None})
            else:
                self._delete_individual(str(individual_id))
        self._sobject("Contact").delete(remote_id)

    def _shared(self, individual_id: str, remote_id: str) -> bool:
        """Whether a contact other than ``remote_id`` uses the Individual."""
        soql = (
            "SELECT Id FROM Contact "  # noqa: S608
            f"WHERE IndividualId = '{_quote(individual_id)}' AND Id != '{_quote(remote_id)}'"
        )
        return bool(self.client.query(soql).get("records"))

    def _delete_individual(self, individual_id: str) -> None:
        from simple_salesforce.exceptions import SalesforceResourceNotFound

        soql = f"SELECT Id FROM ContactPointTypeConsent WHERE PartyId = '{_quote(individual_id)}'"  # noqa: S608
        answer = self.client.query(soql)
        for record in answer.get("records") or []:
            with contextlib.suppress(SalesforceResourceNotFound):
                self._sobject("ContactPointTypeConsent").delete(str(record["Id"]))
        # Gone already when another contact's deletion took it.
        with contextlib.suppress(SalesforceResourceNotFound):
            self._sobject("Individual").delete(individual_id)

    def anonymise(self, object_type: str, remote_id: str) -> None:
        """Overwrite the personal fields instead of deleting the record (where
        the organisation keeps its CRM history): a contact loses name, address,
        phones, title and birthdate, and its Individual (unless another
        contact shares it) asks to be forgotten; an activity loses
        its subject, description and the person it names."""
        if object_type != "contacts":
            getattr(self.client, _sobject(object_type)).update(
                remote_id, {"Subject": ANONYMOUS, "Description": None, "WhoId": None}
            )
            return
        contact = self._sobject("Contact").get(remote_id)
        individual_id = contact.get("IndividualId")
        update: dict[str, Any] = dict.fromkeys(PERSONAL_FIELDS)
        update.update(
            {"LastName": ANONYMOUS, "HasOptedOutOfEmail": True, self.fields.explanation: None}
        )
        shared = bool(individual_id) and self._shared(str(individual_id), remote_id)
        if shared:
            # Another contact's Individual too: left as it is, with its consents.
            update["IndividualId"] = None
        self._sobject("Contact").update(remote_id, update)
        if individual_id and not shared:
            self._sobject("Individual").update(
                str(individual_id),
                {
                    "FirstName": None,
                    "LastName": ANONYMOUS,
                    "ShouldForget": True,
                    "HasOptedOutProcessing": True,
                },
            )


def _sobject(object_type: str) -> str:
    if object_type not in INTERACTIONS:
        raise RuntimeError(f"Salesforce holds no {object_type!r} of ours.")
    return INTERACTIONS[object_type][0]


def _literal(moment: datetime) -> str:
    """A SOQL datetime literal (UTC, unquoted)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(value: str) -> str:
    """A value inside a SOQL string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _next(answer: Mapping[str, Any]) -> str | None:
    if answer.get("done", True):
        return None
    return str(answer["nextRecordsUrl"]) if answer.get("nextRecordsUrl") else None


def _time(value: Any) -> datetime | None:
    """Salesforce's datetimes (``2026-03-04T10:15:00.000+0000``) and dates
    (midnight UTC), None for anything else."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _day(value: Any) -> date | None:
    moment = _time(value)
    return moment.date() if moment is not None else None


def _error(content: Any) -> tuple[str, str]:
    """Salesforce's error body, a list of ``{message, errorCode}``: the first one."""
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        first = content[0]
        return str(first.get("errorCode") or ""), str(first.get("message") or "")[:300]
    if isinstance(content, Mapping):
        return str(content.get("errorCode") or content.get("error") or ""), str(
            content.get("message") or content.get("error_description") or ""
        )[:300]
    return "", str(content or "")[:300]


def _limit_wait(message: str) -> float | None:
    """How long to wait after REQUEST_LIMIT_EXCEEDED: the org's daily API
    requests are counted over a rolling 24 hours, so a spent ``TotalRequests``
    limit waits an hour (longer than any retry: the turn ends, cursors stay);
    the concurrent-requests limit clears in seconds (the doubling backoff)."""
    return HOUR_S if "TotalRequests" in message else None
