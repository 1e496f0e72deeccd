"""A request id on every response (``X-Request-ID``) and in every problem body and log line about it.

A caller-supplied id (letters, digits, ``.``, ``_``, ``-``; up to 64) is kept, so that a gateway's id
follows the request through; otherwise one is made.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from litestar.datastructures import Headers, MutableScopeHeaders

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
STATE_KEY = "carehub.request_id"
_VALID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
current_request_id: ContextVar[str | None] = ContextVar("carehub_request_id", default=None)


def request_id_of(scope: Any) -> str | None:
    state = scope.get("state") if isinstance(scope, dict) else None
    value = state.get(STATE_KEY) if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers.from_scope(scope).get(HEADER.lower(), "")
        request_id = given if _VALID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})[STATE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                if HEADER not in headers:
                    headers[HEADER] = request_id
            await send(message)

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
