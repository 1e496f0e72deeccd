"""Input and output shapes of care teams."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.inputs import SAFE_LINE, Email, normalise_emails
from core.patients.schemas import Phone

TeamRole = Literal[
    "primary_care", "specialist", "care_manager", "nurse", "chw", "social_worker", "pharmacist", "caregiver", "other"
]
Text200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]


class MemberIn(msgspec.Struct, forbid_unknown_fields=True):
    """A user of the tenant (``user_id``), or an outside person (``name`` and optionally how to reach them)."""

    role: TeamRole
    user_id: uuid.UUID | None = None
    name: Text200 | None = None
    organisation: Text200 | None = None
    phone: Phone | None = None
    email: Email | None = None
    is_lead: bool = False

    def __post_init__(self) -> None:
        normalise_emails(self, "email")


class MemberUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: TeamRole | msgspec.UnsetType = msgspec.UNSET
    is_lead: bool | msgspec.UnsetType = msgspec.UNSET
    organisation: Text200 | msgspec.UnsetType | None = msgspec.UNSET
    phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    email: Email | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        normalise_emails(self, "email")


class CareTeamCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Text200 | None = None
    members: Annotated[list[MemberIn], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)


class MemberOut(msgspec.Struct):
    id: uuid.UUID
    user_id: uuid.UUID | None
    name: str | None
    organisation: str | None
    phone: str | None
    email: str | None
    role: str
    is_lead: bool
    external: bool


class CareTeamOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    name: str
    status: str
    members: list[MemberOut]
    created_at: datetime
    updated_at: datetime
