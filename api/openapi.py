"""The OpenAPI document as a true contract, finished in one place from what the server really does.

Litestar documents each handler's success answer. Everything else the server sends is decided app-wide (the
authentication middleware, the rate limits, the exception handlers, msgspec's refusal of unknown fields), so
it is added here, from the route handlers' options, once for every operation:

- every error an operation can answer, as RFC 9457 ``application/problem+json`` with the ``Problem`` schema
  (FHIR operations answer ``application/fhir+json`` OperationOutcomes instead);
- ``security: []`` on public operations (sign-in, invitation acceptance, probes, FHIR metadata);
- ``additionalProperties: false`` on every request-body struct that refuses unknown fields;
- the real media type of FHIR answers and of attachment downloads (the stored file's own type);
- what the server's parsing accepts beyond the generated schema: Unix times in date-time query parameters,
  and patterns in Python's regular-expression dialect (which msgspec validates with) spelt out for ECMA 262.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.routes import HTTPRoute

from api.auth import PUBLIC
from api.errors import MEDIA_TYPE as PROBLEM
from core.fhir.common import MEDIA_TYPE as FHIR

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.handlers import HTTPRouteHandler

METHODS = ("get", "put", "post", "patch", "delete")
FIELD_ERROR = {
    "type": "object",
    "required": ["field", "message", "source"],
    "properties": {
        "field": {"type": "string", "description": "the offending field: a JSON path in the body, or a parameter"},
        "message": {"type": "string"},
        "source": {"type": "string", "enum": ["body", "query", "path", "header", "cookie"]},
    },
}
SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `errors` names each offending field.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "request_id": {"type": "string"},
            "errors": {"type": "array", "items": FIELD_ERROR},
        },
    },
    "OperationOutcome": {
        "type": "object",
        "description": "FHIR R4 OperationOutcome: one issue per offending field, or one for the request.",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code"],
                    "properties": {
                        "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                        "expression": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
}
TITLES = {
    400: "Invalid request: a parameter or the body is malformed (`errors` names the fields)",
    401: "Missing, invalid, expired or revoked credentials",
    403: "The caller's roles do not allow this",
    404: "Not found (another tenant's records are indistinguishable from absent ones)",
    409: "Conflicts with the current state or with existing data",
    413: "The request body is too large",
    422: "Well-formed but not acceptable (`errors` names the fields)",
    429: "Rate limit exceeded; retry after `Retry-After` seconds",
    500: "Server error",
    503: "The database is busy or unreachable; retry after `Retry-After` seconds",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}}
HEADERS = {401: {"WWW-Authenticate": {"schema": {"type": "string"}}}, 429: RETRY_AFTER, 503: RETRY_AFTER}


def _statuses(method: str, opt: dict[str, Any], operation: dict[str, Any]) -> list[int]:
    """The error statuses this operation can answer, from the same options the middleware reads."""
    public = bool(opt.get(PUBLIC))
    statuses = [400, 500]
    if opt.get("rate_limit_exempt"):  # the probes: no lookup, no limit, no database
        return statuses
    statuses += [404, 422, 503]
    if not public or opt.get("token_endpoint"):
        statuses.append(401)
    if not public:
        statuses.append(403)
    if method != "get":
        statuses.append(409)
    if "requestBody" in operation:
        statuses.append(413)
    if opt.get("token_endpoint") or not public:
        statuses.append(429)
    return sorted(statuses)


def _error(status: int, media_type: str) -> dict[str, Any]:
    schema = "OperationOutcome" if media_type == FHIR else "Problem"
    response: dict[str, Any] = {
        "description": TITLES[status],
        "content": {media_type: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if status in HEADERS:
        response["headers"] = HEADERS[status]
    return response


# What ``\s`` means to Python's ``re`` (which msgspec validates with) spelt out: JSON Schema patterns are
# ECMA 262, whose ``\s`` differs (no \x1c-\x1f or \x85, but \ufeff).
_SPACE = r" \t\n\r\f\v\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _ecma(pattern: str) -> str:
    r"""The pattern with Python's ``\s`` and ``\S`` written as explicit classes, so both dialects agree."""
    out, in_class, i = [], False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escape = pattern[i : i + 2]
            if escape == r"\s":
                out.append(_SPACE if in_class else f"[{_SPACE}]")
            elif escape == r"\S" and not in_class:
                out.append(f"[^{_SPACE}]")
            else:
                out.append(escape)
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        out.append(char)
        i += 1
    return "".join(out)


def _patterns(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                node[key] = _ecma(value)
            else:
                _patterns(value)
    elif isinstance(node, list):
        for value in node:
            _patterns(value)


def _handlers(app: Litestar) -> dict[tuple[str, str], HTTPRouteHandler]:
    found = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    found[(route.path_format or "/", method.lower())] = handler
    return found


# Seconds since 1970 for the years 1 to 9999, the range Python's datetime (and so msgspec) can hold.
UNIX_TIME = {"type": "number", "minimum": -62135596800, "maximum": 253402300799, "description": "Unix time"}


def _times_as_numbers(operation: dict[str, Any]) -> None:
    """A date-time query parameter also takes a number: the server reads it as Unix time."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        branches = schema.get("oneOf", [schema])
        if parameter.get("in") == "query" and any(b.get("format") == "date-time" for b in branches):
            parameter["schema"] = {**schema, "oneOf": [*branches, UNIX_TIME]}
            if "oneOf" not in schema:
                for key in ("type", "format"):
                    parameter["schema"].pop(key, None)


def _finish_operation(path: str, method: str, operation: dict[str, Any], handler: HTTPRouteHandler) -> None:
    opt = handler.opt
    _times_as_numbers(operation)
    fhir = path.startswith("/fhir")
    if opt.get(PUBLIC):
        operation["security"] = []
    responses = operation.setdefault("responses", {})
    for code, response in responses.items():
        content = response.get("content", {})
        if fhir and "application/json" in content:
            content[FHIR] = content.pop("application/json")
        if code.startswith("2") and "application/octet-stream" in content:
            # A download answers with the stored file's own media type.
            content["*/*"] = content.pop("application/octet-stream")
    responses.pop("400", None)  # Litestar's own 400 describes a body the exception handlers never send
    for status in _statuses(method, opt, operation):
        responses.setdefault(str(status), _error(status, FHIR if fhir else PROBLEM))


def _structs(annotation: Any) -> Iterator[type[msgspec.Struct]]:
    """Every msgspec struct a request body type contains, nested ones included."""
    seen: set[Any] = set()
    stack = [msgspec.inspect.type_info(annotation)]
    while stack:
        info = stack.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in seen:
                continue
            seen.add(info.cls)
            yield info.cls
            stack.extend(field.type for field in info.fields)
        else:
            for name in ("item_type", "key_type", "value_type", "types", "item_types"):
                value = getattr(info, name, None)
                if isinstance(value, tuple):
                    stack.extend(value)
                elif isinstance(value, msgspec.inspect.Type):
                    stack.append(value)


CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern")


def _body_structs(handlers: dict[tuple[str, str], HTTPRouteHandler]) -> dict[str, list[dict[str, Any]]]:
    """Class name -> msgspec's own JSON schema of each request-body struct of that name."""
    found: dict[str, list[dict[str, Any]]] = {}
    for handler in handlers.values():
        data = handler.parsed_fn_signature.parameters.get("data")
        if data is None:
            continue
        try:
            structs = list(_structs(data.annotation))
        except (TypeError, ValueError):  # not a msgspec-describable type (raw bytes, a dict of Any...)
            continue
        for struct in structs:
            schema = msgspec.json.schema(struct)
            own = schema["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
            if own not in found.setdefault(struct.__name__, []):
                found[struct.__name__].append(own)
    return found


def _refuse_as_the_server_does(component: dict[str, Any], own: dict[str, Any]) -> None:
    """Copy what Litestar leaves out of a body struct's schema: the unknown-field refusal, item constraints."""
    if own.get("additionalProperties") is False:
        component["additionalProperties"] = False
    for name, prop in component.get("properties", {}).items():
        items, own_items = prop.get("items"), own["properties"][name].get("items")
        if isinstance(items, dict) and isinstance(own_items, dict) and "$ref" not in items:
            items.update({key: own_items[key] for key in CONSTRAINTS if key in own_items and key not in items})


def finish(app: Litestar, document: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of Litestar's generated document with the app-wide behaviour described."""
    document = copy.deepcopy(document)
    handlers = _handlers(app)
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item and (path, method) in handlers:
                _finish_operation(path, method, item[method], handlers[(path, method)])
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    bodies = _body_structs(handlers)
    for key, component in schemas.items():
        # Litestar names a component after its class, prefixed by the module path when two classes share a name;
        # the same fields tell which of the classes of that name it is.
        for own in bodies.get(key, bodies.get(key.rsplit("_", 1)[-1], [])):
            if set(component.get("properties", {})) == set(own.get("properties", {})):
                _refuse_as_the_server_does(component, own)
    schemas.update(copy.deepcopy(SCHEMAS))
    _patterns(document)
    return document


class ContractJsonPlugin(JsonRenderPlugin):
    """Serves ``openapi.json`` finished by :func:`finish` (rendered once; one plugin per application)."""

    def __init__(self) -> None:
        super().__init__()
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = self.render_json(request, finish(request.app, openapi_schema))
        return self._rendered
