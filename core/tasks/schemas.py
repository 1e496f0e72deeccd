"""Input and output shapes of tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.careplans.schemas import SensitiveLabel
from core.inputs import SAFE_LINE, SAFE_TEXT

Priority = Literal["routine", "urgent", "asap", "stat"]
TaskStatus = Literal["requested", "accepted", "in_progress", "completed", "cancelled", "failed"]
Queue = Literal["mine", "team", "overdue", "all"]
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]
LongText = Annotated[str, msgspec.Meta(max_length=10_000, pattern=SAFE_TEXT)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=SAFE_TEXT)]
TemplateCode = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=SAFE_LINE)]


class TaskTemplate(msgspec.Struct, frozen=True):
    code: str
    title: str
    description: str
    priority: str
    due_in_hours: int


class TaskCreate(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: uuid.UUID
    title: Title | None = None
    description: LongText | None = None
    template_code: TemplateCode | None = None
    care_plan_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    for_patient: bool = False
    due_at: AwareDateTime | None = None
    priority: Priority | None = None
    data_category: SensitiveLabel | None = None


class TaskUpdate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: LongText | msgspec.UnsetType | None = msgspec.UNSET
    owner_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    assignee_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    for_patient: bool | msgspec.UnsetType = msgspec.UNSET
    due_at: AwareDateTime | msgspec.UnsetType | None = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    # null removes the label.
    data_category: SensitiveLabel | msgspec.UnsetType | None = msgspec.UNSET


class Transition(msgspec.Struct, forbid_unknown_fields=True):
    status: TaskStatus
    reason: Reason | None = None


class Escalation(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class CommentIn(msgspec.Struct, forbid_unknown_fields=True):
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=5000, pattern=SAFE_TEXT)]


class TaskOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    # The patient's name, as a work queue shows it.
    patient_name: str | None
    care_plan_id: uuid.UUID | None
    title: str
    description: str | None
    template_code: str | None
    owner_id: uuid.UUID
    assignee_id: uuid.UUID | None
    for_patient: bool
    due_at: datetime | None
    priority: str
    status: str
    status_reason: str | None
    escalation_level: int
    overdue: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    data_category: str | None


class CommentOut(msgspec.Struct):
    id: uuid.UUID
    task_id: uuid.UUID
    author_id: uuid.UUID | None
    author_name: str | None
    body: str
    created_at: datetime


class StatusChangeOut(msgspec.Struct):
    from_status: str | None
    to_status: str
    reason: str | None
    changed_by: uuid.UUID | None
    changed_at: datetime
