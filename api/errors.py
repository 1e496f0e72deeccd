"""Every error answers RFC 9457 ``application/problem+json``, naming the offending field where there is one."""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS, HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DataError, DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from api.request_id import HEADER, request_id_of
from core.errors import DomainError, InvalidInput, Unauthorized

log = logging.getLogger("carehub.api")
MEDIA_TYPE = "application/problem+json"
_MSGSPEC_PATH = re.compile(r"\s*-\s*at `\$(?P<path>[^`]*)`$")
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<name>[^`]+)`")
_REQUIRED_FIELD = re.compile(r"missing required field `(?P<name>[^`]+)`")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    request: Request[Any, Any, Any] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
        request_id = request_id_of(request.scope)
        if request_id:
            body["request_id"] = request_id
            headers = {**(headers or {}), HEADER: request_id}
    if errors:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _field_error(item: dict[str, Any]) -> dict[str, Any]:
    """Turn one of Litestar's validation items into ``{field, message, source}`` with a JSON-path-like field."""
    message = str(item.get("message", "invalid value"))
    field = str(item.get("key") or "")
    if field == "data":  # the request body itself
        field = ""
    path_match = _MSGSPEC_PATH.search(message)
    if path_match:
        message = message[: path_match.start()]
        path = path_match.group("path").lstrip(".")
        if path:
            field = path
    for pattern in (_UNKNOWN_FIELD, _REQUIRED_FIELD):
        name_match = pattern.search(message)
        if name_match:
            field = f"{field}.{name_match.group('name')}" if field and field != "body" else name_match.group("name")
    return {"field": field or "body", "message": message, "source": item.get("source", "body")}


def _public_names(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Handler parameter name -> the name the caller uses (``start_from`` -> ``from``, ``count`` -> ``_count``)."""
    try:
        parameters = request.route_handler.parsed_fn_signature.parameters
    except (AttributeError, KeyError):  # no route matched: nothing to rename
        return {}
    names = {}
    for name, parameter in parameters.items():
        alias = getattr(parameter.kwarg_definition, "name", None) or getattr(parameter.kwarg_definition, "query", None)
        if isinstance(alias, str) and alias != name:
            names[name] = alias
    return names


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors = [_field_error(item) for item in extra if isinstance(item, dict)]
    aliases = _public_names(request)
    for error in errors:
        if error["source"] != "body" and error["field"] in aliases:
            error["field"] = aliases[error["field"]]
    if not errors:
        errors = [{"field": "body", "message": str(exc.detail), "source": "body"}]
    fields = ", ".join(e["field"] for e in errors)
    return problem(400, "Invalid request", f"invalid value for: {fields}", errors=errors, request=request)


def http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationException):
        return _validation(request, exc)
    headers = dict(exc.headers or {})
    if exc.status_code == HTTP_429_TOO_MANY_REQUESTS:
        headers.setdefault("Retry-After", headers.get("RateLimit-Reset", "60"))
        return problem(429, "Too many requests", "rate limit exceeded; retry later", headers=headers, request=request)
    if exc.status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        log.error("server error on %s: %s", request.url.path, exc.detail)
        return problem(exc.status_code, "Server error", "the server could not complete the request", request=request)
    title = {
        400: "Bad request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not found",
        405: "Method not allowed",
        413: "Request body too large",
    }.get(exc.status_code, "Error")
    return problem(exc.status_code, title, str(exc.detail), headers=headers, request=request)


def domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    errors = [{"field": exc.field, "message": exc.detail, "source": exc.source}] if exc.field else None
    if isinstance(exc, InvalidInput) and exc.problems:
        errors = [{"field": field, "message": message, "source": exc.source} for field, message in exc.problems]
    headers = {"WWW-Authenticate": 'Bearer realm="carehub"'} if isinstance(exc, Unauthorized) else None
    return problem(exc.status, exc.title, exc.detail, errors=errors, headers=headers, request=request)


def integrity_error(request: Request[Any, Any, Any], exc: IntegrityError) -> Response[dict[str, Any]]:
    log.info("integrity error on %s: %s", request.url.path, exc.orig)
    return problem(
        409, "Conflict", "the change conflicts with existing data (a duplicate or a stale reference)", request=request
    )


def database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.warning("database unavailable on %s: %s", request.url.path, exc)
    return problem(
        503,
        "Service unavailable",
        "the database is busy or unreachable; retry shortly",
        headers={"Retry-After": "2"},
        request=request,
    )


def data_error(request: Request[Any, Any, Any], exc: DataError) -> Response[dict[str, Any]]:
    log.info("data error on %s: %s", request.url.path, exc.orig)
    return problem(400, "Invalid request", "a value was not accepted by the database", request=request)


# What a lost or refused database connection raises, wherever in a request it happens (a statement, the commit,
# the rollback, returning the connection to the pool): the driver's own errors reach us unwrapped from some of
# those places, and SQLAlchemy wraps others as InterfaceError or marks them as a disconnect.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # the server is shutting down or starting (CannotConnectNow)
    asyncpg.InterfaceError,
    # The protocol got the server's goodbye (an error) while idle, but the socket's end is not seen yet: the
    # next operation is refused with "another operation is in progress".
    asyncpg.exceptions.InternalClientError,
    InterfaceError,
    DisconnectionError,
    OSError,  # ConnectionError and TimeoutError among them
)


def lost_connection(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the database connection failing, not a fault of the request."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _CONNECTION_ERRORS):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
    return False


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if lost_connection(exc):
        return database_unavailable(request, exc)
    log.exception(
        "unhandled error on %s %s (request %s)",
        request.method,
        request.url.path,
        request_id_of(request.scope),
        exc_info=exc,
    )
    return problem(500, "Server error", "the server could not complete the request", request=request)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: http_exception,
    DomainError: domain_error,
    IntegrityError: integrity_error,
    DataError: data_error,
    OperationalError: database_unavailable,
    InterfaceError: database_unavailable,
    DisconnectionError: database_unavailable,
    OSError: database_unavailable,
    SQLAlchemyTimeoutError: database_unavailable,
    Exception: unexpected,
}
