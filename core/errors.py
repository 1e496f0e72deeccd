"""Domain errors; the API maps each to an RFC 9457 problem response."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: ``status`` is the HTTP status the API answers with."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, source: str = "body") -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.source = source


class NotFound(DomainError):
    """Missing, or another tenant's (the two are indistinguishable on purpose)."""

    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Forbidden(DomainError):
    """The caller's role does not allow the action; ``action`` names it for the audit log."""

    status = 403
    title = "Forbidden"

    def __init__(self, detail: str, *, action: str | None = None, resource_type: str = "") -> None:
        super().__init__(detail)
        self.action = action
        self.resource_type = resource_type


class Unauthorized(DomainError):
    status = 401
    title = "Unauthorized"


class InvalidInput(DomainError):
    """Bad input; ``problems`` lists every failing field with its message when there are several."""

    status = 422
    title = "Invalid input"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        source: str = "body",
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(detail, field=field, source=source)
        self.problems = problems or []
