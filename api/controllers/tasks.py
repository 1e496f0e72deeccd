"""Tasks and work queues."""

from __future__ import annotations

import uuid

from litestar import Controller, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from api.deps import Caller, Db, Limit, Offset, Page, page_of
from core.tasks import service
from core.tasks.schemas import (
    CommentIn,
    CommentOut,
    Escalation,
    Priority,
    Queue,
    StatusChangeOut,
    TaskCreate,
    TaskOut,
    TaskStatus,
    TaskTemplate,
    TaskUpdate,
    Transition,
)


class TaskController(Controller):
    path = "/api/v1"
    tags = ["tasks"]

    @get("/task-templates", summary="Standard follow-up tasks (use their code as template_code)")
    async def templates(self, principal: Caller) -> list[TaskTemplate]:
        return service.list_templates(principal)

    @post("/tasks", summary="Create a task for a patient")
    async def create(self, session: Db, principal: Caller, data: JSONBody[TaskCreate]) -> TaskOut:
        return await service.create(session, principal, data)

    @get("/tasks", summary="A work queue: mine, my team's, overdue or all; due first, then priority")
    async def queue(
        self,
        session: Db,
        principal: Caller,
        queue: FromQuery[Queue] = "mine",
        patient_id: FromQuery[uuid.UUID | None] = None,
        status: FromQuery[TaskStatus | None] = None,
        priority: FromQuery[Priority | None] = None,
        assignee_id: FromQuery[uuid.UUID | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[TaskOut]:
        items = await service.queue(
            session,
            principal,
            queue=queue,
            patient_id=patient_id,
            status=status,
            priority=priority,
            assignee_id=assignee_id,
            limit=limit,
            offset=offset,
        )
        return page_of(items, limit, offset)

    @get("/tasks/{task_id:uuid}", summary="One task")
    async def read(self, session: Db, principal: Caller, task_id: FromPath[uuid.UUID]) -> TaskOut:
        return await service.read(session, principal, task_id)

    @patch("/tasks/{task_id:uuid}", summary="Change an open task (assignee, due time, priority, ...)")
    async def update(
        self, session: Db, principal: Caller, task_id: FromPath[uuid.UUID], data: JSONBody[TaskUpdate]
    ) -> TaskOut:
        return await service.update(session, principal, task_id, data)

    @post(
        "/tasks/{task_id:uuid}/transition",
        status_code=200,
        summary="Move the task along its workflow (409 if not allowed)",
    )
    async def transition(
        self, session: Db, principal: Caller, task_id: FromPath[uuid.UUID], data: JSONBody[Transition]
    ) -> TaskOut:
        return await service.transition(session, principal, task_id, data)

    @post("/tasks/{task_id:uuid}/escalate", status_code=200, summary="Raise the task's escalation level")
    async def escalate(
        self, session: Db, principal: Caller, task_id: FromPath[uuid.UUID], data: JSONBody[Escalation]
    ) -> TaskOut:
        return await service.escalate(session, principal, task_id, data)

    @post("/tasks/{task_id:uuid}/comments", summary="Comment on a task")
    async def add_comment(
        self, session: Db, principal: Caller, task_id: FromPath[uuid.UUID], data: JSONBody[CommentIn]
    ) -> CommentOut:
        return await service.add_comment(session, principal, task_id, data)

    @get("/tasks/{task_id:uuid}/comments", summary="A task's comments, oldest first")
    async def comments(self, session: Db, principal: Caller, task_id: FromPath[uuid.UUID]) -> list[CommentOut]:
        return await service.comments(session, principal, task_id)

    @get("/tasks/{task_id:uuid}/history", summary="A task's status changes, oldest first")
    async def history(self, session: Db, principal: Caller, task_id: FromPath[uuid.UUID]) -> list[StatusChangeOut]:
        return await service.history(session, principal, task_id)
