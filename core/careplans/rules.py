"""The care plans' rule: the patient's care team hears of a changed plan."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select

from core import staff
from core.alerts.raising import new_alert, raise_alert
from core.careplans.models import CarePlan, CarePlanVersion
from core.careteams.members import users_of
from core.notify import rules_config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.jobs.events import Event


async def care_plan_changed(session: AsyncSession, event: Event) -> None:
    """A changed care plan: everyone on the patient's care team hears of it (but the one who changed it)."""
    plan = await session.get(CarePlan, uuid.UUID(event.payload["care_plan_id"]))
    if plan is None or not (await rules_config.current(session)).care_plan_change_alerts:
        return
    version = int(event.payload.get("version", plan.version))
    changed_by = await session.scalar(
        select(CarePlanVersion.changed_by).where(CarePlanVersion.plan_id == plan.id, CarePlanVersion.version == version)
    )
    members = await users_of(session, plan.patient_id)
    for user_id in await staff.active_staff(session, [u for u in members if u != changed_by]):
        await raise_alert(
            session,
            new_alert(
                event.id,
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
