"""What the event handlers have done: one receipt per (event, handler), written with the handler's effect."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, utcnow
from tenants.isolation import TenantOwned


class JobReceipt(IdMixin, TenantOwned, Base):
    """A handler's effect for one event is committed together with this row: a redelivered message finds it and
    does nothing (the event id is the idempotency key)."""

    __tablename__ = "job_receipts"
    __table_args__ = (UniqueConstraint("tenant_id", "event_id", "handler"),)

    event_id: Mapped[uuid.UUID]
    handler: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetter(IdMixin, TenantOwned, Base):
    """A job that failed for good (after its retries): kept for a tenant administrator to inspect and replay."""

    __tablename__ = "job_dead_letters"
    __table_args__ = (UniqueConstraint("tenant_id", "id"),)

    event_id: Mapped[uuid.UUID] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(String(100))
    handler: Mapped[str] = mapped_column(String(100))
    message: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str] = mapped_column(Text)
    retries: Mapped[int] = mapped_column(default=0)
    failed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A replay is asked for through the API and carried out by the relay (which holds the broker).
    replay_requested_at: Mapped[datetime | None]
    replay_requested_by: Mapped[uuid.UUID | None]
    replayed_at: Mapped[datetime | None]
