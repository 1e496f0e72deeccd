"""Output shape of conditions."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec


class ConditionOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    code_system: str
    code: str
    display: str | None
    clinical_status: str
    onset_at: datetime | None
    abated_at: datetime | None
    data_category: str | None
    source: str
    external_id: str
    updated_at: datetime
