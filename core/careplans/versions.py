"""Care plan versions: every change stores a snapshot and what changed, and the history is read back by number."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import outbox, staff
from core.careplans.models import CarePlan, CarePlanVersion
from core.careplans.schemas import CarePlanOut, VersionDetail, VersionOut
from core.careplans.shapes import CARE_PLANS, to_out
from core.db import utcnow
from core.errors import NotFound
from core.principal import Principal


def _snapshot(plan: CarePlan) -> dict[str, Any]:
    snapshot: dict[str, Any] = msgspec.to_builtins(to_out(plan))
    return snapshot


async def new_version(
    session: AsyncSession, principal: Principal, plan: CarePlan, changes: list[dict[str, Any]], action: str
) -> CarePlanOut:
    """Record the plan as it now stands as its next version, with who changed what."""
    if plan.version != 1 or changes[0].get("op") != "create":
        plan.version += 1
        plan.updated_at = utcnow()
    await session.flush()
    session.add(
        CarePlanVersion(
            plan_id=plan.id,
            version=plan.version,
            snapshot=_snapshot(plan),
            changes=changes,
            changed_by=principal.user_id,
        )
    )
    CARE_PLANS.audit(session, principal, plan, action, version=plan.version)
    outbox.emit(
        session,
        "care_plan.created" if action == "care_plan.create" else "care_plan.updated",
        {"care_plan_id": str(plan.id), "patient_id": str(plan.patient_id), "version": plan.version},
        aggregate_id=plan.patient_id,
    )
    await session.flush()
    return to_out(plan)


async def versions(session: AsyncSession, principal: Principal, plan_id: uuid.UUID) -> list[VersionOut]:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.versions", need="read")
    rows = list(
        (
            await session.scalars(
                select(CarePlanVersion).where(CarePlanVersion.plan_id == plan.id).order_by(CarePlanVersion.version)
            )
        ).all()
    )
    users = await staff.names(session, (r.changed_by for r in rows))
    CARE_PLANS.audit(session, principal, plan, "care_plan.versions")
    return [
        VersionOut(
            version=r.version,
            changed_by=r.changed_by,
            changed_by_name=users.get(r.changed_by) if r.changed_by else None,
            changed_at=r.changed_at,
            changes=r.changes,
        )
        for r in rows
    ]


async def version(session: AsyncSession, principal: Principal, plan_id: uuid.UUID, number: int) -> VersionDetail:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.version", need="read")
    row = await session.scalar(
        select(CarePlanVersion).where(CarePlanVersion.plan_id == plan.id, CarePlanVersion.version == number)
    )
    if row is None:
        raise NotFound("care plan version not found")
    users = await staff.names(session, [row.changed_by])
    CARE_PLANS.audit(session, principal, plan, "care_plan.version", version=number)
    return VersionDetail(
        version=row.version,
        changed_by=row.changed_by,
        changed_by_name=users.get(row.changed_by) if row.changed_by else None,
        changed_at=row.changed_at,
        changes=row.changes,
        plan=row.snapshot,
    )
