"""A stand-in for the parts of Salesforce's REST API the connector uses, on 127.0.0.1.

Shapes follow Salesforce's published REST API reference: ``GET query?q=``
answers ``{totalSize, done, records, nextRecordsUrl}`` with each record's
``attributes {type, url}`` and parent relationships as nested records; the
next batch is ``GET nextRecordsUrl`` (``queryMore``), its size asked with
``Sforce-Query-Options: batchSize=``; ``sobjects/<type>/<id>`` answers GET
(the record), PATCH (204), DELETE (204); ``POST sobjects/<type>/`` answers
201 ``{id, success, errors}``; every error is a JSON list of
``{message, errorCode}`` (401 ``INVALID_SESSION_ID``, 403
``REQUEST_LIMIT_EXCEEDED`` with ``Sforce-Limit-Info``, 404 ``NOT_FOUND`` /
``ENTITY_IS_DELETED``, 400 ``INVALID_FIELD``, ``REQUIRED_FIELD_MISSING``,
``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``, ``INVALID_QUERY_LOCATOR``).

Salesforce is only reached over HTTPS (``simple-salesforce`` builds its URLs
as ``https://<instance>``), so the stand-in serves TLS with a certificate made
for 127.0.0.1 at start; the tests trust it through ``REQUESTS_CA_BUNDLE``.

Only a small SOQL is understood: ``SELECT a, B.c FROM T [WHERE x = 'v' AND
y != 'w' AND z = true ...] [ORDER BY f, g]``, what the connector sends. Faults are injected
per request: ``standin.fail(503, times=2, prefix="query")``;
``standin.token = None`` refuses every session (a revoked connected app).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "00Dstandin!AQ4AQ.session"
VERSION = "59.0"
PREFIX = f"/services/data/v{VERSION}/"
KEY_PREFIX = {
    "Account": "001",
    "Contact": "003",
    "Task": "00T",
    "Event": "00U",
    "Individual": "0PK",
    "ContactPointTypeConsent": "0ZY",
    "DataUsePurpose": "0ZW",
}
COMMON = {"Id", "CreatedDate", "SystemModstamp", "IsDeleted"}
FIELDS = {
    "Account": {"Name", "BillingCountry", "Type", "Customer_Since__c"},
    "Contact": {
        "Email",
        "FirstName",
        "LastName",
        "Phone",
        "MobilePhone",
        "MailingCountry",
        "MailingStreet",
        "MailingCity",
        "MailingPostalCode",
        "MailingState",
        "HomePhone",
        "OtherPhone",
        "AssistantName",
        "AssistantPhone",
        "Title",
        "Department",
        "Birthdate",
        "OtherStreet",
        "OtherCity",
        "OtherPostalCode",
        "OtherState",
        "OtherCountry",
        "Description",
        "AccountId",
        "IndividualId",
        "HasOptedOutOfEmail",
        "DoNotCall",
        "Consent_May_Market__c",
        "Consent_Explanation__c",
    },
    "Task": {
        "WhoId",
        "Subject",
        "Description",
        "TaskSubtype",
        "Status",
        "IsClosed",
        "ActivityDate",
        "CompletedDateTime",
    },
    "Event": {
        "WhoId",
        "Subject",
        "Description",
        "StartDateTime",
        "EndDateTime",
        "ActivityDateTime",
    },
    "Individual": {
        "FirstName",
        "LastName",
        "HasOptedOutSolicit",
        "HasOptedOutProcessing",
        "HasOptedOutTracking",
        "ShouldForget",
    },
    "ContactPointTypeConsent": {
        "Name",
        "PartyId",
        "ContactPointType",
        "DataUsePurposeId",
        "PrivacyConsentStatus",
        "CaptureContactPointType",
        "CaptureDate",
        "CaptureSource",
        "EffectiveFrom",
        "Legal_Basis__c",
    },
    "DataUsePurpose": {"Name"},
}
REQUIRED = {
    "Contact": ("LastName",),
    "Individual": ("LastName",),
    "Account": ("Name",),
    "ContactPointTypeConsent": ("Name", "PartyId", "CaptureContactPointType", "CaptureDate"),
}
CHANNELS = {"Email", "MailingAddress", "Phone", "Social", "Web"}
PICKLISTS = {
    ("ContactPointTypeConsent", "PrivacyConsentStatus"): {"OptIn", "OptOut", "NotSeen", "Seen"},
    ("ContactPointTypeConsent", "ContactPointType"): CHANNELS,
    ("ContactPointTypeConsent", "CaptureContactPointType"): CHANNELS,
}
REFERENCES = {
    ("Contact", "AccountId"): "Account",
    ("Contact", "IndividualId"): "Individual",
    ("ContactPointTypeConsent", "PartyId"): "Individual",
    ("ContactPointTypeConsent", "DataUsePurposeId"): "DataUsePurpose",
}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SOQL = re.compile(
    r"^SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+ORDER BY\s+(?P<order>.+?))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
CONDITION = re.compile(
    r"^(\w+)\s*(!=|=|>=|<=|>|<)\s*"
    r"(?:'((?:[^'\\]|\\.)*)'|(true|false)|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z))$",
    re.IGNORECASE,
)
COMPARE = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a is not None and a >= b,
    "<=": lambda a, b: a is not None and a <= b,
    ">": lambda a, b: a is not None and a > b,
    "<": lambda a, b: a is not None and a < b,
}


def _stamp() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


@dataclass
class Fault:
    status: int
    times: int
    prefix: str = ""
    code: str | None = None


@dataclass
class SalesforceStandIn:
    token: str | None = TOKEN
    page_size_cap: int = 2000
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {t: {} for t in KEY_PREFIX}
    )
    # (method, path after /services/data/vXX.X/) of every request.
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    locators: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # topic → DataUsePurpose id, as the tests' settings map them.
    purposes: dict[str, str] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # What a test sets up -----------------------------------------------------------

    def add(self, sobject: str, fields: dict[str, Any]) -> str:
        with self._lock:
            remote_id = f"{KEY_PREFIX[sobject]}{next(self._ids):012d}AAA"
            now = _stamp()
            self.objects[sobject][remote_id] = {
                **{f: None for f in FIELDS[sobject]},
                **fields,
                "Id": remote_id,
                "CreatedDate": fields.get("CreatedDate", now),
                "SystemModstamp": now,
                "IsDeleted": False,
            }
            return remote_id

    def fail(self, status: int, times: int = 1, prefix: str = "", code: str | None = None) -> None:
        self.faults.append(Fault(status, times, prefix, code))

    def expire_locators(self) -> None:
        self.locators.clear()

    def live(self, sobject: str) -> list[dict[str, Any]]:
        return [r for r in self.objects[sobject].values() if not r["IsDeleted"]]

    def writes(self) -> int:
        return sum(1 for method, _ in self.requests if method != "GET")

    def calls_to(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(prefix))

    # Answers ------------------------------------------------------------------------

    def answer(
        self, method: str, target: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        url = urlsplit(target)
        if not url.path.startswith(PREFIX):
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        path = url.path[len(PREFIX) :]
        with self._lock:
            self.requests.append((method, path))
            if self.token is None or headers.get("Authorization") != f"Bearer {self.token}":
                return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            for fault in self.faults:
                if fault.times > 0 and path.startswith(fault.prefix):
                    fault.times -= 1
                    return _fault(fault)
            parts = [p for p in path.split("/") if p]
            if parts == ["query"] and method == "GET":
                soql = parse_qs(url.query).get("q", [""])[0]
                return self._query(soql, _batch(headers))
            if len(parts) == 2 and parts[0] == "query" and method == "GET":
                return self._more(parts[1], _batch(headers))
            if parts[:1] == ["sobjects"] and len(parts) in (2, 3):
                sobject = parts[1]
                if sobject not in self.objects:
                    return _error(404, "NOT_FOUND", "The requested resource does not exist")
                if len(parts) == 2 and method == "POST":
                    return self._create(sobject, body)
                if len(parts) == 3:
                    return self._record(method, sobject, parts[2], body)
            return _error(404, "NOT_FOUND", "The requested resource does not exist")

    def _record(
        self, method: str, sobject: str, remote_id: str, body: Any
    ) -> tuple[int, dict[str, str], Any]:
        found = self.objects[sobject].get(remote_id)
        if found is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist")
        if found["IsDeleted"]:
            return _error(404, "ENTITY_IS_DELETED", "entity is deleted")
        if method == "GET":
            return 200, {}, {"attributes": _attributes(sobject, remote_id), **found}
        if method == "PATCH":
            problem = self._check(sobject, body, creating=False)
            if problem is not None:
                return problem
            found.update(body)
            found["SystemModstamp"] = _stamp()
            return 204, {}, None
        if method == "DELETE":
            found["IsDeleted"] = True
            found["SystemModstamp"] = _stamp()
            return 204, {}, None
        return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed.")

    def _create(self, sobject: str, body: Any) -> tuple[int, dict[str, str], Any]:
        problem = self._check(sobject, body, creating=True)
        if problem is not None:
            return problem
        remote_id = self.add(sobject, body)
        return 201, {}, {"id": remote_id, "success": True, "errors": []}

    def _check(
        self, sobject: str, body: Any, *, creating: bool
    ) -> tuple[int, dict[str, str], Any] | None:
        if not isinstance(body, dict):
            return _error(400, "JSON_PARSER_ERROR", "The request body is not a JSON object.")
        for name, value in body.items():
            if name not in FIELDS[sobject]:
                return _error(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on sobject of type {sobject}",
                )
            allowed = PICKLISTS.get((sobject, name))
            if allowed is not None and value is not None and value not in allowed:
                return _error(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{name}: bad value for restricted picklist field: {value}",
                )
            target = REFERENCES.get((sobject, name))
            if target is not None and value is not None:
                referenced = self.objects[target].get(str(value))
                if referenced is None or referenced["IsDeleted"]:
                    return _error(
                        400,
                        "INVALID_CROSS_REFERENCE_KEY",
                        f"invalid cross reference id: {value}",
                    )
            if name == "Email" and value and not EMAIL.match(str(value)):
                return _error(
                    400, "INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {value}"
                )
        required = REQUIRED.get(sobject, ())
        missing = [
            n for n in required if (creating and not body.get(n)) or (n in body and not body[n])
        ]
        if missing:
            return _error(
                400,
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
            )
        return None

    # SOQL ---------------------------------------------------------------------------

    def _query(self, soql: str, batch: int) -> tuple[int, dict[str, str], Any]:
        parsed = SOQL.match(soql.strip())
        if parsed is None or parsed["object"] not in self.objects:
            return _error(400, "MALFORMED_QUERY", f"unexpected token: {soql[:80]}")
        sobject = parsed["object"]
        fields = [f.strip() for f in parsed["fields"].split(",")]
        # Each condition: a comparison, or a parenthesised OR of comparisons.
        conditions: list[list[tuple[str, str, Any]]] = []
        if parsed["where"]:
            for part in re.split(r"\s+AND\s+", parsed["where"], flags=re.IGNORECASE):
                part = part.strip()
                alternatives = (
                    re.split(r"\s+OR\s+", part[1:-1], flags=re.IGNORECASE)
                    if part.startswith("(") and part.endswith(")")
                    else [part]
                )
                group = []
                for alternative in alternatives:
                    match = CONDITION.match(alternative.strip())
                    if match is None:
                        return _error(400, "MALFORMED_QUERY", f"unexpected token: {part[:80]}")
                    name, operator, text, flag, moment = match.groups()
                    value: Any = (
                        _moment(moment)
                        if moment
                        else (flag.lower() == "true")
                        if flag
                        else re.sub(r"\\(.)", r"\1", text)
                    )
                    group.append((name, operator, value))
                conditions.append(group)
        names = [n for group in conditions for n, _, _ in group]
        for name in [f for f in fields if "." not in f] + names:
            if name not in FIELDS[sobject] | COMMON:
                return _error(
                    400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'."
                )

        def holds(row: dict[str, Any], name: str, operator: str, value: Any) -> bool:
            found = row.get(name)
            if isinstance(value, dt.datetime):
                found = _moment(found) if found else None
            return bool(COMPARE[operator](found, value))

        rows = [
            r
            for r in self.live(sobject)
            if all(any(holds(r, *c) for c in group) for group in conditions)
        ]
        if parsed["order"]:
            keys = [k.strip() for k in parsed["order"].split(",")]
            rows.sort(key=lambda r: tuple(str(r.get(k) or "") for k in keys))
        records = [self._project(sobject, r, fields) for r in rows]
        locator = f"01g{uuid.uuid4().hex[:12]}"
        self.locators[locator] = records
        return self._batch(locator, 0, batch)

    def _more(self, token: str, batch: int) -> tuple[int, dict[str, str], Any]:
        locator, _, offset = token.rpartition("-")
        if locator not in self.locators or not offset.isdigit():
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._batch(locator, int(offset), batch)

    def _batch(self, locator: str, offset: int, batch: int) -> tuple[int, dict[str, str], Any]:
        records = self.locators[locator]
        size = min(batch, self.page_size_cap)
        end = offset + size
        body: dict[str, Any] = {
            "totalSize": len(records),
            "done": end >= len(records),
            "records": records[offset:end],
        }
        if end < len(records):
            body["nextRecordsUrl"] = f"{PREFIX}query/{locator}-{end}"
        else:
            self.locators.pop(locator, None)
        return 200, {}, body

    def _project(self, sobject: str, row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": _attributes(sobject, row["Id"])}
        for name in fields:
            if "." not in name:
                record[name] = row.get(name)
                continue
            relation, child = name.split(".", 1)
            parent_id = row.get(f"{relation}Id")
            parent = self.objects[relation].get(parent_id) if parent_id else None
            if parent is None or parent["IsDeleted"]:
                record[relation] = None
                continue
            nested = record.get(relation) or {"attributes": _attributes(relation, parent["Id"])}
            nested[child] = parent.get(child)
            record[relation] = nested
        return record


def _moment(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _attributes(sobject: str, remote_id: str) -> dict[str, str]:
    return {"type": sobject, "url": f"{PREFIX}sobjects/{sobject}/{remote_id}"}


def _batch(headers: dict[str, str]) -> int:
    options = headers.get("Sforce-Query-Options") or ""
    match = re.search(r"batchSize=(\d+)", options)
    return max(200, min(int(match.group(1)), 2000)) if match else 2000


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], Any]:
    return status, {}, [{"message": message, "errorCode": code}]


def _fault(fault: Fault) -> tuple[int, dict[str, str], Any]:
    if fault.code == "REQUEST_LIMIT_EXCEEDED" or (fault.status == 403 and fault.code is None):
        message = "TotalRequests Limit exceeded."
        return (
            403,
            {"Sforce-Limit-Info": "api-usage=15000/15000"},
            [{"message": message, "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        )
    if fault.code == "CONCURRENT_LIMIT":
        return (
            403,
            {"Sforce-Limit-Info": "api-usage=120/15000"},
            [
                {
                    "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                    "errorCode": "REQUEST_LIMIT_EXCEEDED",
                }
            ],
        )
    if fault.status == 401:
        return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
    if fault.status == 429:
        return _error(429, "REQUEST_LIMIT_EXCEEDED", "Too many requests.")
    if fault.status == 503:
        return _error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable.")
    return _error(fault.status, fault.code or "UNKNOWN_EXCEPTION", "An unexpected error occurred.")


class _Handler(BaseHTTPRequestHandler):
    standin: SalesforceStandIn

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        status, headers, answer = self.standin.answer(
            self.command, self.path, body, dict(self.headers.items())
        )
        payload = b"" if answer is None else json.dumps(answer).encode()
        # Salesforce reports the org's API usage on every answer.
        headers.setdefault("Sforce-Limit-Info", f"api-usage={len(self.standin.requests)}/15000")
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if answer is not None:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


_CERTIFICATE: list[Path] = []


def certificate() -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made once per test process):
    the certificate file (also the CA bundle the client trusts) and its key."""
    if not _CERTIFICATE:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "salesforce stand-in")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        folder = Path(tempfile.mkdtemp(prefix="sf-standin-"))
        (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / "key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        _CERTIFICATE.append(folder)
    folder = _CERTIFICATE[0]
    return folder / "cert.pem", folder / "key.pem"


class Server:
    """The stand-in served over TLS on 127.0.0.1 in a thread: ``instance_url``
    for SALESFORCE_INSTANCE_URL, ``ca_bundle`` for REQUESTS_CA_BUNDLE."""

    def __init__(self) -> None:
        self.standin = SalesforceStandIn()
        handler = type("Handler", (_Handler,), {"standin": self.standin})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        cert, key = certificate()
        self.ca_bundle = str(cert)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def instance_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"https://{host}:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
