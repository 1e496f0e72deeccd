"""A condition on a patient's problem list, as an EHR feed reported it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin
from tenants.isolation import TenantOwned


class Condition(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "conditions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "source", "external_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    code_system: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(64))
    display: Mapped[str | None] = mapped_column(String(300))
    clinical_status: Mapped[str] = mapped_column(String(16), default="active")
    onset_at: Mapped[datetime | None]
    abated_at: Mapped[datetime | None]
    # A sensitive label (behavioral health, substance use disorder) decides which consent the condition needs.
    data_category: Mapped[str | None] = mapped_column(String(32))
    # Where it came from: the plugin that reported it, and its id there.
    source: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(200))
