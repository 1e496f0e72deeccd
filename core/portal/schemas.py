"""What the patient portal shows. Separate shapes from the staff API, built field by field, so that a
staff-only field (notes, author and owner ids, reminders, escalations) can never reach a patient by accident."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import msgspec

from core.messaging.schemas import Attachments, Body, Subject
from core.patients.schemas import Address


class TeamMember(msgspec.Struct):
    name: str | None
    role: str
    is_lead: bool


class Me(msgspec.Struct):
    """The patient's own demographics and contact details, and who is on their care team."""

    given_name: str
    family_name: str
    birth_date: date
    phone: str | None
    email: str | None
    address: Address | None
    language: str | None
    care_team: list[TeamMember]


class Goal(msgspec.Struct):
    id: uuid.UUID
    description: str
    measure: str | None
    target_value: str | None
    due_date: date | None
    lifecycle_status: str
    achievement_status: str


class Activity(msgspec.Struct):
    id: uuid.UUID
    kind: str
    description: str
    status: str


class CarePlan(msgspec.Struct):
    id: uuid.UUID
    title: str
    description: str | None
    status: str
    period_start: date | None
    period_end: date | None
    structured: dict[str, Any] | None
    goals: list[Goal]
    activities: list[Activity]
    updated_at: datetime


class Task(msgspec.Struct):
    """Something the patient is asked to do."""

    id: uuid.UUID
    title: str
    description: str | None
    due_at: datetime | None
    priority: str
    status: str
    overdue: bool
    completed_at: datetime | None


class Appointment(msgspec.Struct):
    id: uuid.UUID
    kind: str
    start_at: datetime
    end_at: datetime
    location: str | None
    video_link: str | None
    reason: str | None
    status: str
    participant_name: str | None


class Result(msgspec.Struct):
    id: uuid.UUID
    code: str
    display: str
    value: str
    unit: str | None
    reference_range: str | None
    interpretation: str
    status: str
    effective_at: datetime


class Diagnosis(msgspec.Struct):
    system: str | None
    code: str | None
    display: str | None


class Encounter(msgspec.Struct):
    """A hospital stay or visit (the staff's note on it is left out)."""

    id: uuid.UUID
    kind: str
    status: str
    admitted_at: datetime
    discharged_at: datetime | None
    disposition: str | None
    location: str | None
    diagnoses: list[Diagnosis]


class Condition(msgspec.Struct):
    id: uuid.UUID
    code_system: str
    code: str
    display: str | None
    clinical_status: str
    onset_at: datetime | None
    abated_at: datetime | None


class EducationItem(msgspec.Struct):
    id: uuid.UUID
    title: str
    body: str | None
    url: str | None
    assigned_at: datetime
    read_at: datetime | None


class ThreadCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A new conversation with the patient's care team, and its first message."""

    subject: Subject
    body: Body
    attachments: Attachments = msgspec.field(default_factory=list)


class Participant(msgspec.Struct):
    id: uuid.UUID
    name: str
    is_patient: bool


class Thread(msgspec.Struct):
    id: uuid.UUID
    subject: str
    created_at: datetime
    last_message_at: datetime
    participants: list[Participant]
    unread_count: int


class Author(msgspec.Struct):
    participant_id: uuid.UUID
    name: str
    is_patient: bool


class Attachment(msgspec.Struct):
    id: uuid.UUID
    name: str
    content_type: str
    size: int
    sha256: str


class Receipt(msgspec.Struct):
    participant_id: uuid.UUID
    read_at: datetime


class Message(msgspec.Struct):
    id: uuid.UUID
    original_id: uuid.UUID
    version: int
    author: Author
    body: str | None
    deleted: bool
    edited: bool
    sent_at: datetime
    attachments: list[Attachment]
    read_by: list[Receipt]
