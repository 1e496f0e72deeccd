"""Lab results in a patient's record, and education items assigned to a patient."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin
from tenants.isolation import TenantOwned

INTERPRETATIONS = ("normal", "abnormal", "critical")
RESULT_STATUSES = ("preliminary", "final", "corrected", "cancelled")


class LabResult(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "lab_results"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "source", "external_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint(f"interpretation IN ({', '.join(repr(i) for i in INTERPRETATIONS)})", name="interpretation"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in RESULT_STATUSES)})", name="status"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    code: Mapped[str] = mapped_column(String(32))  # LOINC
    display: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(100))
    unit: Mapped[str | None] = mapped_column(String(32))
    reference_range: Mapped[str | None] = mapped_column(String(100))
    interpretation: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(16), default="final")
    effective_at: Mapped[datetime]
    ordered_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Shown in the patient portal once released.
    released_to_patient: Mapped[bool] = mapped_column(default=False)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Critical results not acknowledged in time escalate (see the alert settings); the level reached.
    escalation_level: Mapped[int] = mapped_column(default=0)
    # A sensitive label that puts the record in another consent category than its type's (see core.consent).
    data_category: Mapped[str | None] = mapped_column(String(32))
    # The sender's finer flag (low, high, critical_low, critical_high ...) behind ``interpretation``.
    flag: Mapped[str | None] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16), default="laboratory", server_default="laboratory")
    # From an EHR feed: the plugin that reported it and its id there (both empty when staff entered it).
    source: Mapped[str | None] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(200))


class EducationItem(IdMixin, TimestampMixin, TenantOwned, Base):
    """Reading material assigned to a patient; the patient marks it read in the portal."""

    __tablename__ = "education_items"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(500))
    assigned_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    read_at: Mapped[datetime | None]
