"""Input and output shapes of lab results and education items (msgspec structs, unknown fields refused)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.careplans.schemas import SensitiveLabel
from core.inputs import SAFE_LINE, SAFE_TEXT

Interpretation = Literal["normal", "abnormal", "critical"]
ResultStatus = Literal["preliminary", "final", "corrected", "cancelled"]
# A LOINC code ("2345-7"), a LOINC part or answer code ("LP14635-4", "LA6576-8"), or a local code of the same shape.
Code = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=r"^[A-Z]{0,3}[0-9]{1,10}-[0-9]$")]
Display = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]
Value = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=SAFE_LINE)]
Unit = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=SAFE_LINE)]
ReferenceRange = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=SAFE_LINE)]
AwareDateTime = Annotated[datetime, msgspec.Meta(tz=True)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_LINE)]
Body = Annotated[str, msgspec.Meta(min_length=1, max_length=20_000, pattern=SAFE_TEXT)]
HttpsUrl = Annotated[str, msgspec.Meta(min_length=9, max_length=500, pattern=r"^https://[^\s/?#@]+(/[^\s]*)?$")]


class ResultCreate(msgspec.Struct, forbid_unknown_fields=True):
    code: Code
    display: Display
    value: Value
    interpretation: Interpretation
    status: ResultStatus
    effective_at: AwareDateTime
    unit: Unit | None = None
    reference_range: ReferenceRange | None = None
    released_to_patient: bool = False
    ordered_by: uuid.UUID | None = None
    data_category: SensitiveLabel | None = None


class ResultOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    code: str
    display: str
    value: str
    unit: str | None
    reference_range: str | None
    interpretation: str
    status: str
    effective_at: datetime
    ordered_by: uuid.UUID | None
    released_to_patient: bool
    acknowledged_at: datetime | None
    acknowledged_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    # From the result's arrival in carehub to its acknowledgement (critical results escalate while it grows).
    time_to_acknowledge_seconds: int | None = None
    escalation_level: int = 0
    data_category: str | None = None


class EducationCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    body: Body | None = None
    url: HttpsUrl | None = None


class EducationOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    title: str
    body: str | None
    url: str | None
    assigned_by: uuid.UUID | None
    read_at: datetime | None
    created_at: datetime
