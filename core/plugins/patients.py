"""Finding a tenant's patient by the identifiers a feed names (the tenant filter applies as everywhere)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.patients.models import Patient, PatientIdentifier
from plugin_sdk.payloads import PatientRef


async def owners_of(session: AsyncSession, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], uuid.UUID]:
    """The tenant's patients holding these (system, value) identifiers. Asked as ``system IN (...) AND value IN
    (...)``, which the index on (tenant, system, value) answers whatever the statistics; a list of row values
    was planned as a scan of the system's every identifier on a table not yet analyzed (0.5 s at 2,000)."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = await session.execute(
        select(PatientIdentifier.system, PatientIdentifier.value, PatientIdentifier.patient_id).where(
            PatientIdentifier.system.in_(sorted({s for s, _ in wanted})),
            PatientIdentifier.value.in_(sorted({v for _, v in wanted})),
        )
    )
    return {(s, v): patient_id for s, v, patient_id in rows if (s, v) in wanted}


async def find_patient(session: AsyncSession, ref: PatientRef) -> Patient | None:
    """The tenant's patient with one of ``ref``'s identifiers (the first of them that one holds)."""
    pairs = [(i.system, i.value) for i in ref.identifiers]
    owners = await owners_of(session, pairs)
    for pair in pairs:
        if pair in owners:
            return await session.get(Patient, owners[pair])
    return None
