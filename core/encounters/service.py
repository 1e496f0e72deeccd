"""Recording discharges. A discharge emits ``encounter.discharged``, which starts the transition-of-care rule."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.db import utcnow
from core.encounters.models import Encounter
from core.encounters.schemas import DischargeCreate, EncounterOut
from core.errors import Conflict, InvalidInput
from core.inputs import to_utc
from core.patients.service import require_patient
from core.principal import Principal
from tenants.models import Tenant

RESOURCE = "Encounter"


def to_out(encounter: Encounter) -> EncounterOut:
    return EncounterOut(
        id=encounter.id,
        patient_id=encounter.patient_id,
        kind=encounter.kind,
        admitted_at=encounter.admitted_at,
        discharged_at=encounter.discharged_at,
        disposition=encounter.disposition,
        note=encounter.note,
        recorded_by=encounter.recorded_by,
        created_at=encounter.created_at,
        data_category=encounter.data_category,
        status=encounter.status,
        location=encounter.location,
        diagnoses=list(encounter.diagnoses or []),
        source=encounter.source,
        external_id=encounter.external_id,
    )


async def record_discharge(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, data: DischargeCreate
) -> EncounterOut:
    principal.require("encounters", "write")
    patient = await require_patient(session, principal, patient_id, "encounter.discharge")
    kind = await session.scalar(select(Tenant.kind).where(Tenant.id == principal.tenant_id))
    if kind != "hospital":
        raise Conflict("discharges are recorded by hospitals", field="patient_id")
    admitted = to_utc(data.admitted_at, "admitted_at")
    discharged = to_utc(data.discharged_at, "discharged_at")
    if discharged < admitted:
        raise InvalidInput("the discharge cannot come before the admission", field="discharged_at")
    if discharged > utcnow():
        raise InvalidInput("a discharge is recorded once it has happened", field="discharged_at")
    encounter = Encounter(
        id=uuid.uuid4(),
        patient_id=patient.id,
        kind=data.kind,
        admitted_at=admitted,
        discharged_at=discharged,
        disposition=data.disposition,
        note=data.note,
        data_category=data.data_category,
        recorded_by=principal.user_id,
    )
    session.add(encounter)
    audit.record(
        session,
        principal.actor,
        action="encounter.discharge",
        resource_type=RESOURCE,
        resource_id=encounter.id,
        patient_id=patient.id,
        detail={"kind": encounter.kind, "disposition": encounter.disposition},
    )
    outbox.emit(
        session,
        "encounter.discharged",
        {"encounter_id": str(encounter.id), "patient_id": str(patient.id)},
        aggregate_id=patient.id,
    )
    await session.flush()
    return to_out(encounter)


async def list_for_patient(session: AsyncSession, principal: Principal, patient_id: uuid.UUID) -> list[EncounterOut]:
    principal.require("encounters", "read")
    patient = await require_patient(session, principal, patient_id, "encounter.list")
    rows = await session.scalars(
        select(Encounter).where(Encounter.patient_id == patient.id).order_by(Encounter.admitted_at.desc(), Encounter.id)
    )
    audit.record(session, principal.actor, action="encounter.list", resource_type=RESOURCE, patient_id=patient.id)
    return [to_out(e) for e in rows]
