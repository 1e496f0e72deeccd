"""Event handlers by topic. A handler runs in the event's tenant, in one transaction with its receipt."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    tenant_id: uuid.UUID
    topic: str
    payload: dict[str, Any]
    aggregate_id: uuid.UUID | None


Handler = Callable[[AsyncSession, Event], Awaitable[None]]
# topic -> {handler name: handler}; names are stable (they key the receipts).
HANDLERS: dict[str, dict[str, Handler]] = {}


def on(topic: str, name: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the handler ``name`` of ``topic``."""

    def register(fn: Handler) -> Handler:
        named = HANDLERS.setdefault(topic, {})
        if name in named:
            raise ValueError(f"handler {name} registered twice for {topic}")
        named[name] = fn
        return fn

    return register


def handlers_for(topic: str) -> list[str]:
    return sorted(HANDLERS.get(topic, {}))


def handler(topic: str, name: str) -> Handler:
    return HANDLERS[topic][name]
