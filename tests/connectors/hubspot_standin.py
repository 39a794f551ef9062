"""A stand-in for the parts of HubSpot's API the connector uses, on 127.0.0.1.

Shapes follow HubSpot's published API reference (CRM v3 objects with
``after`` paging and associations; communication preferences v3 subscribe
and unsubscribe; the error body ``{status, message, correlationId,
category}``; 429 with ``errorType: RATE_LIMIT``, ``policyName`` and the
``X-HubSpot-RateLimit-*`` headers). Every success answer is deserialised by
``hubspot-api-client``'s own models in the connector (their required fields
are checked), and ``tests/connectors/test_hubspot_standin.py`` checks the
error bodies against the library's ``Error`` model.

Faults are injected per request: ``standin.fail(429, times=3)`` answers the
next three requests with a 429; ``standin.token = None`` refuses every
token (a revoked private app).
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "pat-eu1-standin-token"
OBJECT_TYPES = ("contacts", "companies", "calls", "meetings", "emails")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Fault:
    status: int
    times: int
    prefix: str = "/"


@dataclass
class HubSpotStandIn:
    token: str | None = TOKEN
    page_size_cap: int = 100
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {t: {} for t in OBJECT_TYPES}
    )
    # (email, subscription id) → the status HubSpot would show.
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    subscription_names: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1001))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # What a test sets up -----------------------------------------------------------

    def add(
        self,
        object_type: str,
        properties: dict[str, str],
        associations: dict[str, list[str]] | None = None,
    ) -> str:
        remote_id = str(next(self._ids))
        now = _now()
        self.objects[object_type][remote_id] = {
            "id": remote_id,
            "properties": {**properties, "hs_object_id": remote_id, "createdate": now},
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
            "associations": dict(associations or {}),
            "objectType": object_type,
        }
        return remote_id

    def set_status(
        self, email: str, subscription_id: str, status: str, legal_basis: str, explanation: str
    ) -> None:
        """A subscription status as a HubSpot form or a salesperson left it."""
        self.statuses[(email, subscription_id)] = {
            "id": subscription_id,
            "name": self.subscription_names[subscription_id],
            "description": self.subscription_names[subscription_id],
            "status": status,
            "sourceOfStatus": "SUBSCRIPTION_STATUS",
            "legalBasis": legal_basis,
            "legalBasisExplanation": explanation,
        }

    def fail(self, status: int, times: int = 1, prefix: str = "/") -> None:
        self.faults.append(Fault(status, times, prefix))

    def calls_to(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

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
                if fault.times > 0 and path.startswith(fault.prefix):
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
                for key, value in properties.items():
                    if value in ("", None):
                        # HubSpot clears a property set to an empty string.
                        found["properties"].pop(key, None)
                    else:
                        found["properties"][key] = str(value)
                found["updatedAt"] = _now()
                return 200, {}, self._public(found, list(properties), [])
            if method == "DELETE":
                found["archived"] = True
                found["archivedAt"] = _now()
                return 204, {}, None
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
        live = sorted(
            (o for o in self.objects[object_type].values() if not o["archived"]),
            key=lambda o: int(o["id"]),
        )
        if after is not None:
            live = [o for o in live if int(o["id"]) >= int(after)]
        page, rest = live[:limit], live[limit:]
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

    def _public(
        self, found: dict[str, Any], properties: list[str], associations: list[str]
    ) -> dict[str, Any]:
        wanted = {
            k: v
            for k, v in found["properties"].items()
            if k in properties or k in ("hs_object_id", "createdate")
        }
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
        return 200, {}, status


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
