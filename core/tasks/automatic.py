"""Tasks that rules create, not people: written like a person's, with the system as their author."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import audit, outbox
from core.tasks.models import TaskStatusChange

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.tasks.models import Task


def add_task(session: AsyncSession, task: Task, reason: str, detail: dict[str, str]) -> None:
    """A task a rule creates: with its first status, its audit event (by the system) and its own event."""
    session.add(task)
    session.add(TaskStatusChange(task_id=task.id, from_status=None, to_status="requested", reason=reason))
    audit.record(
        session,
        audit.SYSTEM,
        action="task.create",
        resource_type="Task",
        resource_id=task.id,
        patient_id=task.patient_id,
        detail=detail,
    )
    outbox.emit(
        session,
        "task.created",
        {"task_id": str(task.id), "patient_id": str(task.patient_id), "priority": task.priority},
        aggregate_id=task.patient_id,
    )
