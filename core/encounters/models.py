"""A hospital encounter of a patient: admitted, then discharged (recorded by staff or, later, an ADT feed)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, ForeignKeyConstraint, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin
from tenants.isolation import TenantOwned

ENCOUNTER_KINDS = ("inpatient", "emergency", "observation")
DISPOSITIONS = ("home", "home_health", "skilled_nursing", "rehabilitation", "hospice", "other")


class Encounter(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "encounters"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "source", "external_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint("kind IN ('inpatient', 'emergency', 'observation')", name="kind"),
        CheckConstraint("discharged_at IS NULL OR discharged_at >= admitted_at", name="discharge_after_admission"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))
    admitted_at: Mapped[datetime]
    discharged_at: Mapped[datetime | None]
    disposition: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    # A sensitive label (behavioral health, substance use disorder) decides which consent the stay needs.
    data_category: Mapped[str | None] = mapped_column(String(32))
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # planned, in-progress, finished (a recorded discharge), cancelled (an admission entered in error)
    status: Mapped[str] = mapped_column(String(16), default="finished", server_default="finished")
    location: Mapped[str | None] = mapped_column(String(200))
    diagnoses: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    # From an EHR feed: the plugin that reported it and its id there (both empty when staff recorded it).
    source: Mapped[str | None] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(200))
