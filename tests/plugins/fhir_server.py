"""A FHIR R4 server for the ehr_fhir plugin's tests: a real HTTP server on 127.0.0.1 in a background thread.

It serves realistic R4 JSON (every resource valid against fhir.resources' R4B models, see :func:`seed`):

- ``GET /fhir/metadata``: the CapabilityStatement (no token needed, as FHIR servers do);
- ``GET /fhir/<Type>?...``: search with ``_lastUpdated`` (gt/ge/lt/le), ``_count``, ``_sort`` (``_lastUpdated``,
  ``-_lastUpdated``), ``_include=<Type>:subject``, ``identifier`` (``system|value``, comma for or),
  ``_summary=count`` and ``_elements``; an unknown parameter is a 400. Results are a snapshot taken when the
  search runs, paged by ``link next`` URLs with opaque page tokens (``/fhir/_page?token=...``);
- ``GET /fhir/<Type>/<id>``: read;
- ``PUT /fhir/CarePlan?identifier=...`` and ``PUT /fhir/Task?identifier=...``: conditional update, the body
  validated as R4 (422 otherwise), recorded in :attr:`FhirServer.pushed`, answered 201 or 200 with ``Location``;
- ``POST /auth/token``: SMART Backend Services' token endpoint, checking the client assertion for real
  (:meth:`FhirServer.token`).

Every FHIR request except metadata needs ``Authorization: Bearer <token>`` with a token this server issued (and
its scope) or one registered with :meth:`FhirServer.add_bearer`. Switches for the tests: :meth:`fail_next`,
:meth:`touch`, :attr:`next_origin`, :attr:`include_supported`, :meth:`revoke_tokens`.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from tests.fhir_validate import valid

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MRN_SYSTEM = "https://ehr.riverside.example/mrn"
ENTERPRISE_SYSTEM = "urn:oid:2.16.840.1.113883.3.7000.1"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_CLASS = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
DISPOSITION = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
LOINC, SNOMED, ICD10 = "http://loinc.org", "http://snomed.info/sct", "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
SCOPES = frozenset(
    "system/Patient.read system/Encounter.read system/Condition.read system/Observation.read "
    "system/CarePlan.write system/Task.write".split()
)
SEARCH_PARAMS = {"_count", "_sort", "_lastUpdated", "_include", "identifier", "_summary", "_elements"}
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # the seed's first lastUpdated
Headers = Message | Mapping[str, str]  # a request's headers (the handler's are case-insensitive)


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


@dataclass
class Search:
    resource_type: str
    matches: list[dict[str, Any]]  # a snapshot: later changes do not move its pages
    count: int
    include: bool
    time: str


@dataclass
class Issued:
    client_id: str | None
    scopes: frozenset[str] | None  # None: a static bearer token, any scope
    expires_at: float


@dataclass
class Answer:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


class FhirServer:
    """The server and its state; ``with FhirServer() as server:`` starts and stops it."""

    def __init__(self, *, token_lifetime: int = 300) -> None:
        self.lock = threading.RLock()
        self.resources: dict[str, dict[str, dict[str, Any]]] = {**seed(), "CarePlan": {}, "Task": {}}
        self.clients: dict[str, tuple[dict[str, Any], frozenset[str]]] = {}  # client id: (public JWKS, scopes)
        self.tokens: dict[str, Issued] = {}
        self.jtis: dict[str, float] = {}
        self.searches: dict[str, Search] = {}
        self.pages: dict[str, tuple[str, int]] = {}  # page token: (search id, offset)
        self.failures: list[tuple[int, str | None, str]] = []  # (status, Retry-After, path prefix)
        self.token_lifetime = token_lifetime
        self.next_origin: str | None = None  # when set, next links point there instead
        self.include_supported = True
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self.token_requests: list[dict[str, str]] = []
        self.pushed: list[dict[str, Any]] = []
        self.next_id = 1
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)

    # -- life cycle and addresses --------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.origin}/auth/token"

    def __enter__(self) -> FhirServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()

    # -- switches ------------------------------------------------------------------------------------------------

    def register_client(self, client_id: str, public_jwks: Mapping[str, Any], scopes: frozenset[str] = SCOPES) -> None:
        self.clients[client_id] = (dict(public_jwks), scopes)

    def add_bearer(self, token: str) -> None:
        self.tokens[token] = Issued(client_id=None, scopes=None, expires_at=float("inf"))

    def revoke_tokens(self) -> None:
        """Every issued token stops working (static bearer tokens stay)."""
        with self.lock:
            self.tokens = {k: v for k, v in self.tokens.items() if v.client_id is None}

    def fail_next(self, n: int, status: int = 429, retry_after: str | None = "1", prefix: str = "/fhir/") -> None:
        """The next ``n`` requests under ``prefix`` answer ``status`` with ``Retry-After: retry_after``."""
        with self.lock:
            self.failures += [(status, retry_after, prefix)] * n

    def touch(self, reference: str, **changes: Any) -> dict[str, Any]:
        """Change a resource now (a new version, ``meta.lastUpdated`` the server's current time)."""
        resource_type, _, resource_id = reference.partition("/")
        with self.lock:
            resource = self.resources[resource_type][resource_id]
            resource.update(changes)
            resource["meta"] = {"versionId": str(int(resource["meta"]["versionId"]) + 1), "lastUpdated": self.now()}
            return copy.deepcopy(resource)

    def now(self) -> str:
        return instant(datetime.now(UTC))

    def paths(self, method: str = "GET") -> list[str]:
        return [path for m, path in self.requests if m == method]

    # -- requests ------------------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Headers, body: bytes) -> Answer:
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        with self.lock:
            self.requests.append((method, target))
            for index, (status, retry_after, prefix) in enumerate(self.failures):
                if url.path.startswith(prefix):
                    del self.failures[index]
                    extra = {"Retry-After": retry_after} if retry_after is not None else {}
                    return Answer(status, outcome("throttled", "too many requests"), extra)
        if method == "POST" and url.path == "/auth/token":
            return self.token(body)
        if not url.path.startswith("/fhir/"):
            return Answer(404, outcome("not-found", f"no such endpoint {url.path}"))
        parts = url.path.removeprefix("/fhir/").split("/")
        if parts == ["metadata"] and method == "GET":
            return Answer(200, self.capability())
        if parts == ["_page"] and method == "GET":
            return self.page(query.get("token", [""])[0], headers)
        kind = parts[0]
        if kind not in self.resources:
            return Answer(404, outcome("not-supported", f"{kind} is not served here"))
        denied = self.authorize(headers, kind, "write" if method == "PUT" else "read")
        if denied:
            return denied
        if method == "GET" and len(parts) == 1:
            return self.search(kind, query)
        if method == "GET" and len(parts) == 2:
            found = self.resources.get(kind, {}).get(parts[1])
            return Answer(200, copy.deepcopy(found)) if found else Answer(404, outcome("not-found", "no such id"))
        if method == "PUT" and len(parts) == 1:
            return self.conditional_update(kind, query, body)
        return Answer(405, outcome("not-supported", f"{method} {url.path}"))

    def authorize(self, headers: Headers, kind: str, access: str) -> Answer | None:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        issued = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if issued is None or issued.expires_at < time.time():
            return Answer(401, outcome("login", "a valid bearer token is required"), {"WWW-Authenticate": "Bearer"})
        if issued.scopes is not None and not {f"system/{kind}.{access}", f"system/*.{access}"} & issued.scopes:
            return Answer(403, outcome("forbidden", f"the token's scopes do not allow {access} of {kind}"))
        return None

    # -- SMART Backend Services ------------------------------------------------------------------------------------

    def token(self, body: bytes) -> Answer:
        """Issue a token for a client assertion that passes every check of SMART Backend Services: grant type and
        assertion type, alg RS384 or ES384, a kid registered for the client, the signature, iss = sub = client
        id, aud = this endpoint, exp in the future and at most 5 minutes ahead, a jti not seen before, and scopes
        the client may have."""
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with self.lock:
            self.token_requests.append(form)

        def refuse(text: str, error: str = "invalid_client", status: int = 401) -> Answer:
            return Answer(status, {"error": error, "error_description": text})

        if form.get("grant_type") != "client_credentials":
            return refuse("grant_type must be client_credentials", "unsupported_grant_type", 400)
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return refuse("client_assertion_type must be jwt-bearer", "invalid_request", 400)
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return refuse(f"malformed assertion: {exc}")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ("RS384", "ES384"):
            return refuse(f"alg {alg} is not RS384 or ES384")
        registered = self.clients.get(str(unverified.get("iss")))
        if registered is None:
            return refuse("unknown client")
        jwks, allowed = registered
        jwk = next((k for k in jwks.get("keys", []) if k.get("kid") == kid), None)
        if jwk is None or jwk.get("alg", alg) != alg:
            return refuse(f"no key {kid!r} for {alg} registered for the client")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=self.token_url,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return refuse(f"assertion refused: {exc}")
        if not claims["iss"] == claims["sub"] == unverified["iss"]:
            return refuse("iss and sub must both be the client id")
        now = time.time()
        if claims["exp"] > now + 300:
            return refuse("exp is more than 5 minutes ahead")
        with self.lock:
            if self.jtis.get(str(claims["jti"]), 0) > now:
                return refuse("jti already used")
            self.jtis[str(claims["jti"])] = float(claims["exp"])
            wanted = frozenset((form.get("scope") or "").split())
            if not wanted or not wanted <= allowed:
                return refuse(f"scopes not allowed: {sorted(wanted - allowed)}", "invalid_scope", 400)
            value = secrets.token_urlsafe(24)
            self.tokens[value] = Issued(str(claims["iss"]), wanted, now + self.token_lifetime)
        body_out = {"access_token": value, "token_type": "bearer", "expires_in": self.token_lifetime}
        return Answer(200, {**body_out, "scope": " ".join(sorted(wanted))}, {"Cache-Control": "no-store"})

    # -- search, paging, update ------------------------------------------------------------------------------------

    def search(self, kind: str, query: dict[str, list[str]]) -> Answer:
        unknown = set(query) - SEARCH_PARAMS
        if unknown:
            return Answer(400, outcome("not-supported", f"unknown search parameters {sorted(unknown)}"))
        count = min(int(query.get("_count", ["50"])[0]), 500)
        with self.lock:
            matches = [r for r in self.resources[kind].values() if _matches(r, query)]
            sort = query.get("_sort", [""])[0]
            if sort in ("_lastUpdated", "-_lastUpdated"):
                matches.sort(key=lambda r: r["meta"]["lastUpdated"], reverse=sort.startswith("-"))
            elif sort:
                return Answer(400, outcome("not-supported", f"_sort {sort}"))
            elements = [e for v in query.get("_elements", []) for e in v.split(",") if e]
            if elements:
                matches = [_subset(r, elements) for r in matches]
            now = self.now()
            if query.get("_summary") == ["count"]:
                return Answer(
                    200,
                    {
                        "resourceType": "Bundle",
                        "meta": {"lastUpdated": now},
                        "type": "searchset",
                        "total": len(matches),
                    },
                )
            include = query.get("_include") == [f"{kind}:subject"]
            search = Search(kind, copy.deepcopy(matches), count, include, now)
            search_id = secrets.token_hex(8)
            self.searches[search_id] = search
            return Answer(200, self._page(search_id, 0))

    def page(self, page_token: str, headers: Headers) -> Answer:
        with self.lock:
            found = self.pages.get(page_token)
            if found is None:
                return Answer(410, outcome("not-found", "this page has expired"))
            denied = self.authorize(headers, self.searches[found[0]].resource_type, "read")
            return denied or Answer(200, self._page(*found))

    def _page(self, search_id: str, offset: int) -> dict[str, Any]:
        search = self.searches[search_id]
        shown = search.matches[offset : offset + search.count]
        entries = [self._entry(r, "match") for r in shown]
        if search.include and self.include_supported:
            seen: set[str] = set()
            for resource in shown:
                reference = (resource.get("subject") or {}).get("reference", "")
                patient = self.resources["Patient"].get(reference.removeprefix("Patient/"))
                if patient and reference not in seen:
                    seen.add(reference)
                    entries.append(self._entry(copy.deepcopy(patient), "include"))
        links = [{"relation": "self", "url": f"{self.base_url}/{search.resource_type}"}]
        if offset + search.count < len(search.matches):
            page_token = secrets.token_urlsafe(12)
            self.pages[page_token] = (search_id, offset + search.count)
            links.append(
                {"relation": "next", "url": f"{self.next_origin or self.origin}/fhir/_page?token={page_token}"}
            )
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": search_id,
            "meta": {"lastUpdated": search.time},
            "type": "searchset",
            "total": len(search.matches),
            "link": links,
        }
        if entries:
            bundle["entry"] = entries
        return bundle

    def _entry(self, resource: dict[str, Any], mode: str) -> dict[str, Any]:
        full_url = f"{self.base_url}/{resource['resourceType']}/{resource['id']}"
        return {"fullUrl": full_url, "resource": resource, "search": {"mode": mode}}

    def conditional_update(self, kind: str, query: dict[str, list[str]], body: bytes) -> Answer:
        if kind not in ("CarePlan", "Task") or list(query) != ["identifier"]:
            return Answer(405, outcome("not-supported", f"conditional update of {kind} by identifier only"))
        system, value = _token(query["identifier"][0])
        try:
            resource = json.loads(body)
            valid({**resource, "id": resource.get("id") or "pending"})  # a conditional update needs no id
        except Exception as exc:  # any failure is the client's: say what it was
            return Answer(422, outcome("invalid", f"not a valid R4 {kind}: {exc}"[:2000]))
        if resource.get("resourceType") != kind:
            return Answer(400, outcome("invalid", f"the body is a {resource.get('resourceType')}, not a {kind}"))
        if {"system": system, "value": value} not in resource.get("identifier", []):
            return Answer(400, outcome("invalid", "the resource lacks the identifier of the condition"))
        subject = (resource.get("subject") or resource.get("for") or {}).get("reference", "")
        if subject and subject.removeprefix("Patient/") not in self.resources["Patient"]:
            return Answer(422, outcome("invalid", f"{subject} does not exist"))
        with self.lock:
            self.pushed.append(copy.deepcopy(resource))
            store = self.resources[kind]
            found = [r for r in store.values() if {"system": system, "value": value} in r.get("identifier", [])]
            if len(found) > 1:
                return Answer(412, outcome("multiple-matches", "several resources match"))
            status = 200 if found else 201
            resource_id = found[0]["id"] if found else f"{kind.lower()}-{self.next_id}"
            self.next_id += 0 if found else 1
            version = int(found[0]["meta"]["versionId"]) + 1 if found else 1
            resource["id"] = resource_id
            resource["meta"] = {"versionId": str(version), "lastUpdated": self.now()}
            store[resource_id] = resource
        location = f"{self.base_url}/{kind}/{resource_id}/_history/{version}"
        return Answer(status, copy.deepcopy(resource), {"Location": location})

    def capability(self) -> dict[str, Any]:
        oauth = {
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": self.token_url}],
        }
        searches = [{"name": n, "type": t} for n, t in (("_lastUpdated", "date"), ("identifier", "token"))]
        resources = [
            {"type": kind, "interaction": [{"code": "read"}, {"code": "search-type"}], "searchParam": searches}
            for kind in ("Patient", "Encounter", "Condition", "Observation")
        ] + [
            {"type": kind, "interaction": [{"code": "update"}], "conditionalUpdate": True}
            for kind in ("CarePlan", "Task")
        ]
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "software": {"name": "carehub test FHIR server"},
            "implementation": {"description": "ehr_fhir tests", "url": self.base_url},
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "extension": [oauth],
                        "service": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                        "code": "SMART-on-FHIR",
                                    }
                                ]
                            }
                        ],
                    },
                    "resource": resources,
                }
            ],
        }


def _handler(server: FhirServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body in one write, sent at once (two small writes wait for a delayed ACK on keep-alive).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answer = server.handle(method, self.path, self.headers, body)
            payload = json.dumps(answer.body).encode() if answer.body is not None else b""
            self.send_response(answer.status)
            kind = "application/json" if self.path.startswith("/auth/") else "application/fhir+json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


# -- search helpers ----------------------------------------------------------------------------------------------


def _token(raw: str) -> tuple[str, str]:
    """``system|value`` with FHIR's backslash escapes undone."""
    system, value, escaped, current = None, "", False, ""
    for char in raw:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == "|" and system is None:
            system, current = current, ""
        else:
            current += char
    value = current
    return (system or "", value)


def _split_or(raw: str) -> Iterator[str]:
    """A search value's comma-separated alternatives (an escaped comma is part of a value)."""
    current, escaped = "", False
    for char in raw:
        if escaped:
            current, escaped = current + "\\" + char, False
        elif char == "\\":
            escaped = True
        elif char == ",":
            yield current
            current = ""
        else:
            current += char
    yield current


def _matches(resource: dict[str, Any], query: dict[str, list[str]]) -> bool:
    updated = datetime.fromisoformat(resource["meta"]["lastUpdated"])
    for raw in query.get("_lastUpdated", []):
        prefix, moment = (raw[:2], raw[2:]) if raw[:2] in ("gt", "ge", "lt", "le", "eq") else ("eq", raw)
        bound = datetime.fromisoformat(moment)
        ok = {"gt": updated > bound, "ge": updated >= bound, "lt": updated < bound, "le": updated <= bound}
        if not ok.get(prefix, updated == bound):
            return False
    for raw in query.get("identifier", []):
        wanted = [_token(alternative) for alternative in _split_or(raw)]
        held = [(i.get("system", ""), i.get("value")) for i in resource.get("identifier", [])]
        if not any(w in held for w in wanted):
            return False
    return True


def _subset(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    kept = {k: v for k, v in resource.items() if k in ("resourceType", "id", "meta", *elements)}
    subsetted = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
    kept["meta"] = {**kept["meta"], "tag": [subsetted]}
    return kept


# -- the seed ----------------------------------------------------------------------------------------------------

GIVEN = (
    "Ana Bruno Chen Dara Elif Farah Gustavo Hana Ivan Jada Kofi Lena Mateo Nia Omar Priya Quinn Rosa Sami Tariq "
    "Uma Victor Wen Ximena Yusuf Zoe Amara Bao Cyrus Dalia".split()
)
FAMILY = (
    "Souza Okafor Nguyen Haddad Yilmaz Rahman Pereira Sato Petrov Brooks Mensah Fischer Rojas Adeyemi Khalil "
    "Iyer Walsh Moreno Laine Aziz Das Lindqvist Zhou Cruz Demir Novak Eze Tran Farahani Levi".split()
)
LANGUAGES = ("en", "es", "vi", "ar", "pt")
PATIENT_COUNT = 30  # p30 has no identifiers


def _meta(index: int) -> dict[str, str]:
    return {"versionId": "1", "lastUpdated": instant(T0 + timedelta(minutes=index))}


def _patient(i: int) -> dict[str, Any]:
    given, family = GIVEN[i - 1], FAMILY[i - 1]
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": f"p{i}",
        "meta": _meta(i),
        "identifier": [
            {"use": "official", "system": ENTERPRISE_SYSTEM, "value": f"E{700000 + i}"},
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                "system": MRN_SYSTEM,
                "value": f"MRN{1000 + i}",
            },
            {"use": "old", "system": MRN_SYSTEM, "value": f"OLD{i}"},
            {"value": f"CHART-{i}"},  # no system: not usable for matching
        ],
        "active": i != 29,
        "name": [
            {"use": "usual", "given": [given[:3]]},
            {"use": "official", "family": family, "given": [given, "Maria" if i % 2 else "Jose"]},
        ],
        "telecom": [
            {"system": "phone", "value": f"+1555010{i:04d}", "use": "home"},
            {"system": "phone", "value": f"+1555020{i:04d}", "use": "mobile"},
            {"system": "email", "value": f"{given.lower()}.{family.lower()}@mail.example"},
        ],
        "gender": ("female", "male", "other", "unknown")[i % 4],
        "birthDate": f"{1940 + i}-{i % 12 + 1:02d}-{i % 27 + 1:02d}",
        "address": [
            {"use": "old", "line": ["1 Old Rd"], "city": "Elsewhere", "state": "NH", "postalCode": "03101"},
            {
                "use": "home",
                "line": [f"{i} Harbor St", "Apt 4"],
                "city": "Harbor",
                "state": "ME",
                "postalCode": "04101",
                "country": "US",
            },
        ],
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en"}]}},
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": LANGUAGES[i % 5]}]}, "preferred": True},
        ],
    }
    if i == PATIENT_COUNT:
        del patient["identifier"]
    return patient


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _encounter(
    n: int, patient: int, klass: str, status: str, start: str, end: str | None, **extra: Any
) -> dict[str, Any]:
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": f"e{n}",
        "meta": _meta(100 + n),
        "status": status,
        "class": {"system": V3_CLASS, "code": klass},
        "subject": {"reference": f"Patient/p{patient}"},
        "period": {"start": start, **({"end": end} if end else {})},
        **extra,
    }
    return encounter


def _disposition(code: str, display: str) -> dict[str, Any]:
    return {"dischargeDisposition": _concept(DISPOSITION, code, display)}


def _condition(n: int, patient: int, code: dict[str, Any], clinical: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"c{n}",
        "meta": _meta(200 + n),
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "code": code,
        "subject": {"reference": f"Patient/p{patient}"},
        **extra,
    }


def _quantity(value: float | int, unit: str, code: str | None = None) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def _range(low: float | int, high: float | int, unit: str) -> list[dict[str, Any]]:
    return [{"low": _quantity(low, unit), "high": _quantity(high, unit)}]


def _observation(
    n: int, patient: int, code: tuple[str, str], category: str = "laboratory", flag: str | None = None, **extra: Any
) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"o{n}",
        "meta": _meta(300 + n),
        "status": "final",
        "category": [_concept(OBS_CATEGORY, category, category.replace("-", " ").title())],
        "code": {
            "coding": [
                {"system": "urn:oid:1.2.3.4.local-lab", "code": f"L{n}"},
                {"system": LOINC, "code": code[0], "display": code[1]},
            ],
            "text": code[1],
        },
        "subject": {"reference": f"Patient/p{patient}"},
        "effectiveDateTime": f"2026-11-0{n % 9 + 1}T07:{n:02d}:00-05:00",
        "issued": f"2026-11-0{n % 9 + 1}T09:{n:02d}:00.000-05:00",
        **extra,
    }
    if flag:
        observation["interpretation"] = [_concept(V3_INTERP, flag, flag)]
    return observation


def seed() -> dict[str, dict[str, dict[str, Any]]]:
    """30 Patients, 9 Encounters, 6 Conditions and 12 Observations, each kind with what the plugin must map and
    what it must skip (noted beside each)."""
    heart_failure = _concept(SNOMED, "84114007", "Heart failure")
    contained_dx = {
        "resourceType": "Condition",
        "id": "dx1",
        "code": _concept(ICD10, "I50.9", "Heart failure, unspecified"),
        "subject": {"reference": "Patient/p1"},
    }
    encounters = [
        _encounter(
            1,
            1,
            "IMP",
            "finished",
            "2026-11-01T10:00:00-05:00",
            "2026-11-04T15:30:00-05:00",
            contained=[contained_dx],
            reasonCode=[heart_failure],
            diagnosis=[{"condition": {"reference": "#dx1"}, "rank": 1}],
            hospitalization=_disposition("snf", "Skilled nursing facility"),
            location=[
                {"location": {"display": "Emergency Department"}, "status": "completed"},
                {"location": {"display": "4 West, Room 12"}, "status": "completed"},
            ],
        ),
        _encounter(2, 2, "ACUTE", "in-progress", "2026-11-05T22:10:00Z", None),
        _encounter(
            3,
            3,
            "EMER",
            "finished",
            "2026-11-03T01:00:00Z",
            "2026-11-03T06:45:00Z",
            hospitalization=_disposition("home", "Home"),
        ),
        _encounter(
            4,
            4,
            "OBSENC",
            "finished",
            "2026-11-02T12:00:00Z",
            "2026-11-03T12:00:00Z",
            hospitalization=_disposition("hh", "Home health"),
        ),
        _encounter(5, 5, "AMB", "finished", "2026-11-02T09:00:00Z", "2026-11-02T09:30:00Z"),  # skipped: class
        _encounter(
            6,
            6,
            "IMP",
            "finished",
            "2026-10-20T08:00:00Z",
            "2026-10-28T11:00:00Z",
            hospitalization=_disposition("rehab", "Rehabilitation"),
        ),
        _encounter(
            7,
            7,
            "IMP",
            "finished",
            "2026-10-21T08:00:00Z",
            "2026-10-23T03:00:00Z",
            hospitalization=_disposition("exp", "Expired"),
        ),
        _encounter(8, PATIENT_COUNT, "EMER", "finished", "2026-11-01T08:00:00Z", "2026-11-01T09:00:00Z"),  # skipped
        _encounter(9, 8, "EMER", "triaged", "2026-11-06T03:00:00Z", None),
    ]
    conditions = [
        _condition(
            1,
            1,
            {
                "coding": [
                    {"system": ICD10, "code": "I50.9", "display": "Heart failure, unspecified"},
                    {"system": SNOMED, "code": "84114007", "display": "Heart failure"},
                ]
            },
            "active",
            onsetDateTime="2024-03-01",
        ),
        _condition(
            2, 2, _concept(ICD10, "E11.9", "Type 2 diabetes mellitus"), "active", onsetDateTime="2019-06-15T00:00:00Z"
        ),
        _condition(
            3,
            3,
            _concept(SNOMED, "233604007", "Pneumonia"),
            "resolved",
            onsetDateTime="2026-09-01T00:00:00Z",
            abatementDateTime="2026-09-20T00:00:00Z",
        ),
        {
            **_condition(4, 4, _concept(SNOMED, "38341003", "Hypertension"), "active"),  # skipped: entered in error
            "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]},
        },
        {
            **_condition(5, 5, _concept(ICD10, "F10.20", "Alcohol dependence"), "active"),  # skipped: labelled ETH
            "meta": {**_meta(205), "security": [{"system": V3_ACT, "code": "ETH"}]},
        },
        _condition(6, 6, _concept(SNOMED, "109838007", "Overlapping malignant neoplasm of colon"), "remission"),
    ]
    observations = [
        _observation(
            1,
            1,
            ("2823-3", "Potassium [Moles/volume] in Serum or Plasma"),
            flag="HH",
            valueQuantity=_quantity(6.8, "mmol/L"),
            referenceRange=_range(3.5, 5.1, "mmol/L"),
        ),
        _observation(
            2,
            2,
            ("2951-2", "Sodium [Moles/volume] in Serum or Plasma"),
            flag="L",
            valueQuantity=_quantity(128, "mmol/L"),
            referenceRange=_range(136, 145, "mmol/L"),
        ),
        _observation(
            3,
            3,
            ("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
            flag="N",
            valueQuantity=_quantity(95, "mg/dL"),
            referenceRange=_range(70, 99, "mg/dL"),
        ),
        _observation(
            4,
            4,
            ("718-7", "Hemoglobin [Mass/volume] in Blood"),
            flag="LL",
            valueQuantity=_quantity(5.9, "g/dL"),
            referenceRange=_range(12.0, 16.0, "g/dL"),
        ),
        _observation(
            5,
            5,
            ("10839-9", "Troponin I.cardiac [Mass/volume] in Serum or Plasma"),
            flag="N",
            valueQuantity={**_quantity(0.01, "ng/mL"), "comparator": "<"},
            referenceRange=[{"text": "<0.04 ng/mL"}],
        ),
        _observation(
            6,
            6,
            ("94500-6", "SARS-CoV-2 RNA [Presence] in Respiratory specimen by NAA"),
            flag="N",
            valueCodeableConcept=_concept(SNOMED, "260415000", "Not detected"),
        ),
        _observation(
            7, 7, ("8867-4", "Heart rate"), "vital-signs", valueQuantity=_quantity(88, "beats/minute", "/min")
        ),
        _observation(
            8,
            8,
            ("85354-9", "Blood pressure panel"),
            "vital-signs",
            flag="H",
            component=[
                {
                    "code": _concept(LOINC, "8480-6", "Systolic blood pressure"),
                    "valueQuantity": _quantity(142, "mm[Hg]"),
                },
                {
                    "code": _concept(LOINC, "8462-4", "Diastolic blood pressure"),
                    "valueQuantity": _quantity(91, "mm[Hg]"),
                },
            ],
        ),
        _observation(
            9,
            9,
            ("72166-2", "Tobacco smoking status"),
            "social-history",  # skipped: category
            valueCodeableConcept=_concept(SNOMED, "8517006", "Ex-smoker"),
        ),
        _observation(
            10,
            10,
            ("600-7", "Bacteria identified in Blood by Culture"),
            status="preliminary",
            valueString="No growth at 48 hours",
        ),
        _observation(
            11,
            11,
            ("6690-2", "Leukocytes [#/volume] in Blood"),
            flag="AA",
            valueQuantity=_quantity(52.3, "10*3/uL"),
            referenceRange=_range(4.5, 11.0, "10*3/uL"),
        ),
        _observation(
            12,
            12,
            ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
            flag="H",
            status="amended",
            valueQuantity=_quantity(1.90, "mg/dL"),
            referenceRange=_range(0.6, 1.2, "mg/dL"),
        ),
    ]
    patients = [_patient(i) for i in range(1, PATIENT_COUNT + 1)]
    return {
        kind: {r["id"]: r for r in items}
        for kind, items in (
            ("Patient", patients),
            ("Encounter", encounters),
            ("Condition", conditions),
            ("Observation", observations),
        )
    }
