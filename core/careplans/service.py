"""Care plans: created blank or from a tenant's template, validated, and versioned on every change."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import inputs
from core.appointments.models import Appointment
from core.careplans import structured
from core.careplans.models import PLAN_TRANSITIONS, CarePlan, CarePlanActivity, CarePlanGoal, CarePlanTemplate
from core.careplans.schemas import (
    ActivityIn,
    ActivityUpdate,
    CarePlanCreate,
    CarePlanOut,
    CarePlanUpdate,
    GoalIn,
    GoalUpdate,
)
from core.careplans.shapes import CARE_PLANS, to_out
from core.careplans.templates import active_template
from core.careplans.versions import new_version
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.patients.service import require_patient
from core.principal import Principal
from core.tasks.models import Task

CLOSED = ("completed", "revoked")


def _check_period(plan: CarePlan) -> None:
    if plan.period_start and plan.period_end and plan.period_end < plan.period_start:
        raise InvalidInput("period_end is before period_start", field="period_end")


async def _check_links(
    session: AsyncSession,
    patient_id: uuid.UUID,
    task_id: uuid.UUID | None,
    appointment_id: uuid.UUID | None,
    field: str,
) -> None:
    """An activity points only at a task or appointment of the same patient (in the caller's tenant)."""
    prefix = f"{field}." if field else ""
    if task_id is not None:
        task = await session.get(Task, task_id)
        if task is None or task.patient_id != patient_id:
            raise InvalidInput("no task of this patient has this id", field=f"{prefix}task_id")
    if appointment_id is not None:
        appointment = await session.get(Appointment, appointment_id)
        if appointment is None or appointment.patient_id != patient_id:
            raise InvalidInput("no appointment of this patient has this id", field=f"{prefix}appointment_id")


def _goal(data: GoalIn) -> CarePlanGoal:
    return CarePlanGoal(id=uuid.uuid4(), **msgspec.structs.asdict(data))


async def _activity(session: AsyncSession, patient_id: uuid.UUID, data: ActivityIn, field: str) -> CarePlanActivity:
    await _check_links(session, patient_id, data.task_id, data.appointment_id, field)
    return CarePlanActivity(id=uuid.uuid4(), **msgspec.structs.asdict(data))


async def create(session: AsyncSession, principal: Principal, data: CarePlanCreate) -> CarePlanOut:
    principal.require("careplans", "write")
    patient = await require_patient(session, principal, data.patient_id, "care_plan.create", active=True)
    template = await active_template(session, data.template_id, "template_id") if data.template_id else None
    if template is not None:
        structured.validate(template.structured_schema, data.structured)
    goals = data.goals if data.goals is not None else msgspec.convert(template.goals if template else [], list[GoalIn])
    activities = (
        data.activities
        if data.activities is not None
        else msgspec.convert(template.activities if template else [], list[ActivityIn])
    )
    title = data.title or (template.name if template else None)
    if title is None:
        raise InvalidInput("a plan without a template needs a title", field="title")
    plan = CarePlan(
        id=uuid.uuid4(),
        patient_id=patient.id,
        template_id=template.id if template else None,
        title=title,
        description=data.description,
        status=data.status,
        period_start=data.period_start,
        period_end=data.period_end,
        structured=data.structured,
        staff_note=data.staff_note,
        data_category=data.data_category,
        version=1,
        author_id=principal.user_id,
        goals=[_goal(g) for g in goals],
        activities=[],
    )
    _check_period(plan)
    for index, activity in enumerate(activities):
        plan.activities.append(await _activity(session, patient.id, activity, f"activities[{index}]"))
    session.add(plan)
    return await new_version(session, principal, plan, [{"op": "create"}], "care_plan.create")


def _open(plan: CarePlan) -> None:
    if plan.status in CLOSED:
        raise Conflict(f"the plan is {plan.status}: it can no longer change", field="status")


async def read(session: AsyncSession, principal: Principal, plan_id: uuid.UUID) -> CarePlanOut:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.read", need="read")
    CARE_PLANS.audit(session, principal, plan, "care_plan.read")
    return to_out(plan)


async def search(
    session: AsyncSession,
    principal: Principal,
    *,
    patient_id: uuid.UUID | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[CarePlanOut]:
    principal.require("careplans", "read")
    query = select(CarePlan)
    if patient_id is not None:
        query = query.where(CarePlan.patient_id == patient_id)
    if status is not None:
        query = query.where(CarePlan.status == status)
    query = query.order_by(CarePlan.updated_at.desc(), CarePlan.id).limit(limit).offset(offset)
    plans = list((await session.scalars(query)).all())
    for plan in plans:
        CARE_PLANS.audit(session, principal, plan, "care_plan.search")
    return [to_out(p) for p in plans]


def _json(value: Any) -> Any:
    return msgspec.to_builtins(value)


async def update(session: AsyncSession, principal: Principal, plan_id: uuid.UUID, data: CarePlanUpdate) -> CarePlanOut:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.update", need="write")
    given = inputs.given(data)
    expected = given.pop("version", None)
    if expected is not None and expected != plan.version:
        raise Conflict(f"the plan is at version {plan.version}, not {expected}: reload and retry", field="version")
    _open(plan)
    if given.get("title", "") is None:
        raise InvalidInput("title cannot be empty", field="title")
    allowed = PLAN_TRANSITIONS[plan.status]
    if "status" in given and given["status"] != plan.status and given["status"] not in allowed:
        raise Conflict(
            f"a plan that is {plan.status} cannot become {given['status']} (allowed: {', '.join(sorted(allowed))})",
            field="status",
        )
    if "structured" in given and plan.template_id is not None:
        template = await session.get(CarePlanTemplate, plan.template_id)
        assert template is not None
        structured.validate(template.structured_schema, given["structured"])
    changes = []
    for field, value in given.items():
        before = getattr(plan, field)
        if before == value:
            continue
        setattr(plan, field, value)
        changes.append({"op": "set", "field": field, "from": _json(before), "to": _json(value)})
    _check_period(plan)
    if not changes:
        return _unchanged(session, principal, plan)
    return await new_version(session, principal, plan, changes, "care_plan.update")


def _unchanged(session: AsyncSession, principal: Principal, plan: CarePlan) -> CarePlanOut:
    """An update that changed nothing still showed the plan: audit it as a read."""
    CARE_PLANS.audit(session, principal, plan, "care_plan.read", unchanged=True)
    return to_out(plan)


async def add_goal(session: AsyncSession, principal: Principal, plan_id: uuid.UUID, data: GoalIn) -> CarePlanOut:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.add_goal", need="write")
    _open(plan)
    goal = _goal(data)
    plan.goals.append(goal)
    change = {"op": "add_goal", "goal_id": str(goal.id), "description": goal.description}
    return await new_version(session, principal, plan, [change], "care_plan.add_goal")


async def update_goal(
    session: AsyncSession, principal: Principal, plan_id: uuid.UUID, goal_id: uuid.UUID, data: GoalUpdate
) -> CarePlanOut:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.update_goal", need="write")
    goal = next((g for g in plan.goals if g.id == goal_id), None)
    if goal is None:
        raise NotFound("goal not found")
    _open(plan)
    changes = []
    for field, value in inputs.given(data).items():
        if field == "description" and value is None:
            raise InvalidInput("description cannot be empty", field=field)
        before = getattr(goal, field)
        if before != value:
            setattr(goal, field, value)
            changes.append(
                {"op": "set_goal", "goal_id": str(goal.id), "field": field, "from": _json(before), "to": _json(value)}
            )
    if not changes:
        return _unchanged(session, principal, plan)
    goal.updated_at = utcnow()
    return await new_version(session, principal, plan, changes, "care_plan.update_goal")


async def add_activity(
    session: AsyncSession, principal: Principal, plan_id: uuid.UUID, data: ActivityIn
) -> CarePlanOut:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.add_activity", need="write")
    _open(plan)
    activity = await _activity(session, plan.patient_id, data, "")
    plan.activities.append(activity)
    change = {"op": "add_activity", "activity_id": str(activity.id), "description": activity.description}
    return await new_version(session, principal, plan, [change], "care_plan.add_activity")


async def update_activity(
    session: AsyncSession, principal: Principal, plan_id: uuid.UUID, activity_id: uuid.UUID, data: ActivityUpdate
) -> CarePlanOut:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.update_activity", need="write")
    activity = next((a for a in plan.activities if a.id == activity_id), None)
    if activity is None:
        raise NotFound("activity not found")
    _open(plan)
    given = inputs.given(data)
    if given.get("description", "") is None:
        raise InvalidInput("description cannot be empty", field="description")
    await _check_links(session, plan.patient_id, given.get("task_id"), given.get("appointment_id"), "")
    changes = []
    for field, value in given.items():
        before = getattr(activity, field)
        if before != value:
            setattr(activity, field, value)
            changes.append(
                {
                    "op": "set_activity",
                    "activity_id": str(activity.id),
                    "field": field,
                    "from": _json(before),
                    "to": _json(value),
                }
            )
    if not changes:
        return _unchanged(session, principal, plan)
    activity.updated_at = utcnow()
    return await new_version(session, principal, plan, changes, "care_plan.update_activity")
