"""Tokens: sign in, sign out, change password, who am I."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.params import JSONBody

from api.deps import Caller, Db
from api.hub import Hub
from core import audit
from tenants import accounts
from tenants.schemas import PasswordChange, TokenRequest


class TokenOut(msgspec.Struct):
    access_token: str
    token_type: str
    expires_at: datetime
    tenant_id: uuid.UUID | None
    roles: list[str]


class MeOut(msgspec.Struct):
    user_id: uuid.UUID
    email: str
    full_name: str
    tenant_id: uuid.UUID | None
    roles: list[str]
    # For a patient's portal account: the patient record it belongs to.
    patient_id: uuid.UUID | None = None


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post(
        "/token",
        opt={"public": True, "token_endpoint": True},
        status_code=200,
        summary="Exchange email and password for a token scoped to one tenant",
    )
    async def token(self, state: State, data: JSONBody[TokenRequest]) -> TokenOut:
        hub: Hub = state.hub
        caller = await accounts.sign_in(hub.db, data.email, data.password, data.tenant)
        token, expires = hub.tokens.issue(caller.user_id, caller.tenant_id, caller.token_version)
        return TokenOut(
            access_token=token,
            token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
            expires_at=expires,
            tenant_id=caller.tenant_id,
            roles=list(caller.roles),
        )

    @get("/me", summary="The caller of this token")
    async def me(self, principal: Caller) -> MeOut:
        return MeOut(
            user_id=principal.user_id,
            email=principal.email,
            full_name=principal.full_name,
            tenant_id=principal.tenant_id,
            roles=list(principal.roles),
            patient_id=principal.patient_id,
        )

    @post("/logout", status_code=204, summary="Sign out: revoke every token issued to the caller so far")
    async def logout(self, session: Db, principal: Caller) -> None:
        await accounts.revoke_tokens(session, principal.user_id)
        if principal.tenant_id is not None:
            audit.record(
                session, principal.actor, action="auth.logout", resource_type="User", resource_id=principal.user_id
            )

    @post(
        "/password",
        opt={"token_endpoint": True},
        status_code=204,
        summary="Change the caller's password (revokes outstanding tokens)",
    )
    async def password(self, session: Db, principal: Caller, data: JSONBody[PasswordChange]) -> None:
        await accounts.change_password(
            session, principal.actor, principal.user_id, data.current_password, data.new_password
        )
        if principal.tenant_id is not None:
            audit.record(
                session,
                principal.actor,
                action="auth.password_change",
                resource_type="User",
                resource_id=principal.user_id,
            )
