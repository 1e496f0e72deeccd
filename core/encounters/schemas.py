"""Input and output shapes of encounters."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.careplans.schemas import SensitiveLabel
from core.inputs import SAFE_TEXT, AwareDateTime

EncounterKind = Literal["inpatient", "emergency", "observation"]
Disposition = Literal["home", "home_health", "skilled_nursing", "rehabilitation", "hospice", "other"]


class DischargeCreate(msgspec.Struct, forbid_unknown_fields=True):
    """A finished stay: when the patient was admitted and discharged, and where they went."""

    admitted_at: AwareDateTime
    discharged_at: AwareDateTime
    kind: EncounterKind = "inpatient"
    disposition: Disposition = "home"
    note: Annotated[str, msgspec.Meta(max_length=2000, pattern=SAFE_TEXT)] | None = None
    # A psychiatric or substance use disorder stay: the transition of care then needs consent for that category.
    data_category: SensitiveLabel | None = None


class EncounterOut(msgspec.Struct):
    id: uuid.UUID
    patient_id: uuid.UUID
    kind: str
    admitted_at: datetime
    discharged_at: datetime | None
    disposition: str | None
    note: str | None
    recorded_by: uuid.UUID | None
    created_at: datetime
    data_category: str | None = None
    status: str = "finished"
    location: str | None = None
    diagnoses: list[dict[str, str | None]] = msgspec.field(default_factory=list)
    # The plugin that reported it (an EHR feed) and its id there; empty when staff recorded it.
    source: str | None = None
    external_id: str | None = None
