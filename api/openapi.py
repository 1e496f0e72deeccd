"""The OpenAPI document as the server behaves: one post-processing of what Litestar generates.

Litestar documents the success response and a generic 400 per route. The server also answers every error as
RFC 9457 ``application/problem+json`` (FHIR routes: an ``OperationOutcome``), serves some routes without a
token, and refuses unknown fields where the struct says so. This module writes those facts into the served
document once, for every operation, instead of route by route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar.openapi.plugins import JsonRenderPlugin

from api.auth import PUBLIC
from api.errors import MEDIA_TYPE

if TYPE_CHECKING:
    from litestar import Litestar, Request

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; errors[] names each offending field.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message", "source"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "source": {"type": "string"},
                },
            },
        },
    },
}
OPERATION_OUTCOME: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}},
}
# Every status an error can take anywhere (see api/errors.py and core/errors.py), with what it means.
ERRORS = {
    "400": "Malformed request: a value, the JSON shape or a limit (field named in errors[])",
    "401": "No, or an invalid, bearer token",
    "403": "The caller's role does not allow this",
    "404": "Not found (or another tenant's: the two are indistinguishable)",
    "405": "Method not allowed",
    "409": "Conflicts with the current state or existing data",
    "413": "Request body too large",
    "415": "Unsupported media type",
    "422": "Well-formed but not acceptable (field named in errors[])",
    "429": "Rate limit exceeded; see Retry-After",
    "503": "The database is busy or unreachable; retry shortly",
}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _forbidding_structs() -> set[str]:
    """Names of the msgspec structs that refuse unknown fields (the components Litestar names after them)."""
    names: set[str] = set()
    pending = list(msgspec.Struct.__subclasses__())
    while pending:
        struct = pending.pop()
        pending.extend(struct.__subclasses__())
        if struct.__struct_config__.forbid_unknown_fields:
            names.add(struct.__name__)
    return names


def _public_operations(app: Litestar) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.opt.get(PUBLIC) or handler.opt.get("token_endpoint"):
                found.update((method.lower(), route.path) for method in handler.http_methods)
    return found


def _error_response(path: str, description: str) -> dict[str, Any]:
    if path.startswith("/fhir"):
        return {"description": description, "content": {"application/fhir+json": {"schema": OPERATION_OUTCOME}}}
    return {"description": description, "content": {MEDIA_TYPE: {"schema": PROBLEM_REF}}}


def make_contract(document: dict[str, Any], app: Litestar) -> dict[str, Any]:
    """Rewrite the generated document in place: error responses, public operations, closed request bodies."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name in _forbidding_structs() & set(schemas):
        if schemas[name].get("type") == "object":
            schemas[name]["additionalProperties"] = False
    public = _public_operations(app)
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if path.startswith("/fhir"):  # FHIR answers are FHIR JSON, whatever Litestar inferred
                for response in responses.values():
                    content = response.get("content", {})
                    if "application/json" in content:
                        content["application/fhir+json"] = content.pop("application/json")
            for status, description in ERRORS.items():
                responses[status] = _error_response(path, description)
            if (method, path) in public:
                operation["security"] = []
    return document


class ContractJsonRenderPlugin(JsonRenderPlugin):
    """Serves ``/schema/openapi.json`` after :func:`make_contract` (applied once per generated document)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._done: int | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._done != id(openapi_schema):
            make_contract(openapi_schema, request.app)
            self._done = id(openapi_schema)
        return super().render(request, openapi_schema)
