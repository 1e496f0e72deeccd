"""Onboarding: network administrators create tenants, invite their first admin, activate and suspend.

Network administrators act in no tenant: each of their functions here opens the network-wide view it needs
(``tenants.scope.network_wide``), and their actions are audited in the log of the tenant they act on.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.db import utcnow
from core.errors import Conflict, InvalidInput, NotFound
from core.principal import Principal
from tenants import passwords
from tenants.accounts import check_password, normalise_email
from tenants.context import tenant_context
from tenants.models import PATIENT_ROLE, Invitation, Membership, Network, Tenant, User
from tenants.schemas import InvitationOut, InvitationSummary, TenantCreate, TenantOut
from tenants.scope import network_wide

RESOURCE = "Tenant"
# Allowed status changes: (from, to)
MAX_WRONG_PASSWORDS = 5
TRANSITIONS = {("pending", "active"), ("active", "suspended"), ("suspended", "active"), ("pending", "suspended")}


def tenant_out(tenant: Tenant, member_count: int | None = None) -> TenantOut:
    return TenantOut(
        id=tenant.id,
        slug=tenant.slug,
        name=tenant.name,
        kind=tenant.kind,
        status=tenant.status,
        created_at=tenant.created_at,
        activated_at=tenant.activated_at,
        suspended_at=tenant.suspended_at,
        member_count=member_count,
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_tenant(session: AsyncSession, principal: Principal, data: TenantCreate) -> TenantOut:
    principal.require("tenants", "create")
    async with network_wide(session, "onboarding: a new tenant, audited in its own log"):
        network = await session.scalar(select(Network).order_by(Network.created_at).limit(1))
        if network is None:
            raise Conflict("the network is not set up; create it with 'carehub init'")
        if await session.scalar(select(Tenant.id).where(Tenant.slug == data.slug)) is not None:
            raise Conflict(f"slug {data.slug} is taken", field="slug")
        tenant = Tenant(
            id=uuid.uuid4(), network_id=network.id, slug=data.slug, name=data.name, kind=data.kind, status="pending"
        )
        session.add(tenant)
        await session.flush()
        audit.record(
            session,
            principal.actor,
            action="tenant.create",
            resource_type=RESOURCE,
            resource_id=tenant.id,
            tenant_id=tenant.id,
            detail={"slug": tenant.slug, "kind": tenant.kind},
        )
        await session.flush()
        return tenant_out(tenant, 0)


async def list_tenants(
    session: AsyncSession, principal: Principal, *, status: str | None, limit: int, offset: int
) -> list[TenantOut]:
    principal.require("tenants", "read")
    async with network_wide(session, "onboarding: the network's tenants and their members"):
        counts = (
            select(Membership.tenant_id, func.count().label("n"))
            .where(Membership.is_active.is_(True))
            .group_by(Membership.tenant_id)
            .subquery()
        )
        query = select(Tenant, counts.c.n).outerjoin(counts, counts.c.tenant_id == Tenant.id)
        if status:
            query = query.where(Tenant.status == status)
        rows = await session.execute(query.order_by(Tenant.slug).limit(limit).offset(offset))
        return [tenant_out(t, n or 0) for t, n in rows.all()]


async def _member_count(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    """Active members of a tenant (read by network administrators, network-wide)."""
    count = await session.scalar(
        select(func.count()).where(Membership.tenant_id == tenant_id, Membership.is_active.is_(True))
    )
    return int(count or 0)


async def _tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant


async def get_tenant(session: AsyncSession, principal: Principal, tenant_id: uuid.UUID) -> TenantOut:
    principal.require("tenants", "read")
    async with network_wide(session, "onboarding: a tenant and its members"):
        tenant = await _tenant(session, tenant_id)
        return tenant_out(tenant, await _member_count(session, tenant.id))


async def set_status(
    session: AsyncSession, principal: Principal, tenant_id: uuid.UUID, status: str, reason: str | None = None
) -> TenantOut:
    principal.require("tenants", "update")
    async with network_wide(session, "onboarding: a tenant's status, audited in its own log"):
        tenant = await _tenant(session, tenant_id)
        if tenant.status == status:
            return tenant_out(tenant, await _member_count(session, tenant.id))
        if (tenant.status, status) not in TRANSITIONS:
            raise Conflict(f"a {tenant.status} tenant cannot become {status}", field="status")
        previous = tenant.status
        tenant.status = status
        now = utcnow()
        if status == "active":
            tenant.activated_at = now
            tenant.suspended_at = None
        else:
            tenant.suspended_at = now
            tenant.tokens_valid_after = now
        audit.record(
            session,
            principal.actor,
            action=f"tenant.{'activate' if status == 'active' else 'suspend'}",
            resource_type=RESOURCE,
            resource_id=tenant.id,
            tenant_id=tenant.id,
            reason=reason,
            detail={"from": previous, "to": status},
        )
        await session.flush()
        return tenant_out(tenant, await _member_count(session, tenant.id))


async def invite_to_tenant(
    session: AsyncSession, principal: Principal, tenant_id: uuid.UUID, email: str, roles: list[str], ttl_hours: int
) -> InvitationOut:
    """A network administrator invites someone (usually the first admin) into any tenant."""
    principal.require("tenants", "update")
    async with network_wide(session, "onboarding: an invitation into a tenant, audited in its log"):
        return await _invite(session, principal, tenant_id, email, roles, ttl_hours)


async def invite_member(
    session: AsyncSession, principal: Principal, email: str, roles: list[str], ttl_hours: int
) -> InvitationOut:
    """A tenant administrator invites someone into their own tenant."""
    principal.require("users", "create")
    if principal.tenant_id is None:
        raise NotFound("tenant not found")
    return await _invite(session, principal, principal.tenant_id, email, roles, ttl_hours)


async def invite_patient(
    session: AsyncSession, principal: Principal, patient_id: uuid.UUID, email: str, ttl_hours: int
) -> InvitationOut:
    """Staff invite a patient to the portal: the account will see this one patient record only.

    The caller must be able to write the patient record; the patient must exist in the caller's tenant
    (checked by the caller of this function, which loads it through the tenant-filtered session).
    """
    principal.require("patients", "write")
    if principal.tenant_id is None:
        raise NotFound("patient not found")
    email = normalise_email(email)
    user = await session.scalar(select(User).where(User.email == email))
    if user is not None:
        membership = await session.scalar(select(Membership).where(Membership.user_id == user.id))
        if membership is not None and membership.is_active and membership.patient_id != patient_id:
            raise Conflict("this email already belongs to another account of this tenant", field="email")
    return await _invite(session, principal, principal.tenant_id, email, [PATIENT_ROLE], ttl_hours, patient_id)


async def _invite(
    session: AsyncSession,
    principal: Principal,
    tenant_id: uuid.UUID,
    email: str,
    roles: list[str],
    ttl_hours: int,
    patient_id: uuid.UUID | None = None,
) -> InvitationOut:
    tenant = await _tenant(session, tenant_id)
    if tenant.status == "suspended":
        raise Conflict("cannot invite into a suspended tenant", field="tenant")
    token = secrets.token_urlsafe(32)
    invitation = Invitation(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        email=normalise_email(email),
        roles=list(roles),
        token_hash=hash_token(token),
        expires_at=utcnow() + timedelta(hours=ttl_hours),
        invited_by=principal.user_id,
        patient_id=patient_id,
    )
    session.add(invitation)
    audit.record(
        session,
        principal.actor,
        action="invitation.create",
        resource_type="Invitation",
        resource_id=invitation.id,
        tenant_id=tenant.id,
        detail={"email": invitation.email, "roles": list(roles)},
        patient_id=patient_id,
    )
    await session.flush()
    return InvitationOut(
        id=invitation.id,
        tenant_id=tenant.id,
        email=invitation.email,
        roles=list(roles),
        expires_at=invitation.expires_at,
        token=token,
    )


async def list_invitations(
    session: AsyncSession, principal: Principal, *, limit: int, offset: int
) -> list[InvitationSummary]:
    """The caller's tenant's invitations that can still be accepted."""
    principal.require("users", "read")
    rows = await session.scalars(
        select(Invitation)
        .where(
            Invitation.tenant_id == principal.tenant_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
        .order_by(Invitation.created_at.desc(), Invitation.id)
        .limit(limit)
        .offset(offset)
    )
    return [invitation_summary(i) for i in rows.all()]


def _revoke(session: AsyncSession, invitation: Invitation, actor: audit.Actor, reason: str | None = None) -> None:
    invitation.revoked_at = utcnow()
    audit.record(
        session,
        actor,
        action="invitation.revoke",
        resource_type="Invitation",
        resource_id=invitation.id,
        reason=reason,
        detail={"email": invitation.email},
    )


async def revoke_invitation(session: AsyncSession, principal: Principal, invitation_id: uuid.UUID) -> None:
    principal.require("users", "delete")
    invitation = await session.get(Invitation, invitation_id)
    if invitation is None or invitation.tenant_id != principal.tenant_id:
        raise NotFound("invitation not found")
    if invitation.accepted_at is None and invitation.revoked_at is None:
        _revoke(session, invitation, principal.actor)


async def revoke_invitations_by(session: AsyncSession, user_id: uuid.UUID, tenant_id: uuid.UUID) -> None:
    """Revoke the open invitations a member sent into a tenant (when they are removed or lose the right)."""
    open_invitations = await session.scalars(
        select(Invitation).where(
            Invitation.tenant_id == tenant_id,
            Invitation.invited_by == user_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
    )
    for invitation in open_invitations.all():
        _revoke(session, invitation, audit.SYSTEM, "its sender was removed or lost the right to invite")


def invitation_summary(invitation: Invitation) -> InvitationSummary:
    return InvitationSummary(
        id=invitation.id,
        email=invitation.email,
        roles=list(invitation.roles),
        expires_at=invitation.expires_at,
        invited_by=invitation.invited_by,
        created_at=invitation.created_at,
    )


def _redeemable(invitation: Invitation | None) -> bool:
    return (
        invitation is not None
        and invitation.accepted_at is None
        and invitation.revoked_at is None
        and invitation.expires_at > utcnow()
    )


async def _join(
    session: AsyncSession, invitation: Invitation, tenant: Tenant, user: User | None, full_name: str, password: str
) -> tuple[uuid.UUID, str]:
    if user is None:
        user = User(
            id=uuid.uuid4(),
            email=invitation.email,
            full_name=full_name,
            password_hash=await passwords.hash_password_async(password),
        )
        session.add(user)
        await session.flush()
    membership = await session.scalar(select(Membership).where(Membership.user_id == user.id))
    if invitation.patient_id is not None:
        # A portal account holds the patient role only, for one patient, and never mixes with staff roles.
        if membership is not None and membership.is_active and membership.patient_id != invitation.patient_id:
            raise Conflict("this account already belongs to this tenant", field="token")
        if membership is None:
            session.add(Membership(user_id=user.id, roles=[PATIENT_ROLE], patient_id=invitation.patient_id))
        else:
            membership.roles = [PATIENT_ROLE]
            membership.patient_id = invitation.patient_id
            membership.is_active = True
    elif membership is not None and membership.patient_id is not None and membership.is_active:
        raise Conflict("this account is a patient portal account of this tenant", field="token")
    elif membership is None:
        session.add(Membership(user_id=user.id, roles=sorted(set(invitation.roles))))
    elif membership.is_active:
        membership.roles = sorted(set(membership.roles) | set(invitation.roles))
    else:
        # A removed member comes back with the invitation's roles only, never the old ones.
        membership.roles = sorted(set(invitation.roles))
        membership.patient_id = None
        membership.is_active = True
    invitation.accepted_at = utcnow()
    audit.record(
        session,
        audit.Actor(user.id, tuple(invitation.roles)),
        action="invitation.accept",
        resource_type="Invitation",
        resource_id=invitation.id,
    )
    return user.id, tenant.slug


async def accept_invitation(
    db: async_sessionmaker[AsyncSession], token: str, full_name: str, password: str
) -> tuple[uuid.UUID, str]:
    """Redeem an invitation: create the account (or confirm an existing one) and the membership.

    An existing account proves itself with its password; after ``MAX_WRONG_PASSWORDS`` wrong ones the
    invitation is revoked, and every wrong one is audited in the tenant.

    Returns:
        The user id and the tenant slug to sign in to.
    """
    token_hash = hash_token(token)
    async with db() as session:
        found = await session.scalar(select(Invitation).where(Invitation.token_hash == token_hash))
        account = await session.scalar(select(User).where(User.email == found.email)) if found else None
    if found is None or not _redeemable(found) or (account is not None and not account.is_active):
        raise NotFound("invitation not found, already used or expired")
    passwords.check_strength(password)
    # An existing account proves itself; the guess counts against the account's sign-in lock too.
    password_ok = account is None or await check_password(db, account, password)
    with tenant_context(found.tenant_id):
        async with db() as session, session.begin():
            invitation = await session.scalar(select(Invitation).where(Invitation.id == found.id).with_for_update())
            if invitation is None or not _redeemable(invitation):
                raise NotFound("invitation not found, already used or expired")
            tenant = await _tenant(session, invitation.tenant_id)
            if tenant.status == "suspended":
                raise Conflict("the tenant is suspended", field="token")
            user = await session.scalar(select(User).where(User.email == invitation.email))
            if user is not None and not user.is_active:
                raise NotFound("invitation not found, already used or expired")
            if user is not None and (not password_ok or user.id != getattr(account, "id", None)):
                invitation.failed_attempts += 1
                if invitation.failed_attempts >= MAX_WRONG_PASSWORDS:
                    invitation.revoked_at = utcnow()
                audit.record(
                    session,
                    audit.Actor(None, ()),
                    action="invitation.accept",
                    resource_type="Invitation",
                    resource_id=invitation.id,
                    outcome="denied",
                    reason="wrong password for the account",
                )
            else:
                return await _join(session, invitation, tenant, user, full_name, password)
    raise InvalidInput("this email already has an account: give its current password", field="password")
