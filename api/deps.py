"""Dependencies shared by the controllers: the request's database session, its caller, paging."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import REQUEST_SESSION
from api.hub import Hub
from core import audit
from core.principal import Principal
from core.settings import Settings

MAX_PAGE = 100
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE, description=f"page size, at most {MAX_PAGE}")]
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000, description="items to skip")]
Db = NamedDependency[AsyncSession]
Caller = NamedDependency[Principal]
Config = NamedDependency[Settings]


async def provide_session(request: Request[Any, Any, Any]) -> AsyncGenerator[AsyncSession, None]:
    """One transaction per request: committed when the handler succeeds, rolled back on any error.

    Authenticated requests reuse the session the authentication middleware began in the caller's tenant
    context. Audit events of failed accesses (e.g. a read of a missing record) are written after the rollback.
    """
    session = request.scope.get("state", {}).get(REQUEST_SESSION)
    if session is None:
        hub: Hub = request.app.state.hub
        session = hub.db()
    try:
        yield session
    except Exception:
        await session.rollback()
        await audit.flush_failures(session)
        raise
    else:
        await session.commit()
    finally:
        await session.close()


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    user = request.scope.get("user")
    assert isinstance(user, Principal), "route is not behind AuthMiddleware"
    return user


def provide_settings(state: State) -> Settings:
    hub: Hub = state.hub
    return hub.settings


DEPENDENCIES = {
    "session": Provide(provide_session),
    "principal": Provide(provide_principal, sync_to_thread=False),
    "settings": Provide(provide_settings, sync_to_thread=False),
}


def next_offset(items: list[Any], limit: int, offset: int) -> int | None:
    return offset + limit if len(items) == limit else None


class PageInfo(msgspec.Struct):
    limit: int
    offset: int
    next_offset: int | None
