"""Care teams and their members (users of the tenant, or outside people who are not users)."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, IdMixin, TimestampMixin
from tenants.isolation import TenantOwned

TEAM_ROLES = (
    "primary_care",
    "specialist",
    "care_manager",
    "nurse",
    "chw",
    "social_worker",
    "pharmacist",
    "caregiver",
    "other",
)
TEAM_STATUSES = ("active", "inactive")


class CareTeam(IdMixin, TimestampMixin, TenantOwned, Base):
    """The one care team of a patient within a tenant."""

    __tablename__ = "care_teams"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "patient_id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        CheckConstraint("status IN ('active', 'inactive')", name="status"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")

    members: Mapped[list[CareTeamMember]] = relationship(
        back_populates="team", lazy="selectin", order_by="CareTeamMember.created_at", cascade="all, delete-orphan"
    )


class CareTeamMember(IdMixin, TimestampMixin, TenantOwned, Base):
    """A team member: a user of the tenant (``user_id``) or an outside person (``name``, organisation, contact)."""

    __tablename__ = "care_team_members"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "team_id", "user_id"),
        ForeignKeyConstraint(["tenant_id", "team_id"], ["care_teams.tenant_id", "care_teams.id"], ondelete="CASCADE"),
        CheckConstraint("user_id IS NOT NULL OR name IS NOT NULL", name="user_or_name"),
    )

    team_id: Mapped[uuid.UUID] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    organisation: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(32))
    is_lead: Mapped[bool] = mapped_column(default=False)

    team: Mapped[CareTeam] = relationship(back_populates="members")
