"""Automatic follow-ups started by events (the first of the alert rules)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.appointments.models import Appointment
from core.db import utcnow
from core.jobs.handlers import Event, on
from core.tasks.models import Task, TaskStatusChange

NOSHOW_FOLLOW_UP_HOURS = 24


@on("appointment.noshow", "noshow-follow-up-task")
async def noshow_follow_up(session: AsyncSession, event: Event) -> None:
    """A missed appointment gets a follow-up task for the clinician who was to see the patient."""
    appointment = await session.get(Appointment, uuid.UUID(event.payload["appointment_id"]))
    if appointment is None or appointment.status != "noshow":
        return  # gone or changed since: nothing to follow up
    when = appointment.start_at.strftime("%Y-%m-%d %H:%M UTC")
    task = Task(
        id=uuid.uuid4(),
        patient_id=appointment.patient_id,
        title="Follow up on a missed appointment",
        description=(
            f"The patient did not come to the {appointment.kind.replace('_', ' ')} appointment of {when}"
            f"{': ' + appointment.reason if appointment.reason else ''}. Reach them, find out why, and rebook."
        ),
        template_code="noshow-follow-up",
        owner_id=appointment.participant_id,
        due_at=utcnow() + timedelta(hours=NOSHOW_FOLLOW_UP_HOURS),
        priority="urgent",
        status="requested",
        escalation_level=0,
    )
    session.add(task)
    session.add(TaskStatusChange(task_id=task.id, from_status=None, to_status="requested", reason="no-show"))
    audit.record(
        session,
        audit.SYSTEM,
        action="task.create",
        resource_type="Task",
        resource_id=task.id,
        patient_id=task.patient_id,
        detail={"rule": "appointment.noshow", "appointment_id": str(appointment.id)},
    )
    outbox.emit(
        session,
        "task.created",
        {"task_id": str(task.id), "patient_id": str(task.patient_id), "priority": task.priority},
        aggregate_id=task.patient_id,
    )
