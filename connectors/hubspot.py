"""HubSpot, through the official client library (``hubspot-api-client``).

Inbound: contacts with their company (CRM v3 objects, ``after`` paging), and
the objects that are interactions (calls, meetings, incoming emails) with the
contacts they are associated with. Outbound: each mapped topic's
subscription status (communication preferences API) with the legal basis
and its explanation, and the summary properties ``consent_may_market`` and
``consent_explanation`` on the contact; deletions of erased or purged
contacts and of purged activities (archive).

Only the base URL changes between HubSpot and the tests' stand-in
(``HUBSPOT_BASE_URL``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

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

NAME = "hubspot"
PAGE_SIZE = 100
CONTACT_PROPERTIES = [
    "email",
    "firstname",
    "lastname",
    "phone",
    "country",
    "hs_language",
    "associatedcompanyid",
]
COMPANY_PROPERTIES = ["name", "country", "lifecyclestage", "hs_lifecyclestage_customer_date"]
# Our reason for a "yes" → HubSpot's legal basis (issue 24; HubSpot's GDPR bases).
LEGAL_BASIS = {
    "customer": "LEGITIMATE_INTEREST_CLIENT",
    "industry_list": "LEGITIMATE_INTEREST_OTHER",
    "consent": "CONSENT_WITH_NOTICE",
}
# The person's own "no" (our reason codes): the only decisions written as NOT_SUBSCRIBED.
PERSONS_NO = frozenset({"objection", "unsubscribed", "suppressed"})
# The HubSpot objects that may count as interactions, and our activity kind for each.
INTERACTION_KINDS = {"calls": "call", "meetings": "meeting", "emails": "email"}
# The property a changed-since read filters and sorts on: the contact's own,
# and the engagements' (calls, meetings, emails).
MODIFIED = {"contacts": "lastmodifieddate"}
ENGAGEMENT_MODIFIED = "hs_lastmodifieddate"
# The most results HubSpot's search answers for one query (paging past it is a 400).
SEARCH_LIMIT = 10_000
# The summary a salesperson reads on the contact record: custom properties the
# administrator creates once (docs/connectors.md).
MAY_MARKET = "consent_may_market"
EXPLANATION = "consent_explanation"
DAY_S = 24 * 60 * 60.0
# Anonymising (HUBSPOT_ERASURE = anonymise): the contact properties that are
# personal data and are cleared (the address is replaced: HubSpot keys contacts
# by it), and each activity object's free text.
PERSONAL_PROPERTIES = (
    "firstname",
    "lastname",
    "hs_additional_emails",
    "phone",
    "mobilephone",
    "company",
    "jobtitle",
    "address",
    "city",
    "zip",
    "website",
    MAY_MARKET,
    EXPLANATION,
)
PLACEHOLDER_DOMAIN = "anonymised.invalid"
ACTIVITY_TEXT = {
    "calls": ("hs_call_title", "hs_call_body"),
    "meetings": ("hs_meeting_title", "hs_meeting_body", "hs_internal_meeting_notes"),
    "emails": ("hs_email_subject", "hs_email_text", "hs_email_html", "hs_email_headers"),
}


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """``["newsletter=123"]`` → ``{"newsletter": "123"}``; a clear error otherwise."""
    mapping = {}
    for pair in pairs:
        topic, sep, subscription_id = pair.partition("=")
        if not sep or not topic.strip() or not subscription_id.strip():
            raise RuntimeError(f"HUBSPOT_SUBSCRIPTION_TYPES takes topic=id pairs, not {pair!r}.")
        mapping[topic.strip()] = subscription_id.strip()
    return mapping


class HubSpot:
    name = NAME
    # Reads "changed since" with the search API (connectors.base.Connector).
    reads_changes = True

    def __init__(
        self,
        token: str,
        base_url: str,
        subscription_types: Mapping[str, str],
        interactions: Sequence[str],
        consent_policy_version: str | None = None,
        search_limit: int = SEARCH_LIMIT,
        page_size: int = PAGE_SIZE,
    ) -> None:
        from hubspot import Client

        unknown = sorted(set(interactions) - set(INTERACTION_KINDS))
        if unknown:
            raise RuntimeError(
                f"HUBSPOT_INTERACTIONS: unknown objects {', '.join(unknown)}; "
                f"use {', '.join(INTERACTION_KINDS)}."
            )
        # ``host`` reaches every API's Configuration; the library's own retries
        # are left off: connectors.base retries with the CRM's own wait.
        self.client = Client.create(access_token=token, host=base_url)
        self.subscription_types = dict(subscription_types)
        self.interactions = list(interactions)
        self.consent_policy_version = consent_policy_version
        self.search_limit = search_limit
        self.page_size = page_size
        self._companies: dict[str, RemoteCompany | None] = {}
        self._apis: dict[str, Any] = {}

    def _api(self, path: str) -> Any:
        """One of the client library's API objects, made once: each attribute
        read of ``client.crm...`` builds a new client (a new connection pool,
        and a package-metadata read that costs more than a request)."""
        api = self._apis.get(path)
        if api is None:
            api = self.client
            for part in path.split("."):
                api = getattr(api, part)
            self._apis[path] = api
        return api

    # Faults -----------------------------------------------------------------------

    def classify(self, exc: Exception) -> Fault | None:
        import urllib3

        status = getattr(exc, "status", None)
        if type(exc).__name__ in (
            "ApiException",
            "ServiceException",
            "NotFoundException",
            "UnauthorizedException",
            "ForbiddenException",
        ):
            message = _message(getattr(exc, "body", None)) or str(getattr(exc, "reason", ""))
            if status in (401, 403):
                return Fault(REVOKED, status, message)
            if status == 404:
                return Fault(GONE, status, message)
            if status == 429:
                return Fault(RETRY, status, message, _wait(getattr(exc, "headers", None)))
            if status is None or status >= 500:
                return Fault(RETRY, status, message)
            return Fault(REFUSED, status, message)
        if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
            return Fault(RETRY, None, type(exc).__name__)
        return None

    # Inbound ----------------------------------------------------------------------

    def contacts(self, after: str | None, since: datetime | None = None) -> RemotePage:
        """A page of every contact (``since`` None: the list API, no limit), or
        of those modified at or after ``since`` (the search API)."""
        if since is None:
            answer = self._api("crm.contacts.basic_api").get_page(
                limit=self.page_size, after=after, properties=CONTACT_PROPERTIES
            )
            found_list, next_after = answer.results, _next(answer)
        else:
            found_list, next_after = self._search(
                self._api("crm.contacts.search_api"), "contacts", CONTACT_PROPERTIES, after, since
            )
        # The contact's primary company (``associatedcompanyid``, which the
        # search answers too, unlike associations), read in one batch per page.
        self._read_companies(
            [str((f.properties or {}).get("associatedcompanyid") or "") for f in found_list]
        )
        records = []
        for found in found_list:
            p = found.properties or {}
            name = " ".join(v for v in (p.get("firstname"), p.get("lastname")) if v) or None
            company_id = p.get("associatedcompanyid")
            records.append(
                RemoteContact(
                    remote_id=str(found.id),
                    email=p.get("email"),
                    name=name,
                    phone=p.get("phone") or None,
                    country=p.get("country") or None,
                    language=p.get("hs_language") or None,
                    company=self._companies.get(str(company_id)) if company_id else None,
                )
            )
        return RemotePage(records, next_after)

    def _search(
        self,
        api: Any,
        object_type: str,
        properties: Sequence[str],
        after: str | None,
        since: datetime,
    ) -> tuple[list[Any], str | None]:
        """One page of the records modified at or after the read's time cursor,
        oldest change first; the next page's token, None at the end.

        The token is ``"<time cursor in ms>:<HubSpot's after>"``. HubSpot
        answers at most ``search_limit`` (10,000) results per query: before
        paging past it, the time cursor moves to the last record's modified
        time and the paging starts again. That time is taken inclusively
        (GTE), so records sharing it are read twice, never lost; what was
        read twice is dropped by the fingerprints."""
        from hubspot.crm.objects import Filter, FilterGroup, PublicObjectSearchRequest

        modified = MODIFIED.get(object_type, ENGAGEMENT_MODIFIED)
        cursor_ms, _, offset = (after or "").partition(":")
        since_ms = int(cursor_ms) if cursor_ms else _ms(since)
        request = PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[Filter(property_name=modified, operator="GTE", value=str(since_ms))]
                )
            ],
            sorts=[{"propertyName": modified, "direction": "ASCENDING"}],  # type: ignore[list-item]
            properties=[*properties, modified],
            limit=self.page_size,
            after=offset or None,
        )
        answer = api.do_search(public_object_search_request=request)
        results = list(answer.results)
        next_after = _next(answer)
        if next_after is None:
            return results, None
        if int(next_after) + self.page_size > self.search_limit:
            last = _time((results[-1].properties or {}).get(modified)) if results else None
            last_ms = _ms(last) if last is not None else since_ms
            if last_ms <= since_ms:
                raise RuntimeError(
                    f"HubSpot holds more than {self.search_limit} {object_type} modified at "
                    f"the same moment ({since.isoformat()}); the changed-since read cannot "
                    "page past them. An admin's full resync reads them (docs/connectors.md)."
                )
            return results, f"{last_ms}:"
        return results, f"{since_ms}:{next_after}"

    def _read_companies(self, remote_ids: Sequence[str]) -> None:
        """Read the companies not read yet in this run, 100 per batch call."""
        from hubspot.crm.companies import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

        wanted = sorted({i for i in remote_ids if i and i not in self._companies})
        for start in range(0, len(wanted), PAGE_SIZE):
            chunk = wanted[start : start + PAGE_SIZE]
            answer = self._api("crm.companies.batch_api").read(
                BatchReadInputSimplePublicObjectId(
                    inputs=[SimplePublicObjectId(id=i) for i in chunk],
                    properties=COMPANY_PROPERTIES,
                    properties_with_history=[],
                )
            )
            for found in answer.results or []:
                self._companies[str(found.id)] = _company(found)
            for remote_id in chunk:  # not found: no company
                self._companies.setdefault(remote_id, None)

    def consents(self, email: str) -> Sequence[SeenConsent]:
        """The mapped subscription types HubSpot shows as subscribed on
        consent (``CONSENT_WITH_NOTICE``), with the explanation as the wording.
        One call per contact, so only when consent is taken from HubSpot."""
        if not self.consent_policy_version:
            return []
        topics = {v: k for k, v in self.subscription_types.items()}
        answer = self._api("communication_preferences.status_api").get_email_status(email)
        seen = []
        for status in answer.subscription_statuses or []:
            topic = topics.get(str(status.id))
            if (
                topic is not None
                and status.status == "SUBSCRIBED"
                and status.legal_basis == "CONSENT_WITH_NOTICE"
            ):
                seen.append(
                    SeenConsent(
                        topic=topic,
                        wording=status.legal_basis_explanation or "",
                        policy_version=self.consent_policy_version,
                        form_id=f"hubspot:subscription:{status.id}",
                    )
                )
        return seen

    def activity_types(self) -> Sequence[str]:
        return self.interactions

    def activities(
        self, object_type: str, after: str | None, since: datetime | None = None
    ) -> RemotePage:
        properties = ["hs_timestamp"] + (["hs_email_direction"] if object_type == "emails" else [])
        if since is None:
            answer = self._api(f"crm.objects.{object_type}.basic_api").get_page(
                limit=self.page_size, after=after, properties=properties, associations=["contacts"]
            )
            found_list, next_after = answer.results, _next(answer)
            linked = {str(f.id): _associated(f, "contacts") for f in found_list}
        else:
            found_list, next_after = self._search(
                self._api(f"crm.objects.{object_type}.search_api"),
                object_type,
                properties,
                after,
                since,
            )
            # The search answers no associations: one batch read per page.
            linked = self._associated_contacts(object_type, [str(f.id) for f in found_list])
        records = []
        for found in found_list:
            p = found.properties or {}
            # An email we sent is marketing or service, not the contact taking part (R13).
            if object_type == "emails" and p.get("hs_email_direction") != "INCOMING_EMAIL":
                continue
            records.append(
                RemoteActivity(
                    object_type=object_type,
                    remote_id=str(found.id),
                    kind=INTERACTION_KINDS[object_type],
                    occurred_at=_time(p.get("hs_timestamp")),
                    contact_remote_ids=linked.get(str(found.id), []),
                )
            )
        return RemotePage(records, next_after)

    def _associated_contacts(self, object_type: str, remote_ids: list[str]) -> dict[str, list[str]]:
        """The contacts each record is associated with (associations v4, batch read)."""
        from hubspot.crm.associations.v4 import (
            BatchInputPublicFetchAssociationsBatchRequest,
            PublicFetchAssociationsBatchRequest,
        )

        if not remote_ids:
            return {}
        answer = self._api("crm.associations.v4.batch_api").get_page(
            object_type,
            "contacts",
            BatchInputPublicFetchAssociationsBatchRequest(
                inputs=[PublicFetchAssociationsBatchRequest(id=i) for i in remote_ids]
            ),
        )
        return {
            str(found._from.id): [str(to.to_object_id) for to in found.to or []]
            for found in answer.results or []
        }

    # Outbound ---------------------------------------------------------------------

    def write_decisions(
        self, remote_id: str, email: str, writes: Sequence[StatusWrite], known: dict[str, str]
    ) -> dict[str, str]:
        from hubspot.communication_preferences import PublicUpdateSubscriptionStatusRequest
        from hubspot.crm.contacts import SimplePublicObjectInput

        status_api = self._api("communication_preferences.status_api")
        written = dict(known)
        for write in writes:
            subscription_id = self.subscription_types.get(write.topic)
            if subscription_id is None:
                continue
            if not write.allowed and write.reason not in PERSONS_NO:
                # No basis yet, a pending confirmation, a restriction, a bounce:
                # not the person's "no". HubSpot's NOT_SUBSCRIBED is an opt-out
                # the API cannot take back, so the status is left as it is and
                # the summary properties say why we may not market.
                continue
            basis = LEGAL_BASIS.get(write.reason) if write.allowed else known.get(write.topic)
            request = PublicUpdateSubscriptionStatusRequest(
                email_address=email,
                subscription_id=subscription_id,
                legal_basis=basis,
                legal_basis_explanation=write.explanation[:500],
            )
            if write.allowed:
                status_api.subscribe(request)
                if basis:
                    written[write.topic] = basis
            else:
                status_api.unsubscribe(request)
        summary = next((w for w in writes if w.allowed), writes[0] if writes else None)
        if summary is not None:
            self._api("crm.contacts.basic_api").update(
                remote_id,
                SimplePublicObjectInput(
                    properties={
                        MAY_MARKET: "true" if summary.allowed else "false",
                        EXPLANATION: summary.explanation,
                    }
                ),
            )
        return written

    def delete(self, object_type: str, remote_id: str) -> None:
        if object_type == "contacts":
            self._api("crm.contacts.basic_api").archive(remote_id)
        else:
            self._api(f"crm.objects.{object_type}.basic_api").archive(remote_id)

    def anonymise(self, object_type: str, remote_id: str) -> None:
        """Keep the record for HubSpot's reports (counts of contacts, calls,
        meetings) with nothing personal left: a contact's address becomes a
        placeholder no mail can reach (HubSpot wants a unique, valid-looking
        address; ``.invalid`` never resolves, RFC 2606) and its other
        personal properties are cleared (an empty string clears a property);
        an activity loses its body and title, where notes about the person
        live. The summary properties go too: they quote our explanation."""
        if object_type == "contacts":
            from hubspot.crm.contacts import SimplePublicObjectInput

            properties = {name: "" for name in PERSONAL_PROPERTIES}
            properties["email"] = placeholder_email()
            self._api("crm.contacts.basic_api").update(
                remote_id, SimplePublicObjectInput(properties=properties)
            )
            return
        import importlib

        # Each object's API has its own model of the update body.
        models = importlib.import_module(f"hubspot.crm.objects.{object_type}")
        properties = {name: "" for name in ACTIVITY_TEXT.get(object_type, ())}
        self._api(f"crm.objects.{object_type}.basic_api").update(
            remote_id, models.SimplePublicObjectInput(properties=properties)
        )


def _company(found: Any) -> RemoteCompany | None:
    p = found.properties or {}
    if not p.get("name"):
        return None
    customer_since = None
    if p.get("lifecyclestage") == "customer":
        customer_since = _day(p.get("hs_lifecyclestage_customer_date")) or _day(found.created_at)
    return RemoteCompany(str(found.id), p["name"], p.get("country") or None, customer_since)


def _ms(moment: datetime) -> int:
    """A moment as HubSpot's search filters take a date-time: milliseconds since 1970."""
    return int(moment.timestamp() * 1000)


def placeholder_email() -> str:
    """A unique address that names nobody and reaches nowhere."""
    import uuid

    return f"anonymised-{uuid.uuid4().hex}@{PLACEHOLDER_DOMAIN}"


def _associated(found: Any, kind: str) -> list[str]:
    associations = getattr(found, "associations", None) or {}
    collection = associations.get(kind)
    return [str(a.id) for a in (collection.results if collection else [])]


def _next(answer: Any) -> str | None:
    paging = getattr(answer, "paging", None)
    return paging.next.after if paging is not None and paging.next is not None else None


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _day(value: Any) -> date | None:
    moment = _time(value)
    return moment.date() if moment is not None else None


def _message(body: Any) -> str | None:
    """HubSpot's error body's ``message``, without echoing anything else."""
    import json

    if not body:
        return None
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return None
    return str(data.get("message"))[:300] if isinstance(data, dict) else None


def _wait(headers: Any) -> float | None:
    """How long HubSpot asks us to wait after a 429: ``Retry-After`` when sent;
    else by which limit is spent (``X-HubSpot-RateLimit-*``): the daily one
    resets at midnight (longer than any retry waits, so the turn ends), the
    secondly one in a second, a private app's window after its interval."""
    if not headers:
        return None
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            return float(retry_after)
        except ValueError:
            pass
    if headers.get("X-HubSpot-RateLimit-Daily-Remaining") == "0":
        return DAY_S
    if headers.get("X-HubSpot-RateLimit-Secondly-Remaining") == "0":
        return 1.0
    interval = headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    if headers.get("X-HubSpot-RateLimit-Remaining") == "0" and interval:
        try:
            return float(interval) / 1000
        except ValueError:
            return None
    return None
