"""The lab results' rules: a critical value reaches a clinician now, and climbs if nobody acknowledges it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from core import audit, staff
from core.alerts.models import Alert
from core.alerts.raising import new_alert, raise_alert
from core.careteams.members import lead_of
from core.db import utcnow
from core.notify import rules_config
from core.results.models import LabResult
from core.tasks.automatic import add_task
from core.tasks.models import Task

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.jobs.events import Event


async def critical_result(session: AsyncSession, event: Event) -> None:
    """A critical lab value: a stat task and a critical alert for the ordering clinician (or the care team lead)."""
    result = await session.get(LabResult, uuid.UUID(event.payload["result_id"]))
    if result is None or result.acknowledged_at is not None:
        return  # gone, or already seen by a clinician
    candidates = [result.ordered_by] if result.ordered_by else []
    lead = await lead_of(session, result.patient_id)
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
    add_task(session, task, "critical result", {"rule": "lab_result.critical_received", "result_id": str(result.id)})
    await raise_alert(
        session,
        new_alert(
            event.id,
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


async def _tenant_admins(session: AsyncSession) -> list[uuid.UUID]:
    return sorted(await staff.holding(session, "tenant_admin"))


async def escalate_unacknowledged(session: AsyncSession, event: Event) -> None:
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
                lead = await lead_of(session, result.patient_id)
                recipients = await staff.active_staff(session, [lead] if lead else [])
                if not recipients:  # no lead to reach: straight to the administrators
                    recipients = await _tenant_admins(session)
            else:
                recipients = await _tenant_admins(session)
            for user_id in recipients:
                await raise_alert(
                    session,
                    new_alert(
                        uuid.uuid5(result.id, f"unacknowledged/{level}"),
                        user_id,
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
