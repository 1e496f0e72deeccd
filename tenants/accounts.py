"""Sign-in, resolving a token's caller, sign-out and password change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.db import utcnow
from core.errors import Forbidden, InvalidInput, Unauthorized
from tenants import passwords
from tenants.context import get_tenant_id, tenant_context
from tenants.isolation import plain_rows, prebuilt
from tenants.models import PATIENT_ROLE, Membership, Tenant, User

ACTIVE_STATUSES = ("pending", "active")
BAD_LOGIN = "email, password or tenant is wrong"
MAX_FAILED_LOGINS = 10
LOCKOUT = timedelta(minutes=15)


@dataclass(frozen=True)
class Caller:
    user_id: uuid.UUID
    email: str
    full_name: str
    tenant_id: uuid.UUID | None
    roles: tuple[str, ...]
    token_version: int
    tenant_status: str | None = None
    # The patient record of a portal account (role ``patient``); None for staff.
    patient_id: uuid.UUID | None = None


def normalise_email(email: str, field: str = "email") -> str:
    """Lower-case and strip an email; refuse one that normalisation made too long for the column."""
    normalised = email.strip().lower()
    if len(normalised) > 254:
        raise InvalidInput(f"{field} is longer than 254 characters", field=field)
    return normalised


async def check_password(db: async_sessionmaker[AsyncSession], user: User | None, password: str) -> bool:
    """Verify a password, counting failures and locking the account for a while after too many.

    Every place that takes a password for an existing account (sign-in, invitations) goes through here,
    so all guesses count against the same lock.
    """
    now = utcnow()
    locked = user is not None and user.locked_until is not None and user.locked_until > now
    ok = await passwords.verify_password_async(user.password_hash if user else None, password)
    if user is None:
        return False
    ok = ok and not locked and user.is_active
    if ok and user.failed_logins == 0:
        return True
    async with db() as session, session.begin():
        if ok:
            await session.execute(update(User).where(User.id == user.id).values(failed_logins=0, locked_until=None))
        elif not locked:
            # One atomic increment: concurrent guesses cannot overwrite each other's count.
            failures = await session.scalar(
                update(User)
                .where(User.id == user.id)
                .values(failed_logins=User.failed_logins + 1)
                .returning(User.failed_logins)
            )
            if failures is not None and failures >= MAX_FAILED_LOGINS:
                await session.execute(
                    update(User).where(User.id == user.id).values(failed_logins=0, locked_until=now + LOCKOUT)
                )
    return ok


async def sign_in(db: async_sessionmaker[AsyncSession], email: str, password: str, tenant_slug: str | None) -> Caller:
    """Check the credentials and the membership the token will be scoped to.

    Every attempt by a member of the tenant, successful or not, is written to that tenant's audit log;
    attempts by strangers are not (a tenant's log never holds other people's emails).

    Raises:
        Unauthorized: wrong email, password, tenant, or no membership there (one answer for all).
        Forbidden: the tenant is suspended.
    """
    email = normalise_email(email)
    async with db() as session:
        user = await session.scalar(select(User).where(User.email == email))
        tenant = await session.scalar(select(Tenant).where(Tenant.slug == tenant_slug)) if tenant_slug else None
    ok = await check_password(db, user, password)
    if tenant_slug is None:
        if not ok or user is None or user.network_role != "network_admin":
            raise Unauthorized(BAD_LOGIN)
        return Caller(user.id, user.email, user.full_name, None, ("network_admin",), user.token_version)
    if tenant is None or user is None:
        raise Unauthorized(BAD_LOGIN)
    with tenant_context(tenant.id):
        async with db() as session, session.begin():
            membership = await session.scalar(
                select(Membership).where(
                    Membership.user_id == user.id, Membership.tenant_id == tenant.id, Membership.is_active.is_(True)
                )
            )
            if membership is None:
                raise Unauthorized(BAD_LOGIN)
            roles = (PATIENT_ROLE,) if membership.patient_id is not None else tuple(membership.roles)
            allowed = ok and bool(roles) and tenant.status in ACTIVE_STATUSES
            audit.record(
                session,
                audit.Actor(user.id, roles),
                action="auth.sign_in",
                resource_type="User",
                resource_id=user.id,
                outcome="success" if allowed else "denied",
                reason=None if allowed else _denial_reason(ok, roles, tenant.status),
            )
    if not ok or not roles:
        raise Unauthorized(BAD_LOGIN)
    if tenant.status not in ACTIVE_STATUSES:
        raise Forbidden(f"tenant {tenant.slug} is {tenant.status}")
    return Caller(user.id, user.email, user.full_name, tenant.id, roles, user.token_version, tenant.status)


def _denial_reason(password_ok: bool, roles: tuple[str, ...], tenant_status: str) -> str:
    if not password_ok:
        return "wrong password or account locked"
    if not roles:
        return "membership has no roles"
    return f"tenant {tenant_status}"


# The caller's re-read, built once (building it cost more than running it): only the columns the checks read,
# for a request's every call.
_CALLER = prebuilt(
    select(
        User.email,
        User.full_name,
        User.is_active,
        User.token_version,
        Tenant.slug,
        Tenant.status,
        Tenant.tokens_valid_after,
        Membership.tokens_valid_after,
        Membership.roles,
        Membership.patient_id,
    )
    .join(Membership, Membership.user_id == User.id)
    .join(Tenant, Tenant.id == Membership.tenant_id)
    .where(
        User.id == bindparam("user_id"),
        Membership.tenant_id == bindparam("tenant_id"),
        Membership.is_active.is_(True),
    )
)


async def resolve(
    session: AsyncSession,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
    token_version: int,
    issued_at: datetime,
) -> Caller:
    """Re-check, on every request, that the token's user, tenant and membership still stand.

    Runs in the request's own transaction (in the token's tenant context): one query when all is well. A portal
    account's patient record is the caller's to check (``core.portal.accounts``): tenants know no patients.
    """
    if tenant_id is None:
        user = await session.get(User, user_id)
        _check_user(user, token_version)
        assert user is not None
        if user.network_role != "network_admin":
            raise Unauthorized("the token is no longer valid for the network")
        return Caller(user.id, user.email, user.full_name, None, ("network_admin",), user.token_version)
    found = await plain_rows(session, _CALLER, {"user_id": user_id, "tenant_id": tenant_id})
    row = found[0] if found else None
    if row is None:
        _check_user(await session.get(User, user_id), token_version)
        if await session.get(Tenant, tenant_id) is None:
            raise Unauthorized("the token's tenant no longer exists")
        raise Unauthorized("the token's membership was removed")
    email, full_name, user_active, user_version, slug, status, tenant_after, member_after, roles, patient = tuple(row)
    _check_version(user_active, user_version, token_version)
    if status not in ACTIVE_STATUSES:
        raise Forbidden(f"tenant {slug} is {status}")
    for valid_after in (tenant_after, member_after):
        if valid_after is not None and issued_at <= valid_after:
            raise Unauthorized("the token was issued before the tenant was suspended or the member removed")
    if not roles:
        raise Unauthorized("the token's membership has no roles")
    # A portal account acts as its patient only, whatever roles its row may have been given.
    caller_roles = (PATIENT_ROLE,) if patient is not None else tuple(roles)
    return Caller(user_id, email, full_name, tenant_id, caller_roles, user_version, status, patient)


def _check_user(user: User | None, token_version: int) -> None:
    if user is None:
        raise Unauthorized("the token's user no longer exists or is disabled")
    _check_version(user.is_active, user.token_version, token_version)


def _check_version(active: bool, current_version: int, token_version: int) -> None:
    if not active:
        raise Unauthorized("the token's user no longer exists or is disabled")
    if current_version != token_version:
        raise Unauthorized("the token was revoked (signed out or password changed)")


async def revoke_tokens(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Sign out everywhere: every token issued so far stops working."""
    user = await session.get(User, user_id)
    if user is not None:
        user.token_version += 1


async def change_password(
    session: AsyncSession, actor: audit.Actor, user_id: uuid.UUID, current: str, new: str
) -> None:
    """Change the caller's password; outstanding tokens stop working.

    Raises:
        InvalidInput: a wrong current password (audited as a refusal) or a weak new one.
    """
    user = await session.get(User, user_id)
    if user is None or not await passwords.verify_password_async(user.password_hash, current):
        if get_tenant_id() is not None:
            audit.record_failure(
                session,
                actor,
                action="auth.password_change",
                resource_type="User",
                resource_id=user_id,
                outcome="denied",
                reason="wrong current password",
            )
        raise InvalidInput("current_password is wrong", field="current_password")
    passwords.check_strength(new, "new_password")
    if current == new:
        raise InvalidInput("new_password must differ from the current one", field="new_password")
    user.password_hash = await passwords.hash_password_async(new)
    user.token_version += 1
