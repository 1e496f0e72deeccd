"""Input and output shapes of appointments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from core.careplans.schemas import SensitiveLabel
from core.inputs import SAFE_LINE, SAFE_TEXT

Kind = Literal["in_person", "phone", "video"]
Status = Literal["proposed", "booked", "arrived", "fulfilled", "cancelled", "noshow"]
Channel = Literal["in_app", "sms", "email"]
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
HttpsUrl = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^https://[^\s]+$")]
Text300 = Annotated[str, msgspec.Meta(min_length=1, max_length=300, pattern=SAFE_LINE)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=SAFE_TEXT)]
LongText = Annotated[str, msgspec.Meta(max_length=10_000, pattern=SAFE_TEXT)]


class Reminder(msgspec.Struct, forbid_unknown_fields=True):
    """How the patient wants to be reminded: channels, and hours before the start (none means no reminder)."""

    channels: Annotated[list[Channel], msgspec.Meta(max_length=3)] = msgspec.field(default_factory=list)
    offsets_hours: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=24 * 30)]], msgspec.Meta(max_length=5)] = (
        msgspec.field(default_factory=lambda: [72, 24])
    )


class AppointmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: uuid.UUID
    participant_id: uuid.UUID
    kind: Kind
    start_at: AwareDateTime
    end_at: AwareDateTime
    location: Text300 | None = None
    video_link: HttpsUrl | None = None
    reason: Reason | None = None
    status: Literal["proposed", "booked"] = "booked"
    reminder: Reminder | None = None
    staff_note: LongText | None = None
    data_category: SensitiveLabel | None = None


class AppointmentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    participant_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    kind: Kind | msgspec.UnsetType = msgspec.UNSET
    start_at: AwareDateTime | msgspec.UnsetType = msgspec.UNSET
    end_at: AwareDateTime | msgspec.UnsetType = msgspec.UNSET
    location: Text300 | msgspec.UnsetType | None = msgspec.UNSET
    video_link: HttpsUrl | msgspec.UnsetType | None = msgspec.UNSET
    reason: Reason | msgspec.UnsetType | None = msgspec.UNSET
    reminder: Reminder | msgspec.UnsetType = msgspec.UNSET
    staff_note: LongText | msgspec.UnsetType | None = msgspec.UNSET
    # null removes the label.
    data_category: SensitiveLabel | msgspec.UnsetType | None = msgspec.UNSET


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    status: Status
    reason: Reason | None = None


class AppointmentOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    participant_id: uuid.UUID
    kind: str
    start_at: datetime
    end_at: datetime
    location: str | None
    video_link: str | None
    reason: str | None
    status: str
    status_reason: str | None
    reminder: dict[str, Any]
    noshow_recorded_at: datetime | None
    staff_note: str | None
    created_at: datetime
    updated_at: datetime
    data_category: str | None
