"""Authentication middleware: bearer JWT -> verified claims -> tenant context for the rest of the request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.datastructures import Headers

from api.hub import Hub
from core.errors import Unauthorized
from tenants.context import tenant_context

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

PUBLIC = "public"
CLAIMS = "carehub.claims"


class AuthMiddleware:
    """Verifies the token of every non-public route and runs the route in the token's tenant context.

    Network administrators' tokens carry no tenant, and their requests run without one: a statement on
    tenant-owned data fails closed, unless the service opens a network-wide view for it
    (``tenants.scope.network_wide``). The database re-check of the caller is the ``principal`` dependency's
    (see ``api.deps``).
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
        hub: Hub = scope["litestar_app"].state.hub
        header = Headers.from_scope(scope).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        claims = hub.tokens.verify(token.strip())
        # Only the signature and claims are checked here: no database connection is held while the body
        # arrives. The caller is re-read from the database by the ``principal`` dependency, in the
        # request's transaction, after the body has been read.
        scope.setdefault("state", {})[CLAIMS] = claims
        if claims.tenant_id is None:
            await self.app(scope, receive, send)
            return
        with tenant_context(claims.tenant_id):
            await self.app(scope, receive, send)
