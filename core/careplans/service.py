"""Care plans: created blank or from a tenant's template, validated, and versioned on every change."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import inputs, outbox, staff
from core.appointments.models import Appointment
from core.careplans import standard, structured
from core.careplans.models import (
    PLAN_TRANSITIONS,
    CarePlan,
    CarePlanActivity,
    CarePlanGoal,
    CarePlanTemplate,
    CarePlanVersion,
)
from core.careplans.schemas import (
    ActivityIn,
    ActivityOut,
    ActivityUpdate,
    CarePlanCreate,
    CarePlanOut,
    CarePlanUpdate,
    GoalIn,
    GoalOut,
    GoalUpdate,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
    VersionDetail,
    VersionOut,
)
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.patients.service import require_patient
from core.principal import Principal
from core.records import Records
from core.tasks.models import Task

RESOURCE = "CarePlan"
CLOSED = ("completed", "revoked")


# Templates ----------------------------------------------------------------------------------------------------


def template_out(template: CarePlanTemplate) -> TemplateOut:
    return TemplateOut(
        id=template.id,
        code=template.code,
        name=template.name,
        description=template.description,
        condition=template.condition,
        structured_schema=template.structured_schema,
        goals=msgspec.convert(template.goals, list[GoalIn]),
        activities=msgspec.convert(template.activities, list[ActivityIn]),
        active=template.active,
        created_at=template.created_at,
    )


async def create_template(session: AsyncSession, principal: Principal, data: TemplateCreate) -> TemplateOut:
    principal.require("careplan_templates", "write")
    structured.check_schema(data.structured_schema)
    for index, activity in enumerate(data.activities):
        if activity.task_id or activity.appointment_id:
            raise InvalidInput(
                "a template's activities cannot point at a task or appointment", field=f"activities[{index}]"
            )
    if await session.scalar(select(CarePlanTemplate.id).where(CarePlanTemplate.code == data.code)) is not None:
        raise Conflict(f"a template with code {data.code} already exists", field="code")
    template = CarePlanTemplate(
        id=uuid.uuid4(),
        code=data.code,
        name=data.name,
        description=data.description,
        condition=data.condition,
        structured_schema=data.structured_schema,
        goals=msgspec.to_builtins(data.goals),
        activities=msgspec.to_builtins(data.activities),
    )
    session.add(template)
    TEMPLATES.audit(session, principal, template, "care_plan_template.create")
    await session.flush()
    return template_out(template)


async def install_standard(session: AsyncSession, principal: Principal) -> list[TemplateOut]:
    """Add the standard templates the tenant does not have yet (by code); returns the ones added."""
    principal.require("careplan_templates", "write")
    have = set((await session.scalars(select(CarePlanTemplate.code))).all())
    added = []
    for spec in standard.STANDARD_TEMPLATES:
        if spec["code"] not in have:
            added.append(await create_template(session, principal, msgspec.convert(spec, TemplateCreate)))
    return added


async def update_template(
    session: AsyncSession, principal: Principal, template_id: uuid.UUID, data: TemplateUpdate
) -> TemplateOut:
    """Rename or describe a template, or retire it (``active: false``): retired templates are not offered for new
    plans; plans made from them keep it."""
    template = await TEMPLATES.get(session, principal, template_id, "care_plan_template.update", need="write")
    changed = {}
    for field, value in inputs.given(data).items():
        if getattr(template, field) != value:
            changed[field] = value
            setattr(template, field, value)
    if changed:
        template.updated_at = utcnow()
    TEMPLATES.audit(session, principal, template, "care_plan_template.update", fields=sorted(changed))
    await session.flush()
    return template_out(template)


async def list_templates(session: AsyncSession, principal: Principal) -> list[TemplateOut]:
    principal.require("careplan_templates", "read")
    rows = await session.scalars(
        select(CarePlanTemplate).where(CarePlanTemplate.active.is_(True)).order_by(CarePlanTemplate.name)
    )
    return [template_out(t) for t in rows.all()]


async def _template(session: AsyncSession, template_id: uuid.UUID, field: str | None = None) -> CarePlanTemplate:
    template = await session.get(CarePlanTemplate, template_id)
    if template is None or not template.active:
        if field:
            raise InvalidInput("no active care plan template of this tenant has this id", field=field)
        raise TEMPLATES.missing()
    return template


async def read_template(session: AsyncSession, principal: Principal, template_id: uuid.UUID) -> TemplateOut:
    """One template, retired ones included (plans made from them still point at them)."""
    template = await TEMPLATES.get(session, principal, template_id, "care_plan_template.read", need="read")
    return template_out(template)


TEMPLATES = Records(
    model=CarePlanTemplate,
    resource_type="CarePlanTemplate",
    permission="careplan_templates",
    not_found="care plan template not found",
    shape=template_out,
    patient_of=lambda template: None,
    audited=False,
)


# Plans --------------------------------------------------------------------------------------------------------


def to_out(plan: CarePlan) -> CarePlanOut:
    return CarePlanOut(
        id=plan.id,
        patient_id=plan.patient_id,
        template_id=plan.template_id,
        title=plan.title,
        description=plan.description,
        status=plan.status,
        period_start=plan.period_start,
        period_end=plan.period_end,
        structured=plan.structured,
        staff_note=plan.staff_note,
        version=plan.version,
        author_id=plan.author_id,
        goals=[goal_out(g) for g in plan.goals],
        activities=[activity_out(a) for a in plan.activities],
        created_at=plan.created_at,
        updated_at=plan.updated_at,
        data_category=plan.data_category,
    )


CARE_PLANS = Records(
    model=CarePlan, resource_type=RESOURCE, permission="careplans", not_found="care plan not found", shape=to_out
)


def goal_out(goal: CarePlanGoal) -> GoalOut:
    return GoalOut(
        id=goal.id,
        description=goal.description,
        measure=goal.measure,
        target_value=goal.target_value,
        due_date=goal.due_date,
        lifecycle_status=goal.lifecycle_status,
        achievement_status=goal.achievement_status,
    )


def activity_out(activity: CarePlanActivity) -> ActivityOut:
    return ActivityOut(
        id=activity.id,
        kind=activity.kind,
        description=activity.description,
        status=activity.status,
        task_id=activity.task_id,
        appointment_id=activity.appointment_id,
    )


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


def _snapshot(plan: CarePlan) -> dict[str, Any]:
    snapshot: dict[str, Any] = msgspec.to_builtins(to_out(plan))
    return snapshot


async def _new_version(
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


async def create(session: AsyncSession, principal: Principal, data: CarePlanCreate) -> CarePlanOut:
    principal.require("careplans", "write")
    patient = await require_patient(session, principal, data.patient_id, "care_plan.create", active=True)
    template = await _template(session, data.template_id, "template_id") if data.template_id else None
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
    return await _new_version(session, principal, plan, [{"op": "create"}], "care_plan.create")


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
    return await _new_version(session, principal, plan, changes, "care_plan.update")


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
    return await _new_version(session, principal, plan, [change], "care_plan.add_goal")


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
    return await _new_version(session, principal, plan, changes, "care_plan.update_goal")


async def add_activity(
    session: AsyncSession, principal: Principal, plan_id: uuid.UUID, data: ActivityIn
) -> CarePlanOut:
    plan = await CARE_PLANS.get(session, principal, plan_id, "care_plan.add_activity", need="write")
    _open(plan)
    activity = await _activity(session, plan.patient_id, data, "")
    plan.activities.append(activity)
    change = {"op": "add_activity", "activity_id": str(activity.id), "description": activity.description}
    return await _new_version(session, principal, plan, [change], "care_plan.add_activity")


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
    return await _new_version(session, principal, plan, changes, "care_plan.update_activity")


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
