"""An alert in one staff member's inbox."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin
from tenants.isolation import TenantOwned

ALERT_STATES = ("open", "acknowledged", "resolved")


class Alert(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        # One alert per recipient for each event and kind: a rule run twice raises it once.
        UniqueConstraint("tenant_id", "user_id", "source_event_id", "kind"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint("state IN ('open', 'acknowledged', 'resolved')", name="state"),
        Index("ix_alerts_inbox", "tenant_id", "user_id", "state", "created_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(16), default="info")
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="open")
    source_event_id: Mapped[uuid.UUID]
    task_id: Mapped[uuid.UUID | None]
    # What the alert is about, when not a task (e.g. "LabResult" and its id): settling that settles the alert.
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    acknowledged_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
