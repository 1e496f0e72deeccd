"""A tenant's users and their roles (tenant administrators)."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, JSONBody

from api.deps import Caller, Db, Limit, Offset, Page, page_of
from tenants import users
from tenants.schemas import MemberOut, RolesUpdate, UserCreate


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]

    @get("/", summary="Members of the caller's tenant")
    async def list(self, session: Db, principal: Caller, limit: Limit = 50, offset: Offset = 0) -> Page[MemberOut]:
        items = await users.list_members(session, principal, limit=limit, offset=offset)
        return page_of(items, limit, offset)

    @post("/", summary="Add a user to the caller's tenant with roles")
    async def create(self, session: Db, principal: Caller, data: JSONBody[UserCreate]) -> MemberOut:
        return await users.add_user(session, principal, data)

    @get("/{user_id:uuid}", summary="One member")
    async def read(self, session: Db, principal: Caller, user_id: FromPath[uuid.UUID]) -> MemberOut:
        return await users.get_member(session, principal, user_id)

    @put("/{user_id:uuid}/roles", summary="Replace a member's roles in this tenant")
    async def roles(
        self, session: Db, principal: Caller, user_id: FromPath[uuid.UUID], data: JSONBody[RolesUpdate]
    ) -> MemberOut:
        return await users.set_roles(session, principal, user_id, list(data.roles))

    @delete("/{user_id:uuid}", summary="Remove a member from this tenant")
    async def remove(self, session: Db, principal: Caller, user_id: FromPath[uuid.UUID]) -> None:
        await users.remove_member(session, principal, user_id)
