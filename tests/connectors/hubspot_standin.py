"""A stand-in for the parts of HubSpot's API the connector uses, on 127.0.0.1.

Shapes follow HubSpot's published API reference (CRM v3 objects with
``after`` paging and associations; the CRM search, ``POST
/crm/v3/objects/{type}/search``, with filter groups, one sort, an offset
``after`` and at most ``search_limit`` (10,000) results per query, a 400
past it; companies' batch read; associations v4 batch read; communication
preferences v3 subscribe and unsubscribe; the error body ``{status, message,
correlationId, category}``; 429 with ``errorType: RATE_LIMIT``,
``policyName`` and the ``X-HubSpot-RateLimit-*`` headers). Every record
carries HubSpot's last-modified property (``lastmodifieddate`` for
contacts and companies, ``hs_lastmodifieddate`` for engagements), moved by
every change, a subscription status's included (as HubSpot records a
subscription change on the contact). Not modelled: the 207 partial answers
of the batch reads (ids not found are left out of a 200). Every success answer is deserialised by
``hubspot-api-client``'s own models in the connector (their required fields
are checked), and ``tests/connectors/test_hubspot_standin.py`` checks the
error bodies against the library's ``Error`` model.

Faults are injected per request: ``standin.fail(429, times=3)`` answers the
next three requests with a 429; ``standin.token = None`` refuses every
token (a revoked private app).
"""

from __future__ import annotations

import bisect
import itertools
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "pat-eu1-standin-token"
OBJECT_TYPES = ("contacts", "companies", "calls", "meetings", "emails")
SEARCH_LIMIT = 10_000
SEARCH_PAGE_MAX = 200


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Fault:
    status: int
    times: int
    prefix: str = "/"
    method: str | None = None  # any method


@dataclass
class HubSpotStandIn:
    token: str | None = TOKEN
    page_size_cap: int = 100
    # HubSpot's most results per search query; a test sets a small one.
    search_limit: int = SEARCH_LIMIT
    # The time every change is stamped with (ISO, ms); a test may fix it.
    clock: Callable[[], str] = field(default_factory=lambda: _now)
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {t: {} for t in OBJECT_TYPES}
    )
    # (email, subscription id) → the status HubSpot would show.
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    subscription_names: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    # Every search's request body, and how many results each search answered.
    searches: list[dict[str, Any]] = field(default_factory=list)
    search_results: list[int] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _by_email: dict[str, str] = field(default_factory=dict)
    # Bumped by every change; the sorted lists below are kept per version.
    _version: int = 0
    _sorted: dict[tuple[str, str], tuple[int, list[dict[str, Any]]]] = field(default_factory=dict)

    # What a test sets up -----------------------------------------------------------

    def add(
        self,
        object_type: str,
        properties: dict[str, str],
        associations: dict[str, list[str]] | None = None,
        modified: str | None = None,
    ) -> str:
        remote_id = str(next(self._ids))
        now = self.clock()
        extra = {}
        if object_type == "contacts" and (associations or {}).get("companies"):
            # HubSpot's primary company of the contact.
            extra["associatedcompanyid"] = (associations or {})["companies"][0]
        self.objects[object_type][remote_id] = {
            "id": remote_id,
            "properties": {**properties, **extra, "hs_object_id": remote_id, "createdate": now},
            "createdAt": now,
            "updatedAt": modified or now,
            "archived": False,
            "associations": dict(associations or {}),
            "objectType": object_type,
        }
        if object_type == "contacts" and properties.get("email"):
            self._by_email[properties["email"].lower()] = remote_id
        self._version += 1
        return remote_id

    def touch(
        self,
        object_type: str,
        remote_id: str,
        properties: dict[str, str] | None = None,
        at: str | None = None,
    ) -> None:
        """A change made in HubSpot (a salesperson's edit): the properties, and
        the last-modified time moved to ``at`` (default: the clock)."""
        found = self.objects[object_type][remote_id]
        found["properties"].update(properties or {})
        found["updatedAt"] = at or self.clock()
        self._version += 1

    def _touch_email(self, email: str) -> None:
        remote_id = self._by_email.get(email.lower())
        if remote_id is not None:
            self.touch("contacts", remote_id)

    def set_status(
        self, email: str, subscription_id: str, status: str, legal_basis: str, explanation: str
    ) -> None:
        """A subscription status as a HubSpot form or a salesperson left it."""
        self._touch_email(email)
        self.statuses[(email, subscription_id)] = {
            "id": subscription_id,
            "name": self.subscription_names[subscription_id],
            "description": self.subscription_names[subscription_id],
            "status": status,
            "sourceOfStatus": "SUBSCRIPTION_STATUS",
            "legalBasis": legal_basis,
            "legalBasisExplanation": explanation,
        }

    def fail(
        self, status: int, times: int = 1, prefix: str = "/", method: str | None = None
    ) -> None:
        self.faults.append(Fault(status, times, prefix, method))

    def calls_to(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    def reads_of(self, prefix: str) -> int:
        """How many requests read (a GET, a search, a batch read) under ``prefix``."""
        return sum(
            1
            for m, p in self.requests
            if p.startswith(prefix) and (m == "GET" or p.endswith(("/search", "/batch/read")))
        )

    def writes(self) -> list[tuple[str, str]]:
        """The requests that change something (a search or a batch read is a POST too)."""
        return [
            (m, p)
            for m, p in self.requests
            if m != "GET" and not p.endswith(("/search", "/batch/read"))
        ]

    # Answers ------------------------------------------------------------------------

    def answer(
        self, method: str, target: str, body: Any, auth: str | None
    ) -> tuple[int, dict[str, str], Any]:
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query)
        with self._lock:
            self.requests.append((method, path))
            if self.token is None or auth != f"Bearer {self.token}":
                return _error(
                    401,
                    "INVALID_AUTHENTICATION",
                    "Authentication credentials not found. This API supports OAuth 2.0 "
                    "authentication.",
                )
            for fault in self.faults:
                if (
                    fault.times > 0
                    and path.startswith(fault.prefix)
                    and fault.method in (None, method)
                ):
                    fault.times -= 1
                    return _fault(fault.status)
        parts = [p for p in path.split("/") if p]
        if parts[:3] == ["crm", "v3", "objects"] and len(parts) in (4, 5):
            object_type = parts[3]
            if object_type not in self.objects:
                return _error(404, "OBJECT_NOT_FOUND", f"Unknown object type {object_type}.")
            if len(parts) == 4 and method == "GET":
                return self._page(object_type, query)
            remote_id = parts[4]
            if remote_id == "search" and method == "POST":
                return self._search(object_type, body or {})
            found = self.objects[object_type].get(remote_id)
            if found is None or found["archived"]:
                return _error(404, "OBJECT_NOT_FOUND", "resource not found")
            if method == "GET":
                return 200, {}, self._public(found, _multi(query, "properties"), [])
            if method == "PATCH":
                properties = (body or {}).get("properties")
                if not isinstance(properties, dict):
                    return _error(
                        400, "VALIDATION_ERROR", "Invalid input JSON: properties required."
                    )
                problem = self._update_problem(object_type, remote_id, properties)
                if problem is not None:
                    return problem
                for key in [k for k, v in properties.items() if v in ("", None)]:
                    # HubSpot clears a property set to an empty string.
                    found["properties"].pop(key, None)
                self.touch(
                    object_type,
                    remote_id,
                    {k: str(v) for k, v in properties.items() if v not in ("", None)},
                )
                return 200, {}, self._public(found, list(properties), [])
            if method == "DELETE":
                found["archived"] = True
                found["archivedAt"] = self.clock()
                self._version += 1
                return 204, {}, None
        batch = method == "POST" and parts[-2:] == ["batch", "read"]
        if batch and parts[:3] == ["crm", "v3", "objects"] and len(parts) == 6:
            return self._batch_read(parts[3], body or {})
        if batch and parts[:3] == ["crm", "v4", "associations"] and len(parts) == 7:
            return self._associations(parts[3], parts[4], body or {})
        if (
            path
            in (
                "/communication-preferences/v3/subscribe",
                "/communication-preferences/v3/unsubscribe",
            )
            and method == "POST"
        ):
            return self._status(path.endswith("/subscribe"), body or {})
        prefix = "/communication-preferences/v3/status/email/"
        if path.startswith(prefix) and method == "GET":
            email = unquote(path[len(prefix) :])
            return (
                200,
                {},
                {
                    "recipient": email,
                    "subscriptionStatuses": [
                        status
                        for (address, _), status in sorted(self.statuses.items())
                        if address == email
                    ],
                },
            )
        return _error(404, "OBJECT_NOT_FOUND", f"No route {method} {path}.")

    def _update_problem(
        self, object_type: str, remote_id: str, properties: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any] | None:
        """HubSpot's refusals of a contact update the connector may meet: an
        address that is not one (400 ``VALIDATION_ERROR``, ``INVALID_EMAIL``)
        and one another contact holds (409 ``CONFLICT``)."""
        email = properties.get("email")
        if object_type != "contacts" or email in (None, ""):
            return None
        local, at, domain = str(email).partition("@")
        if not local or not at or "." not in domain or " " in str(email):
            return _error(
                400,
                "VALIDATION_ERROR",
                f'Property values were not valid: [{{"isValid":false,"message":"Email '
                f'address {email} is invalid","error":"INVALID_EMAIL","name":"email"}}]',
            )
        for other_id, other in self.objects["contacts"].items():
            if other_id != remote_id and other["properties"].get("email") == email:
                return _error(409, "CONFLICT", f"Contact already exists. Existing ID: {other_id}")
        return None

    def _page(
        self, object_type: str, query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], Any]:
        limit = min(int(query.get("limit", ["10"])[0]), self.page_size_cap)
        after = query.get("after", [None])[0]
        live = self._live(object_type, "id")
        start = 0
        if after is not None:
            start = bisect.bisect_left(live, int(after), key=lambda o: int(o["id"]))
        page, rest = live[start : start + limit], live[start + limit : start + limit + 1]
        body: dict[str, Any] = {
            "results": [
                self._public(o, _multi(query, "properties"), _multi(query, "associations"))
                for o in page
            ]
        }
        if rest:
            # HubSpot's ``after`` is an opaque token; here it is the next id.
            nxt = rest[0]["id"]
            body["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
        return 200, {}, body

    def _live(self, object_type: str, order: str) -> list[dict[str, Any]]:
        """The records not archived, by id or by last-modified time (then id);
        kept until the next change, as 100,000 records take a while to sort."""
        kept = self._sorted.get((object_type, order))
        if kept is not None and kept[0] == self._version:
            return kept[1]
        live = [o for o in self.objects[object_type].values() if not o["archived"]]
        if order == "id":
            live.sort(key=lambda o: int(o["id"]))
        else:
            live.sort(key=lambda o: (_ms(o["updatedAt"]), int(o["id"])))
        self._sorted[(object_type, order)] = (self._version, live)
        return live

    def _search(self, object_type: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        """``POST /crm/v3/objects/{type}/search``: the filters HubSpot's
        ``Filter`` takes on the last-modified property (GT, GTE, LT, LTE, EQ
        with a millisecond or ISO value), sorted by it, offset paging."""
        modified = _modified_property(object_type)
        groups = body.get("filterGroups") or []
        sorts = body.get("sorts") or []
        try:
            limit = int(body.get("limit") or 10)
            offset = int(body.get("after") or 0)
        except (TypeError, ValueError):
            return _error(400, "VALIDATION_ERROR", "limit and after must be integers.")
        if limit < 1 or limit > SEARCH_PAGE_MAX:
            return _error(400, "VALIDATION_ERROR", f"limit must be 1 to {SEARCH_PAGE_MAX}.")
        self.searches.append(body)
        if offset + limit > self.search_limit:
            return _error(
                400,
                "VALIDATION_ERROR",
                f"The search is limited to {self.search_limit} results per query; "
                "narrow the filters to page further.",
            )
        if len(sorts) > 1:
            return _error(400, "VALIDATION_ERROR", "Only one sort is supported.")
        for sort in sorts:
            name = sort.get("propertyName") if isinstance(sort, dict) else None
            if name != modified or sort.get("direction") not in ("ASCENDING", None):
                return _error(400, "VALIDATION_ERROR", f"The stand-in sorts by {modified} only.")
        tests: list[Callable[[int], bool]] = []
        for group in groups:
            for rule in group.get("filters") or []:
                if rule.get("propertyName") != modified:
                    return _error(400, "VALIDATION_ERROR", f"The stand-in filters {modified} only.")
                try:
                    value = _ms(str(rule["value"]))
                except (KeyError, ValueError):
                    return _error(400, "VALIDATION_ERROR", "A filter needs a date-time value.")
                compare = _COMPARE.get(rule.get("operator"))
                if compare is None:
                    return _error(
                        400, "VALIDATION_ERROR", f"Unknown operator {rule.get('operator')}."
                    )
                tests.append(lambda ms, c=compare, v=value: c(ms, v))
        if len(groups) > 1:
            return _error(400, "VALIDATION_ERROR", "The stand-in takes one filter group.")
        with self._lock:
            live = self._live(object_type, "modified")
        matching = [o for o in live if all(t(_ms(o["updatedAt"])) for t in tests)]
        page = matching[offset : offset + limit]
        properties = [p for p in body.get("properties") or [] if isinstance(p, str)]
        answer: dict[str, Any] = {
            "total": len(matching),
            "results": [self._public(o, properties, []) for o in page],
        }
        self.search_results.append(len(page))
        if offset + limit < len(matching):
            answer["paging"] = {"next": {"after": str(offset + limit)}}
        return 200, {}, answer

    def _batch_read(
        self, object_type: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or body.get("properties") is None:
            return _error(400, "VALIDATION_ERROR", "inputs and properties are required.")
        if len(inputs) > 100:
            return _error(400, "VALIDATION_ERROR", "At most 100 inputs per batch.")
        started = self.clock()
        results = []
        for item in inputs:
            found = self.objects[object_type].get(str(item.get("id")))
            if found is not None and not found["archived"]:
                results.append(self._public(found, list(body["properties"]), []))
        return (
            200,
            {},
            {
                "status": "COMPLETE",
                "results": results,
                "startedAt": started,
                "completedAt": self.clock(),
            },
        )

    def _associations(
        self, from_type: str, to_type: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any]:
        if from_type not in self.objects or to_type not in self.objects:
            return _error(404, "OBJECT_NOT_FOUND", f"Unknown object type {from_type}.")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or len(inputs) > 1000:
            return _error(400, "VALIDATION_ERROR", "inputs (at most 1,000) are required.")
        started = self.clock()
        results = []
        for item in inputs:
            found = self.objects[from_type].get(str(item.get("id")))
            linked = (found or {}).get("associations", {}).get(to_type) or []
            if found is None or not linked:
                continue
            results.append(
                {
                    "from": {"id": found["id"]},
                    "to": [
                        {
                            "toObjectId": int(i),
                            "associationTypes": [
                                {"category": "HUBSPOT_DEFINED", "typeId": 194, "label": None}
                            ],
                        }
                        for i in linked
                    ],
                }
            )
        return (
            200,
            {},
            {
                "status": "COMPLETE",
                "results": results,
                "startedAt": started,
                "completedAt": self.clock(),
            },
        )

    def _public(
        self, found: dict[str, Any], properties: list[str], associations: list[str]
    ) -> dict[str, Any]:
        modified = _modified_property(found["objectType"])
        wanted = {
            k: v
            for k, v in found["properties"].items()
            if k in properties or k in ("hs_object_id", "createdate")
        }
        wanted[modified] = found["updatedAt"]
        item: dict[str, Any] = {
            "id": found["id"],
            "properties": wanted,
            "createdAt": found["createdAt"],
            "updatedAt": found["updatedAt"],
            "archived": found["archived"],
        }
        linked = {
            kind: {
                "results": [
                    {"id": i, "type": f"{_singular(found)}_to_{kind[:-1]}"}
                    for i in found["associations"].get(kind, [])
                ]
            }
            for kind in associations
            if found["associations"].get(kind)
        }
        if linked:
            item["associations"] = linked
        return item

    def _status(self, subscribe: bool, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        email, subscription_id = body.get("emailAddress"), body.get("subscriptionId")
        if not email or not subscription_id:
            return _error(400, "VALIDATION_ERROR", "emailAddress and subscriptionId are required.")
        if subscription_id not in self.subscription_names:
            return _error(
                400, "VALIDATION_ERROR", f"{subscription_id} is not a valid subscription id."
            )
        status = {
            "id": subscription_id,
            "name": self.subscription_names[subscription_id],
            "description": self.subscription_names[subscription_id],
            "status": "SUBSCRIBED" if subscribe else "NOT_SUBSCRIBED",
            "sourceOfStatus": "SUBSCRIPTION_STATUS",
        }
        if body.get("legalBasis"):
            status["legalBasis"] = body["legalBasis"]
        if body.get("legalBasisExplanation"):
            status["legalBasisExplanation"] = body["legalBasisExplanation"]
        self.statuses[(email, subscription_id)] = status
        self._touch_email(email)
        if not subscribe:
            remote_id = self._by_email.get(email.lower())
            if remote_id is not None:
                self.objects["contacts"][remote_id]["properties"][
                    f"hs_email_optout_{subscription_id}"
                ] = "true"
        return 200, {}, status


def _modified_property(object_type: str) -> str:
    return "lastmodifieddate" if object_type in ("contacts", "companies") else "hs_lastmodifieddate"


def _ms(value: str) -> int:
    """A date-time as HubSpot's filters take it: milliseconds, or ISO 8601."""
    if value.isdigit():
        return int(value)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


_COMPARE: dict[Any, Callable[[int, int], bool]] = {
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "EQ": lambda a, b: a == b,
}


def _singular(found: dict[str, Any]) -> str:
    return str(found["objectType"]).rstrip("s").replace("companie", "company")


def _multi(query: dict[str, list[str]], name: str) -> list[str]:
    return [v for value in query.get(name, []) for v in value.split(",") if v]


def _error(status: int, category: str, message: str) -> tuple[int, dict[str, str], Any]:
    return (
        status,
        {},
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        },
    )


def _fault(status: int) -> tuple[int, dict[str, str], Any]:
    if status == 429:
        headers = {
            "X-HubSpot-RateLimit-Daily": "250000",
            "X-HubSpot-RateLimit-Daily-Remaining": "249000",
            "X-HubSpot-RateLimit-Secondly": "10",
            "X-HubSpot-RateLimit-Secondly-Remaining": "0",
        }
        body = {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()),
            "policyName": "SECONDLY",
            "requestId": str(uuid.uuid4()),
        }
        return 429, headers, body
    if status == 401:
        return _error(401, "INVALID_AUTHENTICATION", "The access token was revoked.")
    return _error(status, "INTERNAL_ERROR", "internal error")


class _Handler(BaseHTTPRequestHandler):
    standin: HubSpotStandIn
    # Keep-alive, as HubSpot's API answers: the client library's pool reuses connections.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, the second waits
    # for the client's delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        status, headers, answer = self.standin.answer(
            self.command, self.path, body, self.headers.get("Authorization")
        )
        payload = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if answer is not None:
            self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class Server:
    """The stand-in served on 127.0.0.1 in a thread: ``base_url`` for HUBSPOT_BASE_URL."""

    def __init__(self) -> None:
        self.standin = HubSpotStandIn()
        handler = type("Handler", (_Handler,), {"standin": self.standin})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
