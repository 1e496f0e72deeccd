"""Tenant administrators manage the users of their own tenant and their roles."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import utcnow
from core.errors import Conflict, NotFound
from core.principal import Principal
from tenants import passwords
from tenants.accounts import normalise_email
from tenants.models import Membership, User
from tenants.onboarding import revoke_invitations_by
from tenants.schemas import MemberOut, UserCreate

RESOURCE = "Membership"


def member_out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        email=user.email,
        full_name=user.full_name,
        roles=list(membership.roles),
        active=membership.is_active,
    )


async def list_members(session: AsyncSession, principal: Principal, *, limit: int, offset: int) -> list[MemberOut]:
    principal.require("users", "read")
    rows = await session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .order_by(User.email)
        .limit(limit)
        .offset(offset)
    )
    return [member_out(m, u) for m, u in rows.all()]


async def _member(session: AsyncSession, user_id: uuid.UUID) -> tuple[Membership, User]:
    row = (
        await session.execute(
            select(Membership, User).join(User, User.id == Membership.user_id).where(Membership.user_id == user_id)
        )
    ).first()
    if row is None:
        raise NotFound("user not found")
    return row[0], row[1]


async def get_member(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> MemberOut:
    principal.require("users", "read")
    return member_out(*await _member(session, user_id))


async def add_user(session: AsyncSession, principal: Principal, data: UserCreate) -> MemberOut:
    """Create an account in the caller's tenant.

    An email that already has an account (in this or another tenant) is refused: that person joins by
    invitation, proving who they are with their own password, and nothing of their account is shown here.
    """
    principal.require("users", "create")
    email = normalise_email(data.email)
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(
            "cannot create an account for this email: invite it instead (POST /api/v1/invitations)", field="email"
        )
    passwords.check_strength(data.password)
    user = User(
        id=uuid.uuid4(),
        email=email,
        full_name=data.full_name,
        password_hash=await passwords.hash_password_async(data.password),
    )
    session.add(user)
    await session.flush()
    membership = Membership(user_id=user.id, roles=sorted(set(data.roles)))
    session.add(membership)
    audit.record(
        session,
        principal.actor,
        action="user.add",
        resource_type=RESOURCE,
        resource_id=user.id,
        detail={"roles": membership.roles},
    )
    await session.flush()
    return member_out(membership, user)


async def set_roles(session: AsyncSession, principal: Principal, user_id: uuid.UUID, roles: list[str]) -> MemberOut:
    principal.require("users", "update")
    membership, user = await _member(session, user_id)
    if membership.patient_id is not None:
        raise Conflict("this is a patient's portal account: it holds the patient role only", field="roles")
    if user_id == principal.user_id and "tenant_admin" in membership.roles and "tenant_admin" not in roles:
        raise Conflict("you cannot remove your own tenant_admin role", field="roles")
    previous = list(membership.roles)
    membership.roles = sorted(set(roles))
    if "tenant_admin" in previous and "tenant_admin" not in membership.roles and principal.tenant_id:
        await revoke_invitations_by(session, user_id, principal.tenant_id)
    audit.record(
        session,
        principal.actor,
        action="user.roles",
        resource_type=RESOURCE,
        resource_id=user.id,
        detail={"from": previous, "to": membership.roles},
    )
    await session.flush()
    return member_out(membership, user)


async def remove_member(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> None:
    principal.require("users", "delete")
    membership, user = await _member(session, user_id)
    if user_id == principal.user_id:
        raise Conflict("you cannot remove yourself", field="user_id")
    membership.is_active = False
    membership.tokens_valid_after = utcnow()
    if principal.tenant_id is not None:
        await revoke_invitations_by(session, user_id, principal.tenant_id)
    audit.record(session, principal.actor, action="user.remove", resource_type=RESOURCE, resource_id=user.id)
    await session.flush()
