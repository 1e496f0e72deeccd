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
from core.notify import delivery, messages, rules_config
from core.outbox import OutboxEvent
from core.patients.models import Patient
from core.results.models import LabResult
from core.tasks.models import OPEN_STATUSES, Task, TaskComment, TaskStatusChange


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
    config = await rules_config.current(session)
    when = messages.local_time(appointment.start_at, config.timezone)
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
        due_at=utcnow() + timedelta(hours=config.noshow_follow_up_hours),
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


async def _raise(session: AsyncSession, alert: Alert) -> None:
    """Put ``alert`` in its recipient's inbox (once: a rule run again finds it there) and send copies on the
    channels the recipient chose for alerts that severe."""
    exists = await session.scalar(
        select(Alert.id).where(
            Alert.user_id == alert.user_id, Alert.source_event_id == alert.source_event_id, Alert.kind == alert.kind
        )
    )
    if exists is not None:
        return
    session.add(alert)
    content = messages.staff_alert(
        facility=await delivery.facility_name(session),
        kind=alert.kind,
        severity=alert.severity,
        title=alert.title,
        body=alert.body,
    )
    await delivery.to_staff(
        session,
        alert.user_id,
        kind=alert.kind,
        severity=alert.severity,
        content=content,
        dedupe_key=f"alert/{alert.id}",
    )


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
    await _raise(
        session,
        _alert(
            event,
            clinician,
            patient_id=result.patient_id,
            kind="lab.critical",
            severity="critical",
            title=f"Critical result: {result.display} {value}"[:200],
            body=f"Reference range {result.reference_range or 'not given'}. A stat task was created.",
            task_id=task.id,
            subject_type="LabResult",
            subject_id=result.id,
        ),
    )


@on("care_plan.updated", "care-plan-change-alerts")
async def care_plan_changed(session: AsyncSession, event: Event) -> None:
    """A changed care plan: everyone on the patient's care team hears of it (but the one who changed it)."""
    plan = await session.get(CarePlan, uuid.UUID(event.payload["care_plan_id"]))
    if plan is None or not (await rules_config.current(session)).care_plan_change_alerts:
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
        await _raise(
            session,
            _alert(
                event,
                user_id,
                patient_id=plan.patient_id,
                kind="care_plan.updated",
                severity="info",
                title=f"Care plan updated: {plan.title} (version {version})"[:200],
                body=None,
                subject_type="CarePlan",
                subject_id=plan.id,
            ),
        )


@on("schedule.overdue_tasks", "overdue-task-escalation")
async def escalate_overdue_tasks(session: AsyncSession, event: Event) -> None:
    """Raise the escalation level of open tasks past their due time, alerting the next person at each level.

    The time is the tick's (``payload.at``), not the clock's, so a late or replayed tick decides the same way."""
    at = datetime.fromisoformat(event.payload["at"])
    delays = (await rules_config.current(session)).overdue_escalation_minutes
    overdue = await session.scalars(
        select(Task).where(Task.status.in_(OPEN_STATUSES), Task.due_at.is_not(None), Task.due_at < at)
    )
    for task in overdue.all():
        assert task.due_at is not None
        target = sum(1 for minutes in delays if at >= task.due_at + timedelta(minutes=minutes))
        if target <= task.escalation_level:
            continue
        lead = await _care_team_lead(session, task.patient_id)
        chain = [task.assignee_id or task.owner_id, task.owner_id, lead]
        for level in range(task.escalation_level + 1, target + 1):
            recipients = await staff.active_staff(session, [u for u in [chain[level - 1]] if u is not None])
            for user_id in recipients:
                await _raise(
                    session,
                    Alert(
                        id=uuid.uuid4(),
                        user_id=user_id,
                        # Keyed by the task and level, not the tick: a level alerts once whichever tick finds it.
                        source_event_id=uuid.uuid5(task.id, f"overdue/{level}"),
                        state="open",
                        patient_id=task.patient_id,
                        kind="task.overdue",
                        severity="critical" if level >= 3 or task.priority in ("asap", "stat") else "warning",
                        title=f"Overdue ({'level ' + str(level)}): {task.title}"[:200],
                        task_id=task.id,
                    ),
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


async def _tenant_admins(session: AsyncSession) -> list[uuid.UUID]:
    return sorted(await staff.holding(session, "tenant_admin"))


@on("schedule.critical_results", "critical-result-escalation")
async def escalate_unacknowledged_results(session: AsyncSession, event: Event) -> None:
    """A critical result nobody has acknowledged after the configured minutes alerts the care team lead, and
    later the tenant's administrators (the level reached is kept on the result)."""
    at = datetime.fromisoformat(event.payload["at"])
    delays = (await rules_config.current(session)).critical_result_escalation_minutes
    waiting = await session.scalars(
        select(LabResult).where(
            LabResult.interpretation == "critical",
            LabResult.status != "cancelled",
            LabResult.acknowledged_at.is_(None),
            LabResult.escalation_level < len(delays),
            LabResult.created_at <= at - timedelta(minutes=delays[0]),
        )
    )
    for result in waiting.all():
        target = sum(1 for minutes in delays if at >= result.created_at + timedelta(minutes=minutes))
        if target <= result.escalation_level:
            continue
        value = f"{result.value} {result.unit or ''}".strip()
        waited = int((at - result.created_at).total_seconds() // 60)
        for level in range(result.escalation_level + 1, target + 1):
            if level == 1:
                lead = await _care_team_lead(session, result.patient_id)
                recipients = await staff.active_staff(session, [lead] if lead else [])
                if not recipients:  # no lead to reach: straight to the administrators
                    recipients = await _tenant_admins(session)
            else:
                recipients = await _tenant_admins(session)
            for user_id in recipients:
                await _raise(
                    session,
                    Alert(
                        id=uuid.uuid4(),
                        user_id=user_id,
                        source_event_id=uuid.uuid5(result.id, f"unacknowledged/{level}"),
                        state="open",
                        patient_id=result.patient_id,
                        kind="lab.critical.unacknowledged",
                        severity="critical",
                        title=f"Critical result not acknowledged for {waited} min: {result.display} {value}"[:200],
                        body="Nobody has acknowledged this critical result yet. Make sure a clinician acts on it.",
                        subject_type="LabResult",
                        subject_id=result.id,
                    ),
                )
        result.escalation_level = target
        audit.record(
            session,
            audit.SYSTEM,
            action="result.escalate",
            resource_type="LabResult",
            resource_id=result.id,
            patient_id=result.patient_id,
            detail={"rule": "critical unacknowledged", "level": target, "minutes_waiting": waited},
        )


@on("result.acknowledged", "settle-result-alerts")
async def settle_result_alerts(session: AsyncSession, event: Event) -> None:
    """Once a clinician has acknowledged a result, its alerts in everyone's inbox are resolved."""
    result_id = uuid.UUID(event.payload["result_id"])
    alerts = await session.scalars(
        select(Alert).where(Alert.subject_type == "LabResult", Alert.subject_id == result_id, Alert.state != "resolved")
    )
    now = utcnow()
    for alert in alerts.all():
        alert.state = "resolved"
        alert.acknowledged_at = alert.acknowledged_at or now
        alert.resolved_at = now


@on("schedule.appointment_reminders", "appointment-reminders")
async def remind_appointments(session: AsyncSession, event: Event) -> None:
    """Remind patients of booked appointments at each appointment's offsets (e.g. 72 h and 24 h before).

    Only the nearest offset already reached is sent (an appointment booked 30 hours ahead gets the 24-hour
    reminder, not a late 72-hour one), once per offset and start time (rescheduling reminds again)."""
    at = datetime.fromisoformat(event.payload["at"])
    config = await rules_config.current(session)
    if not config.appointment_reminders:
        return
    horizon = at + timedelta(hours=24 * 30)
    upcoming = await session.scalars(
        select(Appointment).where(
            Appointment.status == "booked", Appointment.start_at > at, Appointment.start_at <= horizon
        )
    )
    facility: str | None = None
    for appointment in upcoming.all():
        reminder = appointment.reminder or {}
        wanted = [c for c in reminder.get("channels") or [] if c in ("in_app", "email", "sms")]
        offsets = sorted(int(h) for h in reminder.get("offsets_hours") or [])
        if not wanted or not offsets:
            continue
        reached = [h for h in offsets if at >= appointment.start_at - timedelta(hours=h)]
        if not reached:
            continue
        offset = reached[0]
        patient = await session.get(Patient, appointment.patient_id)
        if patient is None or not patient.active:
            continue
        facility = facility or await delivery.facility_name(session)
        content = messages.appointment_reminder(
            facility=facility,
            start_at=appointment.start_at,
            kind=appointment.kind,
            location=appointment.location,
            reason=appointment.reason,
            timezone=config.timezone,
        )
        await delivery.to_patient(
            session,
            patient,
            kind="appointment.reminder",
            content=content,
            dedupe_key=f"appointment-reminder/{appointment.id}/{appointment.start_at.isoformat()}/{offset}",
            channels_wanted=wanted,
        )
