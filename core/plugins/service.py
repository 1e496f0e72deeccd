"""Plugins as tenant admins and the network admin manage them: what is installed, enabling one for a tenant with
a configuration its schema accepts (secrets encrypted, never answered), and allowing or forbidding one network-wide.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.consent.network import audit_in_every_tenant, network_of, the_network
from core.db import utcnow
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.plugins import secrets
from core.plugins.models import PluginEnablement, PluginPolicy
from core.plugins.registry import Installed, registry
from core.plugins.schemas import EnablementIn, PluginOut, PluginStatus, PolicyIn, PolicyOut
from core.principal import Principal
from tenants.context import get_tenant_id
from tenants.models import Tenant
from tenants.scope import network_wide

RESOURCE = "Plugin"


def installed_plugin(name: str, *, per_tenant: bool = True) -> Installed:
    plugin = registry().get(name)
    if plugin is None or (per_tenant and not plugin.manifest.per_tenant):
        raise NotFound(f"no plugin named {name} is installed", field="name", source="path")
    return plugin


def _status(row: PluginEnablement | None) -> PluginStatus | None:
    if row is None:
        return None
    return PluginStatus(
        failures=row.failures,
        breaker_open_until=row.open_until,
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        last_success_at=row.last_success_at,
        health_ok=row.health_ok,
        health_detail=row.health_detail,
        health_at=row.health_at,
        synced_at=row.synced_at,
    )


def to_out(plugin: Installed, allowed: bool, row: PluginEnablement | None) -> PluginOut:
    manifest = plugin.manifest
    return PluginOut(
        name=plugin.name,
        version=manifest.version,
        title=manifest.title,
        description=manifest.description,
        vendor=manifest.vendor,
        source=plugin.source,
        hooks=list(manifest.hooks),
        data_categories=list(manifest.data_categories),
        outbound_hosts=list(manifest.outbound_hosts),
        config_schema=_without_sensitive_defaults(dict(manifest.config_schema)),
        per_tenant=manifest.per_tenant,
        allowed=allowed,
        enabled=bool(row and row.enabled and allowed),
        config=dict(row.config) if row else {},
        secrets_set=sorted(row.secret_keys) if row else [],
        status=_status(row),
    )


def _without_sensitive_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as shown to admins: a sensitive key's default (a vendor's sample secret) is not shown."""
    properties = {
        key: (
            {k: v for k, v in spec.items() if k != "default"}
            if isinstance(spec, dict) and spec.get("sensitive")
            else spec
        )
        for key, spec in (schema.get("properties") or {}).items()
    }
    return {**schema, "properties": properties} if properties else schema


async def _policies(session: AsyncSession, principal: Principal) -> dict[str, PluginPolicy]:
    if principal.tenant_id is not None:
        network = await network_of(session, principal.tenant_id)
    else:
        network = await the_network(session)
    return await policies_in(session, network.id)


async def policies_in(session: AsyncSession, network_id: uuid.UUID) -> dict[str, PluginPolicy]:
    """The network admin's word on each plugin that has one (a plugin without a policy is allowed)."""
    rows = await session.scalars(select(PluginPolicy).where(PluginPolicy.network_id == network_id))
    return {row.plugin: row for row in rows}


async def plugin_allowed(session: AsyncSession, plugin: str) -> bool:
    """Whether the current tenant's network allows ``plugin`` (no policy: allowed)."""
    policy = await session.scalar(
        select(PluginPolicy)
        .join(Tenant, Tenant.network_id == PluginPolicy.network_id)
        .where(Tenant.id == get_tenant_id(), PluginPolicy.plugin == plugin)
    )
    return policy is None or policy.allowed


async def list_plugins(session: AsyncSession, principal: Principal) -> list[PluginOut]:
    """The plugins a tenant can enable, with whether the network allows each and how the tenant uses it."""
    principal.require("plugins", "read")
    policies = await _policies(session, principal)
    rows = {row.plugin: row for row in await session.scalars(select(PluginEnablement))}
    return [
        to_out(plugin, is_allowed(policies, plugin.name), rows.get(plugin.name))
        for plugin in sorted(registry().installed.values(), key=lambda p: p.name)
        if plugin.manifest.per_tenant
    ]


def is_allowed(policies: dict[str, PluginPolicy], name: str) -> bool:
    policy = policies.get(name)
    return policy is None or policy.allowed


async def read_plugin(session: AsyncSession, principal: Principal, name: str) -> PluginOut:
    principal.require("plugins", "read")
    plugin = installed_plugin(name)
    policies = await _policies(session, principal)
    row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == name))
    return to_out(plugin, is_allowed(policies, name), row)


def _problems(plugin: Installed, config: dict[str, Any]) -> list[tuple[str, str]]:
    return [(".".join(filter(None, ["config", p.path])), p.message) for p in plugin.manifest.config_problems(config)]


async def enable(
    session: AsyncSession, principal: Principal, name: str, data: EnablementIn, keys: Sequence[str]
) -> tuple[PluginOut, PluginEnablement]:
    """Store the tenant's enablement; the caller runs the plugin's ``carehub_on_enable`` before committing."""
    principal.require("plugins", "write")
    plugin = installed_plugin(name)
    policies = await _policies(session, principal)
    if data.enabled and not is_allowed(policies, name):
        raise Conflict(f"the network administrators do not allow {name}", field="enabled")
    row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == name))
    sensitive = set(plugin.manifest.sensitive_keys)
    stored = secrets.unseal(keys, row.secrets) if row is not None else {}
    public = {k: v for k, v in data.config.items() if k not in sensitive}
    hidden = {**stored, **{k: v for k, v in data.config.items() if k in sensitive}}
    hidden = {k: v for k, v in hidden.items() if v is not None}
    whole = {**public, **hidden}
    problems = _problems(plugin, whole)
    if problems:
        path, message = problems[0]
        raise InvalidInput(f"{path}: {message}", field=path, problems=problems)
    created = row is None
    if row is None:
        row = PluginEnablement(plugin=name)
        session.add(row)
    before = (row.enabled, dict(row.config or {}), set(row.secret_keys or []))
    row.enabled = data.enabled
    row.config = public
    row.secrets = secrets.seal(keys, hidden)
    row.secret_keys = sorted(hidden)
    row.changed_by = principal.user_id
    row.updated_at = utcnow()
    if created or before[1] != public or before[2] != set(hidden) or hidden != stored:
        # A new configuration starts with a closed breaker: the admin fixed what failed, or wants to try.
        row.failures, row.open_until = 0, None
    await session.flush()
    changed = sorted({*public, *before[1]} - {k for k in public if before[1].get(k) == public[k]})
    action = "plugin.enable" if data.enabled and (created or not before[0]) else "plugin.configure"
    if not data.enabled:
        action = "plugin.disable"
    audit.record(
        session,
        principal.actor,
        action=action,
        resource_type=RESOURCE,
        resource_id=name,
        detail={
            "plugin": name,
            "version": plugin.manifest.version,
            "changed": changed,
            "secrets_changed": sorted(k for k in sensitive if stored.get(k) != hidden.get(k)),
        },
    )
    return to_out(plugin, True, row), row


def config_of(keys: Sequence[str], row: PluginEnablement) -> dict[str, Any]:
    """The whole configuration of an enablement, its secrets decrypted (for the plugin's context only)."""
    return {**dict(row.config or {}), **secrets.unseal(keys, row.secrets)}


async def disable(session: AsyncSession, principal: Principal, name: str) -> PluginOut:
    principal.require("plugins", "write")
    plugin = installed_plugin(name)
    row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == name))
    if row is None:
        raise NotFound(f"{name} is not enabled for this tenant", field="name", source="path")
    row.enabled = False
    row.changed_by = principal.user_id
    audit.record(
        session,
        principal.actor,
        action="plugin.disable",
        resource_type=RESOURCE,
        resource_id=name,
        detail={"plugin": name},
    )
    policies = await _policies(session, principal)
    return to_out(plugin, is_allowed(policies, name), row)


# The network admin ------------------------------------------------------------------------------------------


def _policy_out(name: str, row: PluginPolicy | None) -> PolicyOut:
    return PolicyOut(
        plugin=name,
        allowed=row.allowed if row else True,
        reason=row.reason if row else None,
        updated_at=row.updated_at if row else utcnow(),
    )


def _network_admin(principal: Principal, act: str) -> None:
    if principal.tenant_id is not None:
        raise Forbidden("the network's plugin policy is the network administrators'", action=f"plugins.{act}")
    principal.require("plugins", act)


async def list_policies(session: AsyncSession, principal: Principal) -> list[PolicyOut]:
    _network_admin(principal, "read")
    policies = await _policies(session, principal)
    return [_policy_out(name, policies.get(name)) for name in sorted(registry().installed)]


async def set_policy(session: AsyncSession, principal: Principal, name: str, data: PolicyIn) -> PolicyOut:
    """Allow or forbid a plugin in every tenant. Forbidding keeps each tenant's configuration but stops every
    call to the plugin at once; allowing it again resumes the tenants that had it enabled."""
    _network_admin(principal, "write")
    installed_plugin(name, per_tenant=False)
    async with network_wide(session, "plugin policy: written in every tenant's audit log"):
        network = await the_network(session)
        row = await session.get(PluginPolicy, (network.id, name))
        if row is None:
            row = PluginPolicy(network_id=network.id, plugin=name, allowed=data.allowed)
            session.add(row)
        row.allowed, row.reason, row.updated_by, row.updated_at = data.allowed, data.reason, principal.user_id, utcnow()
        await audit_in_every_tenant(
            session,
            principal,
            network,
            "plugin.allow" if data.allowed else "plugin.forbid",
            {"plugin": name, "reason": data.reason},
        )
        return _policy_out(name, row)
