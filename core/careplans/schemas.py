"""Input and output shapes of care plans and their templates."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from core.inputs import SAFE_LINE, SAFE_TEXT

PlanStatus = Literal["draft", "active", "on-hold", "completed", "revoked"]
GoalLifecycle = Literal["proposed", "active", "on-hold", "completed", "cancelled"]
GoalAchievement = Literal[
    "in-progress",
    "improving",
    "worsening",
    "no-change",
    "achieved",
    "sustaining",
    "not-achieved",
    "no-progress",
    "not-attainable",
]
ActivityKind = Literal["task", "appointment", "education", "referral", "other"]
ActivityStatus = Literal["not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled"]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]
Description = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=SAFE_TEXT)]
LongText = Annotated[str, msgspec.Meta(max_length=10_000, pattern=SAFE_TEXT)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.\-]*$")]
Short = Annotated[str, msgspec.Meta(max_length=200, pattern=SAFE_LINE)]
# A label that puts one record in a sensitive consent category instead of its type's (see core.consent.categories).
SensitiveLabel = Literal["behavioral_health", "substance_use_disorder", "social_needs"]


class GoalIn(msgspec.Struct, forbid_unknown_fields=True):
    description: Description
    measure: Short | None = None
    target_value: Annotated[str, msgspec.Meta(max_length=100, pattern=SAFE_LINE)] | None = None
    due_date: date | None = None
    lifecycle_status: GoalLifecycle = "active"
    achievement_status: GoalAchievement = "in-progress"


class GoalUpdate(msgspec.Struct, forbid_unknown_fields=True):
    description: Description | msgspec.UnsetType = msgspec.UNSET
    measure: Short | msgspec.UnsetType | None = msgspec.UNSET
    target_value: Annotated[str, msgspec.Meta(max_length=100, pattern=SAFE_LINE)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )
    due_date: date | msgspec.UnsetType | None = msgspec.UNSET
    lifecycle_status: GoalLifecycle | msgspec.UnsetType = msgspec.UNSET
    achievement_status: GoalAchievement | msgspec.UnsetType = msgspec.UNSET


class ActivityIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: ActivityKind
    description: Description
    status: ActivityStatus = "not-started"
    task_id: uuid.UUID | None = None
    appointment_id: uuid.UUID | None = None


class ActivityUpdate(msgspec.Struct, forbid_unknown_fields=True):
    description: Description | msgspec.UnsetType = msgspec.UNSET
    status: ActivityStatus | msgspec.UnsetType = msgspec.UNSET
    task_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    appointment_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET


class TemplateCreate(msgspec.Struct, forbid_unknown_fields=True):
    code: Code
    name: Title
    structured_schema: dict[str, Any]
    description: LongText | None = None
    condition: Short | None = None
    goals: Annotated[list[GoalIn], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)
    activities: Annotated[list[ActivityIn], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)


class TemplateUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Rename, describe or retire a template. Its schema never changes (plans were validated against it):
    publish a new template under a new code instead."""

    name: Title | msgspec.UnsetType = msgspec.UNSET
    description: LongText | msgspec.UnsetType | None = msgspec.UNSET
    condition: Short | msgspec.UnsetType | None = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class TemplateOut(msgspec.Struct):
    id: uuid.UUID
    code: str
    name: str
    description: str | None
    condition: str | None
    structured_schema: dict[str, Any]
    goals: list[GoalIn]
    activities: list[ActivityIn]
    active: bool
    created_at: datetime


class CarePlanCreate(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: uuid.UUID
    template_id: uuid.UUID | None = None
    title: Title | None = None
    description: LongText | None = None
    status: Literal["draft", "active"] = "draft"
    period_start: date | None = None
    period_end: date | None = None
    structured: dict[str, Any] | None = None
    staff_note: LongText | None = None
    goals: Annotated[list[GoalIn], msgspec.Meta(max_length=50)] | None = None
    activities: Annotated[list[ActivityIn], msgspec.Meta(max_length=50)] | None = None
    data_category: SensitiveLabel | None = None


class CarePlanUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """A partial update. ``version``, when given, must be the plan's current version (else 409)."""

    version: int | msgspec.UnsetType = msgspec.UNSET
    title: Title | msgspec.UnsetType = msgspec.UNSET
    description: LongText | msgspec.UnsetType | None = msgspec.UNSET
    status: PlanStatus | msgspec.UnsetType = msgspec.UNSET
    period_start: date | msgspec.UnsetType | None = msgspec.UNSET
    period_end: date | msgspec.UnsetType | None = msgspec.UNSET
    structured: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    staff_note: LongText | msgspec.UnsetType | None = msgspec.UNSET
    # null removes the label: the plan is shared as a care plan again.
    data_category: SensitiveLabel | msgspec.UnsetType | None = msgspec.UNSET


class GoalOut(msgspec.Struct):
    id: uuid.UUID
    description: str
    measure: str | None
    target_value: str | None
    due_date: date | None
    lifecycle_status: str
    achievement_status: str


class ActivityOut(msgspec.Struct):
    id: uuid.UUID
    kind: str
    description: str
    status: str
    task_id: uuid.UUID | None
    appointment_id: uuid.UUID | None


class CarePlanOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    template_id: uuid.UUID | None
    title: str
    description: str | None
    status: str
    period_start: date | None
    period_end: date | None
    structured: dict[str, Any] | None
    staff_note: str | None
    version: int
    author_id: uuid.UUID | None
    goals: list[GoalOut]
    activities: list[ActivityOut]
    created_at: datetime
    updated_at: datetime
    data_category: str | None


class VersionOut(msgspec.Struct):
    version: int
    changed_by: uuid.UUID | None
    changed_by_name: str | None
    changed_at: datetime
    changes: list[dict[str, Any]]


class VersionDetail(VersionOut):
    plan: dict[str, Any]
