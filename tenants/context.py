"""The tenant context: which tenant the current request or job acts in.

Set once per request by the API's authentication middleware and once per job by the worker. Code that
reads tenant-owned data without a context fails loudly (:class:`NoTenantContext`); it never falls back
to "all tenants".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from uuid import UUID

_tenant: ContextVar[UUID | None] = ContextVar("carehub_tenant", default=None)
_network_scope: ContextVar[str | None] = ContextVar("carehub_network_scope", default=None)


class NoTenantContext(RuntimeError):
    """A tenant-owned model was queried with no tenant context set."""


def current_tenant_id() -> UUID:
    """The tenant of the current request or job.

    Raises:
        NoTenantContext: when none is set.
    """
    tenant_id = _tenant.get()
    if tenant_id is None:
        raise NoTenantContext("no tenant context: tenant-owned data cannot be read or written")
    return tenant_id


def get_tenant_id() -> UUID | None:
    """The tenant of the current context, or ``None``."""
    return _tenant.get()


def network_scope_reason() -> str | None:
    """Why the current code runs network-wide (see :func:`network_scope`), or ``None``."""
    return _network_scope.get()


@contextmanager
def tenant_context(tenant_id: UUID) -> Iterator[UUID]:
    """Act in ``tenant_id`` inside the block, restoring the previous context afterwards."""
    if not isinstance(tenant_id, UUID):
        raise TypeError("tenant_id must be a UUID")
    token = _tenant.set(tenant_id)
    try:
        yield tenant_id
    finally:
        _tenant.reset(token)


@contextmanager
def network_scope(reason: str) -> Iterator[None]:
    """The one way around tenant isolation, for views where a network administrator acts network-wide.

    Inside the block the ORM tenant filter is not applied and, on PostgreSQL, the row-level security
    policies admit every tenant's rows. Use it only in code reached by the ``network_admin`` role;
    ``reason`` names the view so that every use can be found and reviewed.
    """
    if not reason:
        raise ValueError("network_scope needs a reason")
    token = _network_scope.set(reason)
    try:
        yield
    finally:
        _network_scope.reset(token)
