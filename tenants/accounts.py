"""Sign-in, resolving a token's caller, sign-out and password change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.errors import Forbidden, InvalidInput, Unauthorized
from tenants import passwords
from tenants.context import tenant_context
from tenants.models import Membership, Tenant, User

ACTIVE_STATUSES = ("pending", "active")
BAD_LOGIN = "email, password or tenant is wrong"


@dataclass(frozen=True)
class Caller:
    user_id: uuid.UUID
    email: str
    full_name: str
    tenant_id: uuid.UUID | None
    roles: tuple[str, ...]
    token_version: int


async def sign_in(db: async_sessionmaker[AsyncSession], email: str, password: str, tenant_slug: str | None) -> Caller:
    """Check the credentials and the membership the token will be scoped to.

    Every attempt at a known tenant, successful or not, is written to that tenant's audit log.

    Raises:
        Unauthorized: wrong email, password, tenant, or no membership there (one message for all).
        Forbidden: the tenant is suspended.
    """
    email = email.strip().lower()
    async with db() as session:
        user = await session.scalar(select(User).where(User.email == email))
        tenant = await session.scalar(select(Tenant).where(Tenant.slug == tenant_slug)) if tenant_slug else None
    ok = passwords.verify_password(user.password_hash if user else None, password)
    valid_user = user is not None and ok and user.is_active
    if tenant_slug is None:
        if not valid_user or user is None:
            raise Unauthorized(BAD_LOGIN)
        if user.network_role != "network_admin":
            raise InvalidInput("tenant is required for users who are not network administrators", field="tenant")
        return Caller(user.id, user.email, user.full_name, None, ("network_admin",), user.token_version)
    if tenant is None:
        raise Unauthorized(BAD_LOGIN)
    with tenant_context(tenant.id):
        async with db() as session, session.begin():
            roles: tuple[str, ...] = ()
            if valid_user and user is not None:
                membership = await session.scalar(
                    select(Membership).where(Membership.user_id == user.id, Membership.is_active.is_(True))
                )
                roles = tuple(membership.roles) if membership else ()
            allowed = bool(roles) and tenant.status in ACTIVE_STATUSES
            audit.record(
                session,
                audit.Actor(user.id if user is not None and roles else None, roles),
                action="auth.sign_in",
                resource_type="User",
                resource_id=user.id if user is not None and roles else None,
                outcome="success" if allowed else "denied",
                detail=None if allowed else {"email": email},
            )
    if user is None or not roles:
        raise Unauthorized(BAD_LOGIN)
    if tenant.status not in ACTIVE_STATUSES:
        raise Forbidden(f"tenant {tenant.slug} is {tenant.status}")
    return Caller(user.id, user.email, user.full_name, tenant.id, roles, user.token_version)


async def resolve(session: AsyncSession, user_id: uuid.UUID, tenant_id: uuid.UUID | None, token_version: int) -> Caller:
    """Re-check, on every request, that the token's user, tenant and membership still stand.

    Runs in the request's own transaction (in the token's tenant context): one query when all is well.
    """
    if tenant_id is None:
        user = await session.get(User, user_id)
        _check_user(user, token_version)
        assert user is not None
        if user.network_role != "network_admin":
            raise Unauthorized("the token is no longer valid for the network")
        return Caller(user.id, user.email, user.full_name, None, ("network_admin",), user.token_version)
    row = (
        await session.execute(
            select(User, Tenant, Membership.roles)
            .join(Membership, Membership.user_id == User.id)
            .join(Tenant, Tenant.id == Membership.tenant_id)
            .where(User.id == user_id, Membership.is_active.is_(True))
        )
    ).first()
    if row is None:
        _check_user(await session.get(User, user_id), token_version)
        if await session.get(Tenant, tenant_id) is None:
            raise Unauthorized("the token's tenant no longer exists")
        raise Unauthorized("the token's membership was removed")
    user, tenant, roles = row
    _check_user(user, token_version)
    if tenant.status not in ACTIVE_STATUSES:
        raise Forbidden(f"tenant {tenant.slug} is {tenant.status}")
    if not roles:
        raise Unauthorized("the token's membership has no roles")
    return Caller(user.id, user.email, user.full_name, tenant.id, tuple(roles), user.token_version)


def _check_user(user: User | None, token_version: int) -> None:
    if user is None or not user.is_active:
        raise Unauthorized("the token's user no longer exists or is disabled")
    if user.token_version != token_version:
        raise Unauthorized("the token was revoked (signed out or password changed)")


async def revoke_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Sign out everywhere: every token issued so far stops working."""
    user = await session.get(User, user_id)
    if user is not None:
        user.token_version += 1


async def change_password(
    session: AsyncSession, actor: audit.Actor, user_id: uuid.UUID, current: str, new: str
) -> None:
    user = await session.get(User, user_id)
    if user is None or not passwords.verify_password(user.password_hash, current):
        raise InvalidInput("current_password is wrong", field="current_password")
    passwords.check_strength(new, "new_password")
    if current == new:
        raise InvalidInput("new_password must differ from the current one", field="new_password")
    user.password_hash = passwords.hash_password(new)
    user.token_version += 1
