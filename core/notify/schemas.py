"""Input and output shapes: a tenant's alert rule settings, notification preferences, notifications."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.inputs import SAFE_LINE, Email, normalise_emails

ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM, 24 h")]
TimeZone = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Paris", pattern=SAFE_LINE)
]
ExternalChannel = Literal["email", "sms"]
Severity = Literal["info", "warning", "critical"]
Minutes = Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 60)]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164, e.g. +15551234567")]


class QuietHours(msgspec.Struct, forbid_unknown_fields=True):
    """Local times between which nothing but urgent messages goes out (across midnight when end < start)."""

    start: ClockTime
    end: ClockTime


class AlertSettingsBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A tenant's alert rules. Every field has a default; PUT replaces the whole set."""

    # The tenant's local time zone: quiet hours and the times written in messages are in it.
    timezone: TimeZone = "UTC"
    # Minutes past the due time at which an open task alerts its assignee, then its owner, then the care team lead.
    overdue_escalation_minutes: Annotated[list[Minutes], msgspec.Meta(min_length=1, max_length=3)] = msgspec.field(
        default_factory=lambda: [0, 60, 240]
    )
    # When the follow-up task of a no-show is due, in hours after the rule runs.
    noshow_follow_up_hours: Annotated[int, msgspec.Meta(ge=1, le=720)] = 24
    # Appointment reminders to patients (the offsets are each appointment's own).
    appointment_reminders: bool = True
    # Minutes without acknowledgement after which a critical result alerts the care team lead, then the
    # tenant administrators.
    critical_result_escalation_minutes: Annotated[
        list[Annotated[int, msgspec.Meta(ge=1, le=24 * 60)]], msgspec.Meta(min_length=1, max_length=2)
    ] = msgspec.field(default_factory=lambda: [30, 60])
    care_plan_change_alerts: bool = True
    # Patients hear nothing but urgent messages in these hours unless their own preference says otherwise.
    patient_quiet_hours: QuietHours | None = msgspec.field(default_factory=lambda: QuietHours("21:00", "08:00"))


class AlertSettingsOut(AlertSettingsBody, kw_only=True):
    updated_at: datetime | None = None
    updated_by: uuid.UUID | None = None


class PreferencesBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How someone wants to be reached besides in-app (which is always on)."""

    channels: Annotated[list[ExternalChannel], msgspec.Meta(max_length=2)] = msgspec.field(default_factory=list)
    # Staff: the least severe alert that also goes out on those channels.
    min_severity: Severity = "critical"
    email: Email | None = None
    phone: Phone | None = None
    quiet_hours: QuietHours | None = None
    timezone: TimeZone | None = None

    def __post_init__(self) -> None:
        normalise_emails(self, "email")


class PreferencesOut(PreferencesBody, kw_only=True):
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        """What is shown was checked when it was stored (an address kept from before a stricter check must
        still be readable)."""


class NotificationOut(msgspec.Struct):
    id: uuid.UUID
    channel: str
    kind: str
    subject: str
    text: str
    status: str
    address: str | None
    created_at: datetime
    not_before: datetime | None
    sent_at: datetime | None
    read_at: datetime | None
    last_error: str | None
