"""A portal account stands only while its patient record does: checked on every request, with the caller."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select

from core.errors import Unauthorized
from core.patients.models import Patient

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


async def require_active_record(session: AsyncSession, patient_id: uuid.UUID) -> None:
    """Refuse the caller (401) when the portal account's patient record is gone or deactivated."""
    active = await session.scalar(select(Patient.active).where(Patient.id == patient_id))
    if not active:
        raise Unauthorized("the patient record of this portal account is deactivated")
