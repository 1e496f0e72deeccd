"""Output shapes of the alert inbox."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class AlertOut(msgspec.Struct):
    id: uuid.UUID
    kind: str
    severity: str
    title: str
    body: str | None
    state: str
    patient_id: uuid.UUID | None
    task_id: uuid.UUID | None
    subject_type: str | None
    subject_id: uuid.UUID | None
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
