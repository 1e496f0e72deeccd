"""The transactional outbox: domain events written in the same transaction as the change they describe.

A relay (see the jobs issue) moves unpublished rows to the job broker after commit; until then they wait
here, so an event is never lost when the broker is down.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, UniqueConstraint
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, utcnow
from tenants.isolation import TenantOwned, append


class OutboxEvent(IdMixin, TenantOwned, Base):
    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_unpublished", "published_at", "created_at"),
        UniqueConstraint("tenant_id", "id"),
    )

    topic: Mapped[str] = mapped_column(String(100))
    # Events about the same aggregate (usually a patient) are delivered in creation order.
    aggregate_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)


def emit(session: AsyncSession, topic: str, payload: dict[str, Any], aggregate_id: uuid.UUID | None = None) -> None:
    """Write a domain event into the current transaction's outbox (a plain row: see ``tenants.isolation.append``)."""
    row = {"topic": topic, "aggregate_id": aggregate_id, "payload": payload, "created_at": utcnow()}
    append(session, OutboxEvent, row | {"published_at": None, "attempts": 0, "id": uuid.uuid4()})
