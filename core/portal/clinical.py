"""The patient's hospital stays and conditions in the portal, as the EHR feeds (or staff) recorded them.

They are the patient's own record: shown as soon as they are recorded, whatever label they carry (a label
decides what other facilities see, not what the patient sees). A stay entered in error (``cancelled``) is left
out, as cancelled results are. Lab results have their own rule: only those staff released (``service.results``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.conditions.models import Condition
from core.encounters.models import Encounter
from core.portal import schemas
from core.portal.service import own_patient, record_read
from core.principal import Principal

Row = TypeVar("Row", Encounter, Condition)


async def _own(
    session: AsyncSession,
    principal: Principal,
    model: type[Row],
    thing: str,
    *criteria: ColumnElement[bool],
    order: tuple[Any, ...],
    limit: int,
    offset: int,
) -> list[Row]:
    """The signed-in patient's rows of ``model``, one page; the reading audited with the ids shown."""
    patient_id = own_patient(principal, "read")
    query = select(model).where(model.patient_id == patient_id, *criteria).order_by(*order).limit(limit).offset(offset)
    rows = list(await session.scalars(query))
    record_read(session, principal, patient_id, thing, model.__name__, ids=[row.id for row in rows])
    return rows


async def encounters(
    session: AsyncSession, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[schemas.Encounter]:
    """The patient's stays and visits, the latest admission first."""
    order = (Encounter.admitted_at.desc(), Encounter.id)
    rows = await _own(
        session,
        principal,
        Encounter,
        "encounters",
        Encounter.status != "cancelled",
        order=order,
        limit=limit,
        offset=offset,
    )
    return [
        schemas.Encounter(
            id=e.id,
            kind=e.kind,
            status=e.status,
            admitted_at=e.admitted_at,
            discharged_at=e.discharged_at,
            disposition=e.disposition,
            location=e.location,
            diagnoses=[
                schemas.Diagnosis(system=d.get("system"), code=d.get("code"), display=d.get("display"))
                for d in e.diagnoses or []
            ],
        )
        for e in rows
    ]


async def conditions(
    session: AsyncSession, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[schemas.Condition]:
    """The patient's conditions, the latest reported first."""
    order = (Condition.updated_at.desc(), Condition.id)
    rows = await _own(session, principal, Condition, "conditions", order=order, limit=limit, offset=offset)
    return [
        schemas.Condition(
            id=c.id,
            code_system=c.code_system,
            code=c.code,
            display=c.display,
            clinical_status=c.clinical_status,
            onset_at=c.onset_at,
            abated_at=c.abated_at,
        )
        for c in rows
    ]
