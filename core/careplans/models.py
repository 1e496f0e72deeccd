"""Care plans, goals, activities, templates and the plan's version history."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, ForeignKeyConstraint, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, IdMixin, TimestampMixin, utcnow
from tenants.isolation import TenantOwned

PLAN_STATUSES = ("draft", "active", "on-hold", "completed", "revoked")
# Where a plan may go from each status; completed and revoked plans are closed for good.
PLAN_TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "revoked"}),
    "active": frozenset({"on-hold", "completed", "revoked"}),
    "on-hold": frozenset({"active", "completed", "revoked"}),
    "completed": frozenset(),
    "revoked": frozenset(),
}
GOAL_LIFECYCLE = ("proposed", "active", "on-hold", "completed", "cancelled")
GOAL_ACHIEVEMENT = (
    "in-progress",
    "improving",
    "worsening",
    "no-change",
    "achieved",
    "sustaining",
    "not-achieved",
    "no-progress",
    "not-attainable",
)
ACTIVITY_KINDS = ("task", "appointment", "education", "referral", "other")
ACTIVITY_STATUSES = ("not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class CarePlanTemplate(IdMixin, TimestampMixin, TenantOwned, Base):
    """A tenant's template: the JSON Schema of a plan's structured section, and starting goals and activities."""

    __tablename__ = "care_plan_templates"
    __table_args__ = (UniqueConstraint("tenant_id", "id"), UniqueConstraint("tenant_id", "code"))

    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    condition: Mapped[str | None] = mapped_column(String(200))
    structured_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    goals: Mapped[list[Any]] = mapped_column(JSON, default=list)
    activities: Mapped[list[Any]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)


class CarePlan(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "care_plans"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(["tenant_id", "template_id"], ["care_plan_templates.tenant_id", "care_plan_templates.id"]),
        CheckConstraint(_in("status", PLAN_STATUSES), name="status"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    template_id: Mapped[uuid.UUID | None]
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    period_start: Mapped[date | None]
    period_end: Mapped[date | None]
    structured: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Seen by staff only, never in the patient portal.
    staff_note: Mapped[str | None] = mapped_column(Text)
    # A sensitive label that puts the record in another consent category than its type's (see core.consent).
    data_category: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(default=1)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    goals: Mapped[list[CarePlanGoal]] = relationship(
        lazy="selectin", order_by="CarePlanGoal.created_at", cascade="all, delete-orphan"
    )
    activities: Mapped[list[CarePlanActivity]] = relationship(
        lazy="selectin", order_by="CarePlanActivity.created_at", cascade="all, delete-orphan"
    )


class CarePlanGoal(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "care_plan_goals"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "plan_id"], ["care_plans.tenant_id", "care_plans.id"], ondelete="CASCADE"),
        CheckConstraint(_in("lifecycle_status", GOAL_LIFECYCLE), name="lifecycle_status"),
        CheckConstraint(_in("achievement_status", GOAL_ACHIEVEMENT), name="achievement_status"),
    )

    plan_id: Mapped[uuid.UUID] = mapped_column(index=True)
    description: Mapped[str] = mapped_column(String(500))
    measure: Mapped[str | None] = mapped_column(String(200))
    target_value: Mapped[str | None] = mapped_column(String(100))
    due_date: Mapped[date | None]
    lifecycle_status: Mapped[str] = mapped_column(String(16), default="active")
    achievement_status: Mapped[str] = mapped_column(String(16), default="in-progress")


class CarePlanActivity(IdMixin, TimestampMixin, TenantOwned, Base):
    """A planned intervention, linked to the task or appointment that carries it out."""

    __tablename__ = "care_plan_activities"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "plan_id"], ["care_plans.tenant_id", "care_plans.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["tenant_id", "task_id"], ["tasks.tenant_id", "tasks.id"]),
        ForeignKeyConstraint(["tenant_id", "appointment_id"], ["appointments.tenant_id", "appointments.id"]),
        CheckConstraint(_in("kind", ACTIVITY_KINDS), name="kind"),
        CheckConstraint(_in("status", ACTIVITY_STATUSES), name="status"),
    )

    plan_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="not-started")
    task_id: Mapped[uuid.UUID | None]
    appointment_id: Mapped[uuid.UUID | None]


class CarePlanVersion(IdMixin, TenantOwned, Base):
    """The plan as it stood after each change (version 1 is the plan as created)."""

    __tablename__ = "care_plan_versions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "plan_id", "version"),
        ForeignKeyConstraint(["tenant_id", "plan_id"], ["care_plans.tenant_id", "care_plans.id"], ondelete="CASCADE"),
    )

    plan_id: Mapped[uuid.UUID] = mapped_column(index=True)
    version: Mapped[int]
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    changes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    changed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
