"""Lab results and education items in a patient's record. Every read and write is audited in its transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.db import utcnow
from core.errors import Conflict, InvalidInput
from core.patients.service import require_patient
from core.principal import Principal
from core.records import Records
from core.results.models import EducationItem, LabResult
from core.results.schemas import EducationCreate, EducationOut, ResultCreate, ResultOut
from core.staff import require_staff

RESULT = "LabResult"
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
EDUCATION = "EducationItem"


def result_out(result: LabResult) -> ResultOut:
    return ResultOut(
        id=result.id,
        patient_id=result.patient_id,
        code=result.code,
        display=result.display,
        value=result.value,
        unit=result.unit,
        reference_range=result.reference_range,
        interpretation=result.interpretation,
        status=result.status,
        effective_at=result.effective_at,
        ordered_by=result.ordered_by,
        released_to_patient=result.released_to_patient,
        acknowledged_at=result.acknowledged_at,
        acknowledged_by=result.acknowledged_by,
        created_at=result.created_at,
        updated_at=result.updated_at,
        time_to_acknowledge_seconds=(
            int((result.acknowledged_at - result.created_at).total_seconds()) if result.acknowledged_at else None
        ),
        escalation_level=result.escalation_level,
        data_category=result.data_category,
    )


RESULTS = Records(
    model=LabResult, resource_type=RESULT, permission="results", not_found="lab result not found", shape=result_out
)


def education_out(item: EducationItem) -> EducationOut:
    return EducationOut(
        id=item.id,
        patient_id=item.patient_id,
        title=item.title,
        body=item.body,
        url=item.url,
        assigned_by=item.assigned_by,
        read_at=item.read_at,
        created_at=item.created_at,
    )


def _event_payload(result: LabResult) -> dict[str, object]:
    return {
        "result_id": str(result.id),
        "patient_id": str(result.patient_id),
        "code": result.code,
        "interpretation": result.interpretation,
        "status": result.status,
    }


async def create_result(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, data: ResultCreate
) -> ResultOut:
    principal.require("results", "write")
    patient = await require_patient(session, principal, patient_id, "result.create")
    if data.effective_at > utcnow():
        raise InvalidInput("effective_at is in the future", field="effective_at")
    if data.effective_at < EARLIEST:
        raise InvalidInput("effective_at is before 1900", field="effective_at")
    if data.ordered_by is not None:
        await require_staff(session, data.ordered_by, "ordered_by")
    if data.released_to_patient and data.status == "cancelled":
        raise InvalidInput("a cancelled result cannot be released to the patient", field="released_to_patient")
    result = LabResult(
        id=uuid.uuid4(),
        patient_id=patient.id,
        code=data.code,
        display=data.display,
        value=data.value,
        unit=data.unit,
        reference_range=data.reference_range,
        interpretation=data.interpretation,
        status=data.status,
        effective_at=data.effective_at,
        ordered_by=data.ordered_by,
        released_to_patient=data.released_to_patient,
        data_category=data.data_category,
    )
    session.add(result)
    RESULTS.audit(session, principal, result, "result.create")
    outbox.emit(session, "result.created", _event_payload(result), aggregate_id=patient.id)
    if data.interpretation == "critical" and data.status != "cancelled":
        # Picked up by critical-value alerting.
        outbox.emit(session, "lab_result.critical_received", _event_payload(result), aggregate_id=patient.id)
    if data.released_to_patient:
        outbox.emit(session, "result.released", _event_payload(result), aggregate_id=patient.id)
    await session.flush()
    return result_out(result)


async def list_results(
    session: AsyncSession,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    interpretation: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ResultOut]:
    """The patient's results, newest first."""
    principal.require("results", "read")
    patient = await require_patient(session, principal, patient_id, "result.list")
    query = select(LabResult).where(LabResult.patient_id == patient.id)
    if interpretation is not None:
        query = query.where(LabResult.interpretation == interpretation)
    query = query.order_by(LabResult.effective_at.desc(), LabResult.id).limit(limit).offset(offset)
    results = list((await session.scalars(query)).all())
    audit.record(
        session,
        principal.actor,
        action="result.list",
        resource_type=RESULT,
        patient_id=patient.id,
        detail={"result_ids": [str(r.id) for r in results]},
    )
    return [result_out(r) for r in results]


async def read_result(session: AsyncSession, principal: Principal, result_id: uuid.UUID) -> ResultOut:
    result = await RESULTS.get(session, principal, result_id, "result.read", need="read")
    RESULTS.audit(session, principal, result, "result.read")
    return result_out(result)


async def release_result(session: AsyncSession, principal: Principal, result_id: uuid.UUID) -> ResultOut:
    """Show the result in the patient portal (releasing twice changes nothing)."""
    result = await RESULTS.get(session, principal, result_id, "result.release", need="write", for_update=True)
    if result.status == "cancelled":
        raise Conflict("a cancelled result cannot be released to the patient")
    if not result.released_to_patient:
        result.released_to_patient = True
        result.updated_at = utcnow()
        outbox.emit(session, "result.released", _event_payload(result), aggregate_id=result.patient_id)
    RESULTS.audit(session, principal, result, "result.release")
    await session.flush()
    return result_out(result)


async def acknowledge_result(session: AsyncSession, principal: Principal, result_id: uuid.UUID) -> ResultOut:
    """Record that a clinician has seen the result; the first acknowledgement stands."""
    result = await RESULTS.get(session, principal, result_id, "result.acknowledge", need="write", for_update=True)
    if result.acknowledged_at is None:
        now = utcnow()
        result.acknowledged_at = now
        result.acknowledged_by = principal.user_id
        result.updated_at = now
        payload = {
            **_event_payload(result),
            "acknowledged_by": str(principal.user_id),
            "seconds_to_acknowledge": int((now - result.created_at).total_seconds()),
        }
        outbox.emit(session, "result.acknowledged", payload, aggregate_id=result.patient_id)
    RESULTS.audit(session, principal, result, "result.acknowledge")
    await session.flush()
    return result_out(result)


async def assign_education(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, data: EducationCreate
) -> EducationOut:
    principal.require("education", "write")
    patient = await require_patient(session, principal, patient_id, "education.create", active=True)
    item = EducationItem(
        id=uuid.uuid4(),
        patient_id=patient.id,
        title=data.title,
        body=data.body,
        url=data.url,
        assigned_by=principal.user_id,
    )
    session.add(item)
    audit.record(
        session,
        principal.actor,
        action="education.create",
        resource_type=EDUCATION,
        resource_id=item.id,
        patient_id=patient.id,
    )
    outbox.emit(
        session,
        "education.assigned",
        {"education_id": str(item.id), "patient_id": str(patient.id)},
        aggregate_id=patient.id,
    )
    await session.flush()
    return education_out(item)


async def list_education(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, *, limit: int = 50, offset: int = 0
) -> list[EducationOut]:
    """The patient's education items, newest first."""
    principal.require("education", "read")
    patient = await require_patient(session, principal, patient_id, "education.list")
    query = (
        select(EducationItem)
        .where(EducationItem.patient_id == patient.id)
        .order_by(EducationItem.created_at.desc(), EducationItem.id)
        .limit(limit)
        .offset(offset)
    )
    items = list((await session.scalars(query)).all())
    audit.record(
        session,
        principal.actor,
        action="education.list",
        resource_type=EDUCATION,
        patient_id=patient.id,
        detail={"education_ids": [str(i.id) for i in items]},
    )
    return [education_out(i) for i in items]
