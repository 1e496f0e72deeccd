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


class PartlyDone(Exception):
    """A handler's failure after part of its work took effect outside carehub (an EHR accepted a push, another did
    not). The attempt rolls back as for any failure; then :attr:`keep` runs in the transaction that counts the
    failure on the job's delivery, so that what was done (and what failed) is kept for the retry and for the
    tenant's admins."""

    def __init__(self, message: str, keep: Callable[[AsyncSession], Awaitable[None]]) -> None:
        super().__init__(message)
        self.keep = keep


@dataclass(frozen=True)
class Subscription:
    """``handler`` runs for every event of ``topic``; ``name`` is stable (it keys the handler's receipts)."""

    topic: str
    name: str
    handler: Handler
