"""A tenant's care plan templates: written by administrators, the standard set installed on request, retired."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import inputs
from core.careplans import standard, structured
from core.careplans.models import CarePlanTemplate
from core.careplans.schemas import ActivityIn, GoalIn, TemplateCreate, TemplateOut, TemplateUpdate
from core.db import utcnow
from core.errors import Conflict, InvalidInput
from core.principal import Principal
from core.records import Records


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


TEMPLATES = Records(
    model=CarePlanTemplate,
    resource_type="CarePlanTemplate",
    permission="careplan_templates",
    not_found="care plan template not found",
    shape=template_out,
    patient_of=lambda template: None,
    audited=False,
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


async def active_template(session: AsyncSession, template_id: uuid.UUID, field: str | None = None) -> CarePlanTemplate:
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
