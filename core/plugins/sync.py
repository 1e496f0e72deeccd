"""The per-tenant EHR sync: every minute the scheduler writes ``schedule.plugin_sync`` for each active tenant; this
handler calls the pull hooks of each plugin the tenant enabled whose ``sync_interval_minutes`` has passed.

Per plugin, the pulls run in the order of :data:`plugin_sdk.hookspecs.PULL_HOOKS` (patients first). Each page's
effects are applied in a savepoint of the job's transaction and its watermark stored with them, so a page is
applied once with its watermark or not at all. A failing call stops that plugin for this run (the breaker counts
it, the error is shown to the tenant's admins and audited); the other plugins and the core's jobs go on. A page
with a record the host refuses is applied record by record instead, the refused ones kept for review and replay
(:func:`keep_refused`), and the pull goes on. A run takes at most ``PAGES_PER_RUN`` pages per hook and stops
early when half the job time limit is spent; the next tick goes on from the stored watermarks (the sync time is
set only once every pull is caught up).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import utcnow
from core.plugins import invoke
from core.plugins.effects import EFFECT_CONTENT_TYPE, Applier, EffectRejected, actor_for
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.plugins.outcomes import database_refusal, failed
from core.plugins.registry import Installed, registry
from core.plugins.service import config_of, policies_in
from core.settings import Settings
from plugin_sdk.effects import AnyEffect, PullBatch
from plugin_sdk.hookspecs import PULL_HOOKS
from plugin_sdk.payloads import TenantInfo
from tenants.isolation import write_pending
from tenants.models import Tenant

log = logging.getLogger(__name__)
PAGES_PER_RUN = 20
DEFAULT_INTERVAL_MINUTES = 15

if TYPE_CHECKING:
    from core.jobs.events import Event


configure = invoke.configure  # the settings of this process's plugin jobs (the sync, the pushes)


async def sync_tenant(session: AsyncSession, event: Event) -> None:
    settings = invoke.configured()
    tenant = await session.get(Tenant, event.tenant_id)
    if tenant is None or tenant.status != "active":
        return
    forbidden = {name for name, policy in (await policies_in(session, tenant.network_id)).items() if not policy.allowed}
    rows = await session.scalars(select(PluginEnablement).where(PluginEnablement.enabled.is_(True)))
    started = time.monotonic()
    budget = settings.job_time_limit_ms / 2000
    for row in rows.all():
        plugin = registry().get(row.plugin)
        if plugin is None or row.plugin in forbidden or not any(plugin.implements(h) for h in PULL_HOOKS):
            continue
        config = config_of(settings.plugin_secret_keys, row)
        interval = timedelta(minutes=int(config.get("sync_interval_minutes") or DEFAULT_INTERVAL_MINUTES))
        if row.synced_at is not None and utcnow() - row.synced_at < interval:
            continue
        if invoke.breaker_open(row):
            continue
        caught_up = await _pull(session, row, plugin, config, invoke.tenant_info(tenant), settings, started + budget)
        if caught_up:
            row.synced_at = utcnow()
    await session.flush()


async def keep_refused(
    session: AsyncSession, row: PluginEnablement, plugin: Installed, hook: str, effects: list[AnyEffect]
) -> int:
    """Apply ``effects`` one by one, each in a savepoint; keep each refused one, with the reason, where the
    tenant's admins review inbound messages (``GET /api/v1/inbound-messages?status=error``), and audit the
    page's refusals. How many were refused."""
    refused: list[str] = []
    applier = Applier(session, plugin.manifest)
    for effect in effects:
        await write_pending(session)
        try:
            async with session.begin_nested():
                await applier.apply_all([effect])
        except (EffectRejected, DBAPIError) as exc:
            reason = exc.reason if isinstance(exc, EffectRejected) else database_refusal(exc)
            if reason is None:
                raise  # the database itself failed: the job is tried again
            refused.append(reason)
            session.add(
                InboundMessageRecord(
                    plugin=row.plugin,
                    content_type=EFFECT_CONTENT_TYPE,
                    text=msgspec.json.encode(effect).decode(),
                    status="error",
                    summary=f"{hook}: {type(effect).__name__} refused"[:300],
                    error=reason[:2000],
                    received_at=utcnow(),
                )
            )
            applier = Applier(session, plugin.manifest)  # what it had read may have rolled back with the savepoint
    audit.record(
        session,
        actor_for(row.plugin),
        action="plugin.records_refused",
        resource_type="Plugin",
        resource_id=row.plugin,
        outcome="failure",
        detail={
            "plugin": row.plugin,
            "hook": hook,
            "refused": len(refused),
            "first": refused[0][:500] if refused else None,
        },
    )
    await write_pending(session)  # now: a savepoint the caller opens next must not take the audit row with it
    log.warning("%s: %s kept %d refused records for review", row.plugin, hook, len(refused))
    return len(refused)


async def _pull(
    session: AsyncSession,
    row: PluginEnablement,
    plugin: Installed,
    config: dict[str, Any],
    tenant: TenantInfo,
    settings: Settings,
    deadline: float,
) -> bool:
    """Run the plugin's pulls; True when every one reported no more pages."""
    for hook in (h for h in PULL_HOOKS if plugin.implements(h)):
        for _page in range(PAGES_PER_RUN):
            if time.monotonic() > deadline:
                return False
            since = (row.watermarks or {}).get(hook)
            try:
                batch: PullBatch = await invoke.call(
                    plugin, hook, tenant=tenant, config=config, settings=settings, since=since
                )
            except invoke.PluginFailed as exc:
                failed(session, row, settings, hook, str(exc))
                return False
            await write_pending(session)  # what earlier pages appended must not roll back with this one
            try:
                async with session.begin_nested():
                    await Applier(session, plugin.manifest).apply_all(batch.effects)
            except (EffectRejected, DBAPIError) as exc:
                if isinstance(exc, DBAPIError) and database_refusal(exc) is None:
                    raise
                # One bad record must not hold the pull up for ever: the page's effects one by one, the refused
                # ones kept for review (and replay) as inbound messages in error, the rest applied.
                await keep_refused(session, row, plugin, hook, batch.effects)
            invoke.record_success(row)
            row.watermarks = {**(row.watermarks or {}), hook: batch.watermark}
            if not batch.more:
                break
        else:
            return False
    return True
