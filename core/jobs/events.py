"""What a handler is given and what it is: the types shared by the job runtime and the domains' rules."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    tenant_id: uuid.UUID
    topic: str
    payload: dict[str, Any]
    aggregate_id: uuid.UUID | None


Handler = Callable[["AsyncSession", Event], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """``handler`` runs for every event of ``topic``; ``name`` is stable (it keys the handler's receipts)."""

    topic: str
    name: str
    handler: Handler
