"""What a tenant admin asks of a plugin beyond its configuration: whether it can work now (its health check, asked
on demand) and what it was sent (the care plans and tasks pushed to it, with its answers or the last error)."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import utcnow
from core.errors import Conflict, NotFound
from core.plugins import invoke
from core.plugins.models import PluginEnablement, PluginPush
from core.plugins.outcomes import failed
from core.plugins.schemas import HealthOut, PushOut
from core.plugins.service import RESOURCE, config_of, installed_plugin, is_allowed, policies_in
from core.principal import Principal
from core.settings import Settings
from plugin_sdk.payloads import Health
from tenants.models import Tenant

HEALTH_HOOK = "carehub_health_check"


async def check_health(session: AsyncSession, principal: Principal, name: str, settings: Settings) -> HealthOut:
    """Ask the plugin, with the tenant's configuration, whether it can work now. Whatever the plugin does (raises,
    hangs past the time limit, answers garbage) the admin gets an answer: an unhealthy one saying what happened,
    which is also counted by the breaker and audited as ``plugin.failure``. The check is made even while the
    breaker is open: it is the admin's trial call, and a healthy answer closes the breaker."""
    principal.require("plugins", "write")
    plugin = installed_plugin(name)
    tenant = await session.get(Tenant, principal.tenant_id) if principal.tenant_id else None
    row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == name))
    if tenant is None or row is None or not row.enabled:
        raise NotFound(f"{name} is not enabled for this tenant", field="name", source="path")
    if not is_allowed(await policies_in(session, tenant.network_id), name):
        raise NotFound(f"{name} is not enabled for this tenant: the network does not allow it", field="name")
    if not plugin.implements(HEALTH_HOOK):
        raise Conflict(f"{name} has no health check (it does not implement {HEALTH_HOOK})", field="name")
    config = config_of(settings.plugin_secret_keys, row)
    try:
        health: Health = await invoke.call(
            plugin, HEALTH_HOOK, tenant=invoke.tenant_info(tenant), config=config, settings=settings
        )
    except invoke.PluginFailed as exc:
        failed(session, row, settings, HEALTH_HOOK, str(exc))
        health = Health(ok=False, detail=str(exc))
    else:
        if health.ok:
            invoke.record_success(row)
    now = utcnow()
    detail = (health.detail or "")[:500] or None
    row.health_ok, row.health_detail, row.health_at = health.ok, detail, now
    audit.record(
        session,
        principal.actor,
        action="plugin.health_check",
        resource_type=RESOURCE,
        resource_id=name,
        outcome="success" if health.ok else "failure",
        detail={"plugin": name, "ok": health.ok, "detail": detail},
    )
    await session.flush()
    return HealthOut(plugin=name, ok=health.ok, detail=detail, checked_at=now)


def push_out(row: PluginPush) -> PushOut:
    return PushOut(
        resource_type=row.resource_type,
        resource_id=row.resource_id,
        status="sent" if row.last_error is None else "failed",
        version=row.version,
        record_updated_at=row.record_updated_at,
        external_id=row.external_id,
        location=row.location,
        pushed_at=row.pushed_at,
        tried_at=row.tried_at,
        attempts=row.attempts,
        last_error=row.last_error,
    )


async def list_pushes(
    session: AsyncSession,
    principal: Principal,
    name: str,
    *,
    status: Literal["sent", "failed"] | None,
    resource_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> list[PushOut]:
    """The records sent (or tried) to the plugin, the most recently tried first."""
    principal.require("plugins", "read")
    installed_plugin(name)
    query = select(PluginPush).where(PluginPush.plugin == name)
    if status == "sent":
        query = query.where(PluginPush.last_error.is_(None))
    elif status == "failed":
        query = query.where(PluginPush.last_error.is_not(None))
    if resource_id is not None:
        query = query.where(PluginPush.resource_id == resource_id)
    query = query.order_by(PluginPush.tried_at.desc(), PluginPush.id).limit(limit).offset(offset)
    return [push_out(row) for row in await session.scalars(query)]
