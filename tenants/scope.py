"""Where a network administrator's request acts network-wide: the service opens the view, nothing else does.

A network administrator's request runs with no tenant context, so that any statement on tenant-owned data fails
closed (:class:`tenants.context.NoTenantContext`) unless the service it calls says, with :func:`network_wide`,
that this part legitimately spans every tenant (listing tenants, writing a network setting into each tenant's
audit log, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from tenants.context import NoTenantContext, get_tenant_id, network_scope

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@asynccontextmanager
async def network_wide(session: AsyncSession, reason: str) -> AsyncIterator[AsyncSession]:
    """Run the block in :func:`~tenants.context.network_scope` on the request's own session.

    The session's transaction begins inside the scope (the principal dependency ends the read of a network
    caller), so that on PostgreSQL row-level security is set for the network view for the whole transaction;
    and what the block wrote is flushed before the scope closes, since the request's commit runs after it.

    Raises:
        NoTenantContext: the caller acts in a tenant, or the session's transaction began outside the scope
            (its row-level security was set for something else).
    """
    if get_tenant_id() is not None:
        raise NoTenantContext("a network-wide view is for network administrators, who act in no tenant")
    if session.in_transaction():
        raise NoTenantContext("a network-wide view needs a transaction begun inside its network_scope")
    with network_scope(reason):
        yield session
        await session.flush()
