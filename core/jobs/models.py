"""What the event handlers have done: one receipt per (event, handler), written with the handler's effect."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, UniqueConstraint
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
