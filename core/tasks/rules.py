"""The tasks' rule: open tasks past their due time escalate, alerting the next person at each level."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from core import audit, outbox, staff
from core.alerts.raising import new_alert, raise_alert
from core.careteams.members import lead_of
from core.db import utcnow
from core.notify import rules_config
from core.tasks.models import OPEN_STATUSES, Task, TaskComment

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.jobs.events import Event


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
        lead = await lead_of(session, task.patient_id)
        chain = [task.assignee_id or task.owner_id, task.owner_id, lead]
        for level in range(task.escalation_level + 1, target + 1):
            recipients = await staff.active_staff(session, [u for u in [chain[level - 1]] if u is not None])
            for user_id in recipients:
                await raise_alert(
                    session,
                    new_alert(
                        # Keyed by the task and level, not the tick: a level alerts once whichever tick finds it.
                        uuid.uuid5(task.id, f"overdue/{level}"),
                        user_id,
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
