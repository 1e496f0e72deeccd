"""Authentication middleware: bearer JWT -> caller -> tenant context for the rest of the request."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from litestar.datastructures import Headers

from api.hub import Hub
from core.errors import Unauthorized
from core.principal import Principal
from tenants import accounts
from tenants.context import network_scope, tenant_context

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

PUBLIC = "public"
REQUEST_SESSION = "carehub.session"


def hub_of(scope: Scope) -> Hub:
    hub: Hub = scope["litestar_app"].state.hub
    return hub


class AuthMiddleware:
    """Resolves the caller of every non-public route and runs the route in the caller's tenant context.

    Network administrators' tokens carry no tenant; their requests run in ``network_scope``.
    """

    def __init__(self, app: ASGIApp, public_prefixes: tuple[str, ...] = ("/schema",)) -> None:
        self.app = app
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        if (
            scope["type"] != "http"
            or handler is None
            or handler.opt.get(PUBLIC)
            or scope["path"].startswith(self.public_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        hub = hub_of(scope)
        header = Headers.from_scope(scope).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        claims = hub.tokens.verify(token.strip())
        scope_cm: AbstractContextManager[object] = (
            tenant_context(claims.tenant_id)
            if claims.tenant_id is not None
            else network_scope("network administrator request")
        )
        with scope_cm:
            # The request's one session and transaction: begun here, in the tenant context, shared with
            # the handler through the ``session`` dependency, which commits or rolls it back.
            async with hub.db() as session:
                caller = await accounts.resolve(session, claims.user_id, claims.tenant_id, claims.token_version)
                assert hub.authorizer is not None
                principal = Principal(
                    user_id=caller.user_id,
                    email=caller.email,
                    full_name=caller.full_name,
                    tenant_id=caller.tenant_id,
                    roles=caller.roles,
                    authorizer=hub.authorizer,
                )
                hub.authorizer.sync_roles(str(principal.user_id), principal.domain, principal.roles)
                scope["user"] = principal
                scope.setdefault("state", {})[REQUEST_SESSION] = session
                await self.app(scope, receive, send)


def require_principal(scope_user: object) -> Principal:
    if not isinstance(scope_user, Principal):
        raise Unauthorized("not signed in")
    return scope_user
