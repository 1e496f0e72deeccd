"""Care plans, their goals and activities, version history, and the tenant's care plan templates."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter

from api.body_limits import MAX_JSON_DEPTH
from api.deps import Caller, Db, Limit, Offset, Page, page_of
from core.careplans import service, templates, versions
from core.careplans.schemas import (
    ActivityIn,
    ActivityUpdate,
    CarePlanCreate,
    CarePlanOut,
    CarePlanUpdate,
    GoalIn,
    GoalUpdate,
    PlanStatus,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
    VersionDetail,
    VersionOut,
)


class CarePlanController(Controller):
    path = "/api/v1"
    tags = ["care plans"]

    # A template's schema is itself a nested document: its own check refuses one nested deeper than 32 levels
    # and names the path, so the body may nest deeper than the general limit (still far from the decoder's).
    @post(
        "/care-plan-templates",
        summary="Add a care plan template (its structured section is a JSON Schema)",
        opt={MAX_JSON_DEPTH: 700},
    )
    async def create_template(self, session: Db, principal: Caller, data: JSONBody[TemplateCreate]) -> TemplateOut:
        return await templates.create_template(session, principal, data)

    @post(
        "/care-plan-templates/install-standard",
        summary="Install the standard templates (diabetes, heart failure, COPD, social needs) not yet present",
    )
    async def install_standard(self, session: Db, principal: Caller) -> list[TemplateOut]:
        return await templates.install_standard(session, principal)

    @get("/care-plan-templates", summary="The tenant's care plan templates")
    async def list_templates(self, session: Db, principal: Caller) -> list[TemplateOut]:
        return await templates.list_templates(session, principal)

    @get("/care-plan-templates/{template_id:uuid}", summary="One template")
    async def read_template(self, session: Db, principal: Caller, template_id: FromPath[uuid.UUID]) -> TemplateOut:
        return await templates.read_template(session, principal, template_id)

    @patch("/care-plan-templates/{template_id:uuid}", summary="Rename, describe or retire a template")
    async def update_template(
        self, session: Db, principal: Caller, template_id: FromPath[uuid.UUID], data: JSONBody[TemplateUpdate]
    ) -> TemplateOut:
        return await templates.update_template(session, principal, template_id, data)

    @post("/care-plans", summary="Create a care plan (from a template: its structured section must validate)")
    async def create(self, session: Db, principal: Caller, data: JSONBody[CarePlanCreate]) -> CarePlanOut:
        return await service.create(session, principal, data)

    @get("/care-plans", summary="Care plans, by patient and status")
    async def search(
        self,
        session: Db,
        principal: Caller,
        patient_id: FromQuery[uuid.UUID | None] = None,
        status: FromQuery[PlanStatus | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[CarePlanOut]:
        items = await service.search(
            session, principal, patient_id=patient_id, status=status, limit=limit, offset=offset
        )
        return page_of(items, limit, offset)

    @get("/care-plans/{plan_id:uuid}", summary="One care plan")
    async def read(self, session: Db, principal: Caller, plan_id: FromPath[uuid.UUID]) -> CarePlanOut:
        return await service.read(session, principal, plan_id)

    @patch("/care-plans/{plan_id:uuid}", summary="Change a plan (a new version; give `version` to guard edits)")
    async def update(
        self, session: Db, principal: Caller, plan_id: FromPath[uuid.UUID], data: JSONBody[CarePlanUpdate]
    ) -> CarePlanOut:
        return await service.update(session, principal, plan_id, data)

    @post("/care-plans/{plan_id:uuid}/goals", summary="Add a goal")
    async def add_goal(
        self, session: Db, principal: Caller, plan_id: FromPath[uuid.UUID], data: JSONBody[GoalIn]
    ) -> CarePlanOut:
        return await service.add_goal(session, principal, plan_id, data)

    @patch("/care-plans/{plan_id:uuid}/goals/{goal_id:uuid}", summary="Change a goal (e.g. its achievement)")
    async def update_goal(
        self,
        session: Db,
        principal: Caller,
        plan_id: FromPath[uuid.UUID],
        goal_id: FromPath[uuid.UUID],
        data: JSONBody[GoalUpdate],
    ) -> CarePlanOut:
        return await service.update_goal(session, principal, plan_id, goal_id, data)

    @post("/care-plans/{plan_id:uuid}/activities", summary="Add an activity (optionally linked to a task)")
    async def add_activity(
        self, session: Db, principal: Caller, plan_id: FromPath[uuid.UUID], data: JSONBody[ActivityIn]
    ) -> CarePlanOut:
        return await service.add_activity(session, principal, plan_id, data)

    @patch("/care-plans/{plan_id:uuid}/activities/{activity_id:uuid}", summary="Change an activity")
    async def update_activity(
        self,
        session: Db,
        principal: Caller,
        plan_id: FromPath[uuid.UUID],
        activity_id: FromPath[uuid.UUID],
        data: JSONBody[ActivityUpdate],
    ) -> CarePlanOut:
        return await service.update_activity(session, principal, plan_id, activity_id, data)

    @get("/care-plans/{plan_id:uuid}/versions", summary="The plan's version history: who changed what, when")
    async def versions(self, session: Db, principal: Caller, plan_id: FromPath[uuid.UUID]) -> list[VersionOut]:
        return await versions.versions(session, principal, plan_id)

    @get("/care-plans/{plan_id:uuid}/versions/{version:int}", summary="The plan as it stood at one version")
    async def version(
        self,
        session: Db,
        principal: Caller,
        plan_id: FromPath[uuid.UUID],
        version: Annotated[int, PathParameter(ge=1, le=1_000_000)],
    ) -> VersionDetail:
        return await versions.version(session, principal, plan_id, version)
