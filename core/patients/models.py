"""The tenant-local patient record and its identifiers."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, IdMixin, TimestampMixin
from tenants.isolation import TenantOwned

SEXES = ("female", "male", "other", "unknown")


class Patient(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "patients"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "mrn"),
        CheckConstraint("sex IN ('female', 'male', 'other', 'unknown')", name="sex"),
    )

    mrn: Mapped[str] = mapped_column(String(64))
    given_name: Mapped[str] = mapped_column(String(100))
    family_name: Mapped[str] = mapped_column(String(100), index=True)
    birth_date: Mapped[date] = mapped_column(index=True)
    sex: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    language: Mapped[str | None] = mapped_column(String(35))
    active: Mapped[bool] = mapped_column(default=True)
    deactivated_at: Mapped[datetime | None]

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", lazy="selectin", order_by="PatientIdentifier.system"
    )


class PatientIdentifier(IdMixin, TenantOwned, Base):
    """An identifier other than the MRN (network id, insurance member id, ...)."""

    __tablename__ = "patient_identifiers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "system", "value"),
        # Through (tenant_id, patient_id): the database itself keeps an identifier in its patient's tenant.
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"], ondelete="CASCADE"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    system: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(100))

    patient: Mapped[Patient] = relationship(back_populates="identifiers")
