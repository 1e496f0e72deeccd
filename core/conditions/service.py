"""Reading a patient's conditions (they arrive from EHR feeds; see core.plugins.effects)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.conditions.models import Condition
from core.conditions.schemas import ConditionOut
from core.patients.service import require_patient
from core.principal import Principal

RESOURCE = "Condition"


def to_out(row: Condition) -> ConditionOut:
    return ConditionOut(
        id=row.id,
        patient_id=row.patient_id,
        code_system=row.code_system,
        code=row.code,
        display=row.display,
        clinical_status=row.clinical_status,
        onset_at=row.onset_at,
        abated_at=row.abated_at,
        data_category=row.data_category,
        source=row.source,
        external_id=row.external_id,
        updated_at=row.updated_at,
    )


async def list_for_patient(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> list[ConditionOut]:
    principal.require("conditions", "read")
    patient = await require_patient(session, principal, patient_id, "condition.list")
    rows = await session.scalars(
        select(Condition).where(Condition.patient_id == patient.id).order_by(Condition.updated_at.desc(), Condition.id)
    )
    audit.record(session, principal.actor, action="condition.list", resource_type=RESOURCE, patient_id=patient.id)
    return [to_out(row) for row in rows]
