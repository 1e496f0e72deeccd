"""Who is on a patient's care team, for the code that must reach them (rules, alerts)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select

from core.careteams.models import CareTeam, CareTeamMember

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


async def lead_of(session: AsyncSession, patient_id: uuid.UUID) -> uuid.UUID | None:
    """The user who leads the patient's care team, or None."""
    return await session.scalar(
        select(CareTeamMember.user_id)
        .join(CareTeam, CareTeam.id == CareTeamMember.team_id)
        .where(CareTeam.patient_id == patient_id, CareTeamMember.is_lead.is_(True))
    )


async def users_of(session: AsyncSession, patient_id: uuid.UUID) -> list[uuid.UUID]:
    """The users on the patient's care teams (members without an account, such as a relative, are left out)."""
    rows = await session.scalars(
        select(CareTeamMember.user_id)
        .join(CareTeam, CareTeam.id == CareTeamMember.team_id)
        .where(CareTeam.patient_id == patient_id, CareTeamMember.user_id.is_not(None))
    )
    return [u for u in rows.all() if u is not None]
