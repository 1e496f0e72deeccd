"""Appointments: scheduled contacts with a patient."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin
from tenants.isolation import TenantOwned

APPOINTMENT_STATUSES = ("proposed", "booked", "arrived", "fulfilled", "cancelled", "noshow")
APPOINTMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    "proposed": frozenset({"booked", "cancelled"}),
    "booked": frozenset({"arrived", "cancelled", "noshow"}),
    "arrived": frozenset({"fulfilled"}),
    "fulfilled": frozenset(),
    "cancelled": frozenset(),
    "noshow": frozenset(),
}
APPOINTMENT_KINDS = ("in_person", "phone", "video")


class Appointment(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in APPOINTMENT_STATUSES)})", name="status"),
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in APPOINTMENT_KINDS)})", name="kind"),
        CheckConstraint("end_at > start_at", name="period"),
        Index("ix_appointments_schedule", "tenant_id", "start_at"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    location: Mapped[str | None] = mapped_column(String(300))
    video_link: Mapped[str | None] = mapped_column(String(500))
    reason: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="booked")
    status_reason: Mapped[str | None] = mapped_column(String(500))
    # {"channels": ["sms", "email"], "offsets_hours": [72, 24]}; no channels means no reminders.
    reminder: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    noshow_recorded_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Staff-only remarks, never shown in the patient portal.
    staff_note: Mapped[str | None] = mapped_column(Text)
    # A sensitive label that puts the record in another consent category than its type's (see core.consent).
    data_category: Mapped[str | None] = mapped_column(String(32))
