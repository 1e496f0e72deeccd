"""Network administration: tenants and their onboarding."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody

from api.deps import Caller, Config, Db, Limit, Offset, Page, page_of
from api.hub import Hub
from tenants import onboarding
from tenants.schemas import (
    InvitationAccept,
    InvitationCreate,
    InvitationOut,
    InvitationSummary,
    MemberInvitationCreate,
    TenantCreate,
    TenantOut,
)


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class AcceptedOut(msgspec.Struct):
    user_id: uuid.UUID
    tenant: str


class NetworkController(Controller):
    path = "/api/v1/network/tenants"
    tags = ["network"]

    @post("/", summary="Create a tenant (pending until activated)")
    async def create(self, session: Db, principal: Caller, data: JSONBody[TenantCreate]) -> TenantOut:
        return await onboarding.create_tenant(session, principal, data)

    @get("/", summary="List the network's tenants")
    async def list(
        self,
        session: Db,
        principal: Caller,
        status: FromQuery[Literal["pending", "active", "suspended"] | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[TenantOut]:
        items = await onboarding.list_tenants(session, principal, status=status, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @get("/{tenant_id:uuid}", summary="One tenant")
    async def read(self, session: Db, principal: Caller, tenant_id: FromPath[uuid.UUID]) -> TenantOut:
        return await onboarding.get_tenant(session, principal, tenant_id)

    @post("/{tenant_id:uuid}/activate", status_code=200, summary="Activate a tenant")
    async def activate(
        self, session: Db, principal: Caller, tenant_id: FromPath[uuid.UUID], data: JSONBody[StatusChange | None] = None
    ) -> TenantOut:
        return await onboarding.set_status(session, principal, tenant_id, "active", data.reason if data else None)

    @post(
        "/{tenant_id:uuid}/suspend", status_code=200, summary="Suspend a tenant: its users' tokens stop working at once"
    )
    async def suspend(
        self, session: Db, principal: Caller, tenant_id: FromPath[uuid.UUID], data: JSONBody[StatusChange | None] = None
    ) -> TenantOut:
        return await onboarding.set_status(session, principal, tenant_id, "suspended", data.reason if data else None)

    @post("/{tenant_id:uuid}/invitations", summary="Invite a tenant's first administrator (one-time token)")
    async def invite(
        self,
        session: Db,
        principal: Caller,
        settings: Config,
        tenant_id: FromPath[uuid.UUID],
        data: JSONBody[InvitationCreate],
    ) -> InvitationOut:
        return await onboarding.invite_to_tenant(
            session, principal, tenant_id, data.email, list(data.roles), settings.invitation_ttl_hours
        )


class InvitationController(Controller):
    path = "/api/v1/invitations"
    tags = ["onboarding"]

    @post("/", summary="Invite a user into the caller's tenant (tenant administrators)")
    async def invite(
        self, session: Db, principal: Caller, settings: Config, data: JSONBody[MemberInvitationCreate]
    ) -> InvitationOut:
        return await onboarding.invite_member(
            session, principal, data.email, list(data.roles), settings.invitation_ttl_hours
        )

    @get("/", summary="Open invitations of the caller's tenant")
    async def list(
        self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0
    ) -> Page[InvitationSummary]:
        items = await onboarding.list_invitations(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @delete("/{invitation_id:uuid}", summary="Revoke an open invitation")
    async def revoke(self, session: Db, principal: Caller, invitation_id: FromPath[uuid.UUID]) -> None:
        await onboarding.revoke_invitation(session, principal, invitation_id)

    @post(
        "/accept",
        opt={"public": True, "token_endpoint": True},
        status_code=200,
        summary="Redeem an invitation: set a password and join the tenant",
    )
    async def accept(self, state: State, data: JSONBody[InvitationAccept]) -> AcceptedOut:
        hub: Hub = state.hub
        user_id, slug = await onboarding.accept_invitation(hub.db, data.token, data.full_name, data.password)
        return AcceptedOut(user_id=user_id, tenant=slug)
