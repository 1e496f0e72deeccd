"""The rules started by events: follow-up tasks and alerts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox, staff
from core.alerts.models import Alert
from core.appointments.models import Appointment
from core.careplans.models import CarePlan, CarePlanVersion
from core.careteams.models import CareTeam, CareTeamMember
from core.db import utcnow
from core.jobs.handlers import Event, on
from core.jobs.models import JobReceipt
from core.outbox import OutboxEvent
from core.results.models import LabResult
from core.tasks.models import OPEN_STATUSES, Task, TaskComment, TaskStatusChange

NOSHOW_FOLLOW_UP_HOURS = 24


def _add_task(session: AsyncSession, task: Task, reason: str, detail: dict[str, str]) -> None:
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
    _add_task(session, task, "no-show", {"rule": "appointment.noshow", "appointment_id": str(appointment.id)})


async def _care_team_lead(session: AsyncSession, patient_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(
        select(CareTeamMember.user_id)
        .join(CareTeam, CareTeam.id == CareTeamMember.team_id)
        .where(CareTeam.patient_id == patient_id, CareTeamMember.is_lead.is_(True))
    )


def _alert(event: Event, user_id: uuid.UUID, **fields: Any) -> Alert:
    return Alert(id=uuid.uuid4(), user_id=user_id, source_event_id=event.id, state="open", **fields)


@on("lab_result.critical_received", "critical-result-task")
async def critical_result(session: AsyncSession, event: Event) -> None:
    """A critical lab value: a stat task and a critical alert for the ordering clinician (or the care team lead)."""
    result = await session.get(LabResult, uuid.UUID(event.payload["result_id"]))
    if result is None or result.acknowledged_at is not None:
        return  # gone, or already seen by a clinician
    candidates = [result.ordered_by] if result.ordered_by else []
    lead = await _care_team_lead(session, result.patient_id)
    if lead:
        candidates.append(lead)
    reachable = await staff.active_staff(session, [c for c in candidates if c is not None])
    if not reachable:
        return
    clinician = reachable[0]
    value = f"{result.value} {result.unit or ''}".strip()
    task = Task(
        id=uuid.uuid4(),
        patient_id=result.patient_id,
        title=f"Critical result: {result.display} {value}"[:200],
        description="Review the result and act on it now; acknowledge the result when you have.",
        template_code="critical-result",
        owner_id=clinician,
        assignee_id=clinician,
        due_at=utcnow() + timedelta(hours=1),
        priority="stat",
        status="requested",
        escalation_level=0,
    )
    _add_task(session, task, "critical result", {"rule": "lab_result.critical_received", "result_id": str(result.id)})
    session.add(
        _alert(
            event,
            clinician,
            patient_id=result.patient_id,
            kind="lab.critical",
            severity="critical",
            title=f"Critical result: {result.display} {value}"[:200],
            body=f"Reference range {result.reference_range or 'not given'}. A stat task was created.",
            task_id=task.id,
        )
    )


@on("care_plan.updated", "care-plan-change-alerts")
async def care_plan_changed(session: AsyncSession, event: Event) -> None:
    """A changed care plan: everyone on the patient's care team hears of it (but the one who changed it)."""
    plan = await session.get(CarePlan, uuid.UUID(event.payload["care_plan_id"]))
    if plan is None:
        return
    version = int(event.payload.get("version", plan.version))
    changed_by = await session.scalar(
        select(CarePlanVersion.changed_by).where(CarePlanVersion.plan_id == plan.id, CarePlanVersion.version == version)
    )
    members = await session.scalars(
        select(CareTeamMember.user_id)
        .join(CareTeam, CareTeam.id == CareTeamMember.team_id)
        .where(CareTeam.patient_id == plan.patient_id, CareTeamMember.user_id.is_not(None))
    )
    for user_id in await staff.active_staff(session, [u for u in members.all() if u is not None and u != changed_by]):
        session.add(
            _alert(
                event,
                user_id,
                patient_id=plan.patient_id,
                kind="care_plan.updated",
                severity="info",
                title=f"Care plan updated: {plan.title} (version {version})"[:200],
                body=None,
            )
        )


# Minutes after the due time at which an open task escalates: to its assignee (or owner), then to its owner,
# then to the lead of the patient's care team.
ESCALATION_DELAYS_MINUTES = (0, 60, 240)


@on("schedule.overdue_tasks", "overdue-task-escalation")
async def escalate_overdue_tasks(session: AsyncSession, event: Event) -> None:
    """Raise the escalation level of open tasks past their due time, alerting the next person at each level.

    The time is the tick's (``payload.at``), not the clock's, so a late or replayed tick decides the same way."""
    at = datetime.fromisoformat(event.payload["at"])
    overdue = await session.scalars(
        select(Task).where(Task.status.in_(OPEN_STATUSES), Task.due_at.is_not(None), Task.due_at < at)
    )
    for task in overdue.all():
        assert task.due_at is not None
        target = sum(1 for minutes in ESCALATION_DELAYS_MINUTES if at >= task.due_at + timedelta(minutes=minutes))
        if target <= task.escalation_level:
            continue
        lead = await _care_team_lead(session, task.patient_id)
        chain = [task.assignee_id or task.owner_id, task.owner_id, lead]
        for level in range(task.escalation_level + 1, target + 1):
            recipients = await staff.active_staff(session, [u for u in [chain[level - 1]] if u is not None])
            for user_id in recipients:
                session.add(
                    Alert(
                        id=uuid.uuid4(),
                        user_id=user_id,
                        source_event_id=uuid.uuid5(event.id, f"{task.id}/{level}"),
                        state="open",
                        patient_id=task.patient_id,
                        kind="task.overdue",
                        severity="critical" if level >= 3 or task.priority in ("asap", "stat") else "warning",
                        title=f"Overdue ({'level ' + str(level)}): {task.title}"[:200],
                        task_id=task.id,
                    )
                )
        task.escalation_level = target
        task.updated_at = utcnow()
        session.add(TaskComment(task_id=task.id, author_id=None, body=f"Escalated automatically to level {target}."))
        audit.record(
            session,
            audit.SYSTEM,
            action="task.escalate",
            resource_type="Task",
            resource_id=task.id,
            patient_id=task.patient_id,
            detail={"rule": "overdue", "level": target},
        )
        outbox.emit(
            session,
            "task.escalated",
            {"task_id": str(task.id), "patient_id": str(task.patient_id), "level": target},
            aggregate_id=task.patient_id,
        )


# Published events are kept a week (to trace what happened), receipts a month (longer than any redelivery).
OUTBOX_RETENTION = timedelta(days=7)
RECEIPT_RETENTION = timedelta(days=30)


@on("schedule.prune_outbox", "prune-outbox")
async def prune_outbox(session: AsyncSession, event: Event) -> None:
    """Delete the tenant's published events and old receipts past their retention (hourly)."""
    at = datetime.fromisoformat(event.payload["at"])
    await session.execute(
        delete(OutboxEvent).where(
            OutboxEvent.published_at.is_not(None), OutboxEvent.published_at < at - OUTBOX_RETENTION
        )
    )
    await session.execute(delete(JobReceipt).where(JobReceipt.processed_at < at - RECEIPT_RETENTION))
