"""Tasks, their comments and their status history."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin, utcnow
from tenants.isolation import TenantOwned

TASK_STATUSES = ("requested", "accepted", "in_progress", "completed", "cancelled", "failed")
# The workflow: anything else is refused with 409.
TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    "requested": frozenset({"accepted", "cancelled"}),
    "accepted": frozenset({"in_progress", "cancelled", "failed"}),
    "in_progress": frozenset({"completed", "cancelled", "failed"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
    "failed": frozenset(),
}
OPEN_STATUSES = ("requested", "accepted", "in_progress")
# FHIR request priority codes, most pressing last.
PRIORITIES = ("routine", "urgent", "asap", "stat")


class Task(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(["tenant_id", "care_plan_id"], ["care_plans.tenant_id", "care_plans.id"]),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in TASK_STATUSES)})", name="status"),
        CheckConstraint(f"priority IN ({', '.join(repr(p) for p in PRIORITIES)})", name="priority"),
        CheckConstraint("escalation_level >= 0", name="escalation_level"),
        Index("ix_tasks_queue", "tenant_id", "status", "due_at"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(index=True)
    care_plan_id: Mapped[uuid.UUID | None]
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    template_code: Mapped[str | None] = mapped_column(String(64))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    # A task for the patient to do (shown in the portal), such as "check your blood sugar daily".
    for_patient: Mapped[bool] = mapped_column(default=False)
    due_at: Mapped[datetime | None]
    priority: Mapped[str] = mapped_column(String(8), default="routine")
    status: Mapped[str] = mapped_column(String(16), default="requested")
    status_reason: Mapped[str | None] = mapped_column(String(500))
    escalation_level: Mapped[int] = mapped_column(default=0)
    # A sensitive label that puts the record in another consent category than its type's (see core.consent).
    data_category: Mapped[str | None] = mapped_column(String(32))
    completed_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class TaskComment(IdMixin, TenantOwned, Base):
    __tablename__ = "task_comments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "task_id"], ["tasks.tenant_id", "tasks.id"], ondelete="CASCADE"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(index=True)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaskStatusChange(IdMixin, TenantOwned, Base):
    """Each move of a task through its workflow, with who made it and why."""

    __tablename__ = "task_status_changes"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "task_id"], ["tasks.tenant_id", "tasks.id"], ondelete="CASCADE"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500))
    changed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
