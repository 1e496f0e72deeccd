"""Dependencies shared by the controllers: the request's database session, its caller, paging."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import CLAIMS
from api.errors import lost_connection
from api.hub import Hub
from api.tokens import Claims
from core import audit
from core.errors import Forbidden, Unauthorized
from core.portal.accounts import require_active_record
from core.principal import Principal
from core.settings import Settings
from tenants import accounts

MAX_PAGE = 100
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description=f"page size, at most {MAX_PAGE}")]
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000, description="items to skip")]
Db = NamedDependency[AsyncSession]
Caller = NamedDependency[Principal]
Config = NamedDependency[Settings]


async def provide_session(request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    """One session and transaction per request, begun in the caller's tenant context (set by the
    authentication middleware): committed when the handler succeeds, rolled back on any error.

    After a rollback, the audit events of refused or failed accesses are written in a fresh transaction.
    """
    hub: Hub = request.app.state.hub
    session = hub.db()
    try:
        yield session
    except Exception as exc:
        await session.rollback()
        principal = request.scope.get("user")
        if isinstance(exc, Forbidden) and exc.action and isinstance(principal, Principal) and principal.tenant_id:
            audit.record_failure(
                session,
                principal.actor,
                action=exc.action,
                resource_type=exc.resource_type,
                outcome="denied",
                reason=exc.detail,
            )
        await audit.flush_failures(session)
        raise
    else:
        await session.commit()
    finally:
        await session.close()


async def provide_principal(request: Request[Any, Any, Any], session: Db) -> Principal:
    """The caller, re-read in the request's transaction: revocation, removal and suspension act at once."""
    claims = request.scope.get("state", {}).get(CLAIMS)
    if not isinstance(claims, Claims):
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    hub: Hub = request.app.state.hub
    assert hub.authorizer is not None
    for attempt in (1, 2):
        try:
            caller = await accounts.resolve(
                session, claims.user_id, claims.tenant_id, claims.token_version, claims.issued_at
            )
            break
        except Exception as exc:
            if attempt == 2 or not lost_connection(exc):
                raise
            # The request's first statement found its pooled connection dead although it looked alive (the
            # server ended it an instant before; no round trip checks a connection at checkout): nothing of the
            # request has run, so it runs again on a new connection.
            await session.invalidate()
    if caller.patient_id is not None:
        await require_active_record(session, caller.patient_id)
    if caller.tenant_id is None:
        # A network administrator acts in no tenant: the read of the caller ends here, so that a service that needs
        # a network-wide view begins the request's transaction inside it (see tenants.scope.network_wide).
        await session.commit()
    principal = Principal(
        user_id=caller.user_id,
        email=caller.email,
        full_name=caller.full_name,
        tenant_id=caller.tenant_id,
        roles=caller.roles,
        authorizer=hub.authorizer,
        tenant_status=caller.tenant_status,
        patient_id=caller.patient_id,
    )
    request.scope["user"] = principal
    return principal


def cross_tenant_sessions(request: Request[Any, Any, Any]) -> async_sessionmaker[AsyncSession]:
    """Sessions for reading and writing in other tenants' contexts (the hub's second pool; see Hub)."""
    hub: Hub = request.app.state.hub
    return hub.cross_tenant_db or hub.db


def provide_settings(state: State) -> Settings:
    hub: Hub = state.hub
    return hub.settings


DEPENDENCIES = {
    "session": Provide(provide_session),
    "principal": Provide(provide_principal),
    "settings": Provide(provide_settings, sync_to_thread=False),
}


Item = TypeVar("Item")


def next_offset(items: list[Any], limit: int, offset: int) -> int | None:
    return offset + limit if len(items) == limit else None


class PageInfo(msgspec.Struct):
    limit: int
    offset: int
    next_offset: int | None


class Page(msgspec.Struct, Generic[Item]):
    """One page of a listing: its items and where the next page starts (``next_offset`` is null on the last)."""

    items: list[Item]
    page: PageInfo


def page_of(items: list[Item], limit: int, offset: int) -> Page[Item]:
    return Page(items=items, page=PageInfo(limit, offset, next_offset(items, limit, offset)))
