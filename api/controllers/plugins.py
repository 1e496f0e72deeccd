"""Plugins: tenant admins enable and configure them; the network admin allows or forbids them network-wide."""

from __future__ import annotations

import builtins
import uuid
from typing import Annotated, Literal

from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from sqlalchemy import select

from api.deps import Caller, Config, Db, Limit, Offset
from core.errors import Conflict, InvalidInput
from core.plugins import inbound, invoke, service
from core.plugins import status as plugin_status
from core.plugins.inbound import InboundOut
from core.plugins.registry import registry
from core.plugins.schemas import EnablementIn, HealthOut, PluginOut, PolicyIn, PolicyOut, PushOut
from tenants.models import Tenant

PluginName = Annotated[str, Parameter(pattern=r"^[a-z][a-z0-9_]{1,39}$", description="the plugin's name")]


class PluginController(Controller):
    path = "/api/v1/plugins"
    tags = ["plugins"]

    @get("/", summary="The plugins this tenant can use, with their status")
    async def list(self, session: Db, principal: Caller) -> list[PluginOut]:
        return await service.list_plugins(session, principal)

    @get("/{name:str}", summary="One plugin: its manifest, configuration (without secrets) and status")
    async def read(self, session: Db, principal: Caller, name: PluginName) -> PluginOut:
        return await service.read_plugin(session, principal, name)

    @put("/{name:str}", summary="Enable (or configure, or disable) a plugin for this tenant")
    async def enable(
        self, session: Db, principal: Caller, settings: Config, name: PluginName, data: JSONBody[EnablementIn]
    ) -> PluginOut:
        out, row = await service.enable(session, principal, name, data, settings.plugin_secret_keys)
        plugin = registry().get(name)
        if data.enabled and plugin is not None and plugin.implements("carehub_on_enable"):
            tenant = await session.scalar(select(Tenant).where(Tenant.id == principal.tenant_id))
            assert tenant is not None
            try:
                await invoke.call(
                    plugin,
                    "carehub_on_enable",
                    tenant=invoke.tenant_info(tenant),
                    config=service.config_of(settings.plugin_secret_keys, row),
                    settings=settings,
                )
            except invoke.PluginFailed as exc:
                # Nothing is stored: the request's transaction rolls back with this error.
                if exc.refused:
                    raise InvalidInput(f"{name} refused the configuration: {exc.reason}", field="config") from exc
                raise Conflict(f"{name} could not start with this configuration: {exc.reason}", field="config") from exc
        return out

    @post(
        "/{name:str}/health",
        status_code=200,
        summary="Ask the plugin whether it can work for this tenant now (always an answer, healthy or not)",
        description="404 when the plugin is not enabled for this tenant; 409 when it implements no health check.",
    )
    async def health(self, session: Db, principal: Caller, settings: Config, name: PluginName) -> HealthOut:
        return await plugin_status.check_health(session, principal, name, settings)

    @get("/{name:str}/pushes", summary="The care plans and tasks sent to the plugin, most recently tried first")
    async def pushes(
        self,
        session: Db,
        principal: Caller,
        name: PluginName,
        status: FromQuery[Literal["sent", "failed"] | None] = None,
        resource_id: FromQuery[uuid.UUID | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> builtins.list[PushOut]:  # list: this class's own method
        return await plugin_status.list_pushes(
            session, principal, name, status=status, resource_id=resource_id, limit=limit, offset=offset
        )

    @delete("/{name:str}", status_code=200, summary="Disable a plugin for this tenant (its configuration is kept)")
    async def disable(self, session: Db, principal: Caller, name: PluginName) -> PluginOut:
        return await service.disable(session, principal, name)


class NetworkPluginController(Controller):
    path = "/api/v1/network/plugins"
    tags = ["network", "plugins"]

    @get("/", summary="Every installed plugin and whether the network allows it")
    async def list(self, session: Db, principal: Caller) -> list[PolicyOut]:
        return await service.list_policies(session, principal)

    @put("/{name:str}", summary="Allow or forbid a plugin in every tenant")
    async def set(self, session: Db, principal: Caller, name: PluginName, data: JSONBody[PolicyIn]) -> PolicyOut:
        return await service.set_policy(session, principal, name, data)


class InboundMessageController(Controller):
    path = "/api/v1/inbound-messages"
    tags = ["plugins"]

    @get("/", summary="Messages inbound feeds received (newest first), with the raw text of those in error")
    async def list(
        self,
        session: Db,
        principal: Caller,
        status: FromQuery[Literal["received", "accepted", "error", "replayed", "repeat"] | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> list[InboundOut]:
        return await inbound.list_messages(session, principal, status, limit, offset)

    @post("/{message_id:uuid}/replay", status_code=200, summary="Read a message in error again and apply it")
    async def replay(
        self, session: Db, principal: Caller, settings: Config, message_id: FromPath[uuid.UUID]
    ) -> InboundOut:
        return await inbound.replay(session, principal, message_id, settings)
