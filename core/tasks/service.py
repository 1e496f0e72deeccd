"""Tasks: creation (blank or from a standard template), the status workflow, escalation, comments, work queues."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, Integer, Row, Select, bindparam, case, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from core import inputs, outbox, staff
from core.careplans.models import CarePlan
from core.careteams.models import CareTeam, CareTeamMember
from core.db import utcnow
from core.errors import Conflict, InvalidInput
from core.inputs import to_utc
from core.patients.models import Patient
from core.patients.service import require_patient
from core.principal import Principal
from core.records import Records
from core.tasks import templates
from core.tasks.models import OPEN_STATUSES, TASK_TRANSITIONS, Task, TaskComment, TaskStatusChange
from core.tasks.schemas import (
    CommentIn,
    CommentOut,
    Escalation,
    StatusChangeOut,
    TaskCreate,
    TaskOut,
    TaskTemplate,
    TaskUpdate,
    Transition,
)
from tenants.isolation import plain_rows, prebuilt

RESOURCE = "Task"
# Most pressing first when sorting a queue.
PRIORITY_RANK = case({"stat": 0, "asap": 1, "urgent": 2, "routine": 3}, value=Task.priority, else_=4)


async def _out(session: AsyncSession, task: Task, now: datetime | None = None) -> TaskOut:
    patient = await session.get(Patient, task.patient_id)  # usually already in the session
    return to_out(task, now, f"{patient.given_name} {patient.family_name}" if patient else None)


def to_out(task: Task | Row[Any], now: datetime | None = None, patient_name: str | None = None) -> TaskOut:
    """A task's output, from its record or from a row of its columns (a queue's)."""
    now = now or utcnow()
    return TaskOut(
        id=task.id,
        patient_id=task.patient_id,
        patient_name=patient_name,
        care_plan_id=task.care_plan_id,
        title=task.title,
        description=task.description,
        template_code=task.template_code,
        owner_id=task.owner_id,
        assignee_id=task.assignee_id,
        for_patient=task.for_patient,
        due_at=task.due_at,
        priority=task.priority,
        status=task.status,
        status_reason=task.status_reason,
        escalation_level=task.escalation_level,
        overdue=task.status in OPEN_STATUSES and task.due_at is not None and task.due_at < now,
        completed_at=task.completed_at,
        created_at=task.created_at,
        updated_at=task.updated_at,
        data_category=task.data_category,
    )


TASKS = Records(model=Task, resource_type=RESOURCE, permission="tasks", not_found="task not found", shape=to_out)


def list_templates(principal: Principal) -> list[TaskTemplate]:
    principal.require("tasks", "read")
    return list(templates.STANDARD)


def _event(session: AsyncSession, task: Task, topic: str, **extra: Any) -> None:
    payload = {"task_id": str(task.id), "patient_id": str(task.patient_id), **extra}
    outbox.emit(session, topic, payload, aggregate_id=task.patient_id)


async def create(session: AsyncSession, principal: Principal, data: TaskCreate) -> TaskOut:
    principal.require("tasks", "write")
    patient = await require_patient(session, principal, data.patient_id, "task.create", active=True)
    template = None
    if data.template_code is not None:
        template = templates.BY_CODE.get(data.template_code)
        if template is None:
            raise InvalidInput(f"unknown task template; known: {', '.join(templates.BY_CODE)}", field="template_code")
    title = data.title or (template.title if template else None)
    if title is None:
        raise InvalidInput("a task without a template needs a title", field="title")
    if data.care_plan_id is not None:
        plan = await session.get(CarePlan, data.care_plan_id)
        if plan is None or plan.patient_id != patient.id:
            raise InvalidInput("no care plan of this patient has this id", field="care_plan_id")
        if plan.status in ("completed", "revoked"):
            raise InvalidInput(f"the care plan is {plan.status}", field="care_plan_id")
    owner_id = data.owner_id or principal.user_id
    await staff.require_staff(session, owner_id, "owner_id")
    if data.assignee_id is not None:
        await staff.require_staff(session, data.assignee_id, "assignee_id")
    now = utcnow()
    due_at = to_utc(data.due_at, "due_at") if data.due_at else None
    due_at = due_at or (now + timedelta(hours=template.due_in_hours) if template else None)
    task = Task(
        id=uuid.uuid4(),
        patient_id=patient.id,
        care_plan_id=data.care_plan_id,
        title=title,
        description=data.description or (template.description if template else None),
        template_code=data.template_code,
        owner_id=owner_id,
        assignee_id=data.assignee_id,
        for_patient=data.for_patient,
        due_at=due_at,
        priority=data.priority or (template.priority if template else "routine"),
        status="requested",
        escalation_level=0,
        data_category=data.data_category,
        created_by=principal.user_id,
    )
    session.add(task)
    session.add(
        TaskStatusChange(task_id=task.id, from_status=None, to_status="requested", changed_by=principal.user_id)
    )
    TASKS.audit(session, principal, task, "task.create")
    _event(session, task, "task.created", priority=task.priority)
    await session.flush()
    return await _out(session, task, now)


def _open(task: Task) -> None:
    if task.status not in OPEN_STATUSES:
        raise Conflict(f"the task is {task.status}: it is closed", field="status")


async def read(session: AsyncSession, principal: Principal, task_id: uuid.UUID) -> TaskOut:
    task = await TASKS.get(session, principal, task_id, "task.read", need="read")
    TASKS.audit(session, principal, task, "task.read")
    return await _out(session, task)


async def update(session: AsyncSession, principal: Principal, task_id: uuid.UUID, data: TaskUpdate) -> TaskOut:
    task = await TASKS.get(session, principal, task_id, "task.update", need="write")
    _open(task)
    given = inputs.given(data)
    if given.get("due_at") is not None:
        given["due_at"] = to_utc(given["due_at"], "due_at")
    if "owner_id" in given:
        await staff.require_staff(session, given["owner_id"], "owner_id")
    if given.get("assignee_id") is not None:
        await staff.require_staff(session, given["assignee_id"], "assignee_id")
    changed = []
    for field, value in given.items():
        if getattr(task, field) != value:
            setattr(task, field, value)
            changed.append(field)
    if changed:
        task.updated_at = utcnow()
        _event(session, task, "task.updated", fields=changed)
        if "assignee_id" in changed and task.assignee_id is not None:
            _event(session, task, "task.assigned", assignee_id=str(task.assignee_id))
    TASKS.audit(session, principal, task, "task.update", fields=changed)
    await session.flush()
    return await _out(session, task)


async def transition(session: AsyncSession, principal: Principal, task_id: uuid.UUID, data: Transition) -> TaskOut:
    """Move the task along its workflow; a move the workflow does not allow is refused with 409."""
    task = await TASKS.get(session, principal, task_id, "task.transition", need="write")
    allowed = TASK_TRANSITIONS[task.status]
    if data.status not in allowed:
        options = ", ".join(sorted(allowed)) or "none: the task is closed"
        raise Conflict(f"a {task.status} task cannot become {data.status} (allowed: {options})", field="status")
    if data.status in ("cancelled", "failed") and not data.reason:
        raise InvalidInput(f"say why the task is {data.status}", field="reason")
    before = task.status
    task.status = data.status
    task.status_reason = data.reason
    now = utcnow()
    task.updated_at = now
    if data.status == "completed":
        task.completed_at = now
    session.add(
        TaskStatusChange(
            task_id=task.id, from_status=before, to_status=data.status, reason=data.reason, changed_by=principal.user_id
        )
    )
    TASKS.audit(session, principal, task, "task.transition", **{"from": before, "to": data.status})
    _event(session, task, f"task.{data.status}", from_status=before)
    await session.flush()
    return await _out(session, task, now)


async def escalate(session: AsyncSession, principal: Principal, task_id: uuid.UUID, data: Escalation) -> TaskOut:
    task = await TASKS.get(session, principal, task_id, "task.escalate", need="write")
    _open(task)
    task.escalation_level += 1
    task.updated_at = utcnow()
    session.add(TaskComment(task_id=task.id, author_id=principal.user_id, body=f"Escalated: {data.reason}"))
    TASKS.audit(session, principal, task, "task.escalate", level=task.escalation_level)
    _event(session, task, "task.escalated", level=task.escalation_level, reason=data.reason)
    await session.flush()
    return await _out(session, task)


async def add_comment(session: AsyncSession, principal: Principal, task_id: uuid.UUID, data: CommentIn) -> CommentOut:
    task = await TASKS.get(session, principal, task_id, "task.comment", need="write")
    comment = TaskComment(id=uuid.uuid4(), task_id=task.id, author_id=principal.user_id, body=data.body)
    session.add(comment)
    TASKS.audit(session, principal, task, "task.comment")
    await session.flush()
    return CommentOut(
        id=comment.id,
        task_id=task.id,
        author_id=principal.user_id,
        author_name=principal.full_name,
        body=comment.body,
        created_at=comment.created_at,
    )


async def comments(session: AsyncSession, principal: Principal, task_id: uuid.UUID) -> list[CommentOut]:
    task = await TASKS.get(session, principal, task_id, "task.comments", need="read")
    rows = list(
        (
            await session.scalars(
                select(TaskComment).where(TaskComment.task_id == task.id).order_by(TaskComment.created_at)
            )
        ).all()
    )
    users = await staff.names(session, (c.author_id for c in rows))
    TASKS.audit(session, principal, task, "task.comments")
    return [
        CommentOut(
            id=c.id,
            task_id=task.id,
            author_id=c.author_id,
            author_name=users.get(c.author_id) if c.author_id else None,
            body=c.body,
            created_at=c.created_at,
        )
        for c in rows
    ]


async def history(session: AsyncSession, principal: Principal, task_id: uuid.UUID) -> list[StatusChangeOut]:
    task = await TASKS.get(session, principal, task_id, "task.history", need="read")
    rows = await session.scalars(
        select(TaskStatusChange).where(TaskStatusChange.task_id == task.id).order_by(TaskStatusChange.changed_at)
    )
    TASKS.audit(session, principal, task, "task.history")
    return [
        StatusChangeOut(
            from_status=r.from_status,
            to_status=r.to_status,
            reason=r.reason,
            changed_by=r.changed_by,
            changed_at=r.changed_at,
        )
        for r in rows.all()
    ]


@lru_cache(maxsize=64)
def _queue_query(queue: str, by_status: bool, by_patient: bool, by_priority: bool, by_assignee: bool) -> Select[Any]:
    """A work queue's query for one combination of filters, built once (building it cost more than running it);
    the values come as parameters: ``user_id``, ``now``, ``status``, ``patient_id``, ``priority``,
    ``assignee_id``, ``limit`` and ``offset``. It selects a task's columns (read as plain rows: a queue changes
    nothing) and its patient's name."""
    me: BindParameter[Any] = bindparam("user_id")
    columns = [getattr(Task, attribute.key) for attribute in sa_inspect(Task).column_attrs]
    query = select(*columns, Patient.given_name, Patient.family_name).join(Patient, Patient.id == Task.patient_id)
    if queue == "mine":
        query = query.where((Task.owner_id == me) | (Task.assignee_id == me))
    elif queue == "team":
        my_patients = (
            select(CareTeam.patient_id)
            .join(CareTeamMember, CareTeamMember.team_id == CareTeam.id)
            .where(CareTeamMember.user_id == me)
        )
        query = query.where(Task.patient_id.in_(my_patients))
    elif queue == "overdue":
        query = query.where(Task.due_at < bindparam("now"), Task.status.in_(OPEN_STATUSES))
    if by_status:
        query = query.where(Task.status == bindparam("status"))
    elif queue != "all":
        query = query.where(Task.status.in_(OPEN_STATUSES))
    if by_patient:
        query = query.where(Task.patient_id == bindparam("patient_id"))
    if by_priority:
        query = query.where(Task.priority == bindparam("priority"))
    if by_assignee:
        query = query.where(Task.assignee_id == bindparam("assignee_id"))
    query = query.order_by(Task.due_at.is_(None), Task.due_at, PRIORITY_RANK, Task.created_at, Task.id)
    return prebuilt(query.limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer)))


async def queue(
    session: AsyncSession,
    principal: Principal,
    *,
    queue: str = "mine",
    patient_id: uuid.UUID | None = None,
    status: str | None = None,
    priority: str | None = None,
    assignee_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[TaskOut]:
    """A work queue, most urgent first: by due time (undated last), then priority (stat first).

    ``mine``: tasks the caller owns or is assigned; ``team``: tasks of the patients whose care team the caller
    is on; ``overdue``: open tasks past their due time; ``all``: every task. Without a ``status`` filter, the
    queues show open tasks only (``all`` shows every status).
    """
    principal.require("tasks", "read")
    now = utcnow()
    shape = (queue, status is not None, patient_id is not None, priority is not None, assignee_id is not None)
    params = {"user_id": principal.user_id, "now": now, "limit": limit, "offset": offset}
    params.update(status=status, patient_id=patient_id, priority=priority, assignee_id=assignee_id)
    query = _queue_query(*shape)
    rows = await plain_rows(session, query, params)
    for row in rows:
        TASKS.audit_ids(session, principal, "task.search", row.id, row.patient_id)
    return [to_out(row, now, f"{row.given_name} {row.family_name}") for row in rows]
