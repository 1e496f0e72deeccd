"""Staff of the caller's tenant, as referenced by care records (owners, assignees, team members)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from tenants.models import Membership, User


async def require_staff(session: AsyncSession, user_id: uuid.UUID, field: str) -> None:
    """Refuse (422 naming ``field``) a user who is not an active staff member of the caller's tenant.

    A user of another tenant answers exactly like an unknown id.
    """
    found = await session.scalar(
        select(Membership.id).where(
            Membership.user_id == user_id, Membership.is_active.is_(True), Membership.patient_id.is_(None)
        )
    )
    if found is None:
        raise InvalidInput("no active staff member of this tenant has this id", field=field)


async def active_staff(session: AsyncSession, user_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Those of ``user_ids`` who are active staff members of the caller's tenant, in the order given."""
    wanted = list(user_ids)
    if not wanted:
        return []
    rows = await session.scalars(
        select(Membership.user_id).where(
            Membership.user_id.in_(wanted), Membership.is_active.is_(True), Membership.patient_id.is_(None)
        )
    )
    active = set(rows.all())
    return [u for u in wanted if u in active]


async def names(
    session: AsyncSession, user_ids: Iterable[uuid.UUID | None], *, active_staff_only: bool = False
) -> dict[uuid.UUID, str]:
    """Full names of the given users who belong to the caller's tenant (others are left out).

    Records keep the names of people who have left (who wrote a comment, who changed a plan); with
    ``active_staff_only``, only current staff members are named (who to contact now).
    """
    wanted = {u for u in user_ids if u is not None}
    if not wanted:
        return {}
    query = select(User.id, User.full_name).join(Membership, Membership.user_id == User.id).where(User.id.in_(wanted))
    if active_staff_only:
        query = query.where(Membership.is_active.is_(True), Membership.patient_id.is_(None))
    rows = await session.execute(query)
    return {row[0]: row[1] for row in rows.all()}


async def holding(session: AsyncSession, *roles: str) -> list[uuid.UUID]:
    """The active staff members of the caller's tenant who hold the first of ``roles`` anyone holds (e.g. the
    privacy officers, else the administrators), oldest membership first; none if nobody holds any."""
    members = list(
        await session.scalars(
            select(Membership)
            .where(Membership.is_active.is_(True), Membership.patient_id.is_(None))
            .order_by(Membership.created_at, Membership.id)
        )
    )
    for role in roles:
        found = [m.user_id for m in members if role in (m.roles or [])]
        if found:
            return found
    return []
