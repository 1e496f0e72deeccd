"""Calling one plugin's hook for one tenant, contained: its own configuration only, outbound calls only to its
hosts, a time limit, its result checked against the hookspec, and a circuit breaker per plugin and tenant.

A failure (an exception, a time-out, a wrong result) is recorded on the tenant's enablement (the error an admin
sees, the failures in a row) and raised as :class:`PluginFailed`, which the caller contains: a request goes on
without the plugin's part, a job is retried. After ``CAREHUB_PLUGIN_BREAKER_FAILURES`` failures in a row the
breaker opens: no call is made for ``CAREHUB_PLUGIN_BREAKER_COOLDOWN_MS``; then one trial call, which closes it
on success and opens it again on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
from datetime import timedelta
from typing import Any

import httpx

from core.db import utcnow
from core.plugins.models import PluginEnablement
from core.plugins.registry import Installed
from core.settings import Settings, get_settings
from plugin_sdk import PluginContext
from plugin_sdk.outbound import OutboundPolicy, guarded_client
from plugin_sdk.payloads import TenantInfo
from plugin_sdk.results import WrongResult, check_result
from tenants.models import Tenant

log = logging.getLogger(__name__)


_settings: Settings | None = None


def configure(settings: Settings) -> None:
    """Use these settings (the secret keys, the plugin time limit, allowed networks) in this process's plugin jobs
    (the sync, the pushes)."""
    global _settings
    _settings = settings


def configured() -> Settings:
    return _settings or get_settings()


@functools.cache
def _offline(plugin: str) -> httpx.AsyncClient:
    """The client of a plugin that may call no host: every request refused, naming the plugin (never closed: it
    opens no connection)."""
    return guarded_client(OutboundPolicy(hosts=frozenset(), plugin=plugin))


def tenant_info(tenant: Tenant) -> TenantInfo:
    """The tenant as a hook sees it."""
    return TenantInfo(id=str(tenant.id), slug=tenant.slug, name=tenant.name, kind=tenant.kind)  # type: ignore[arg-type]


class PluginFailed(Exception):
    """A plugin's hook failed (or was not called: its breaker is open); the message names the plugin."""

    def __init__(self, plugin: str, hook: str, reason: str, *, refused: bool = False) -> None:
        super().__init__(f"plugin {plugin}: {hook} {reason}")
        self.plugin, self.hook, self.reason, self.refused = plugin, hook, reason, refused


def breaker_open(row: PluginEnablement) -> bool:
    return row.open_until is not None and row.open_until > utcnow()


# A success is written at most this often while nothing else changes: an MLLP feed succeeds many times a second
# on one row, and every write of it would queue each message behind the others' transactions.
SUCCESS_RESOLUTION = timedelta(minutes=1)


def record_success(row: PluginEnablement) -> None:
    now = utcnow()
    last = row.last_success_at
    if row.failures or row.open_until is not None or last is None or now - last >= SUCCESS_RESOLUTION:
        row.failures, row.open_until, row.last_success_at = 0, None, now


def record_failure(row: PluginEnablement, settings: Settings, error: str) -> None:
    now = utcnow()
    row.failures = (row.failures or 0) + 1
    row.last_error, row.last_error_at = error[:2000], now
    if row.failures >= settings.plugin_breaker_failures:
        row.open_until = now + timedelta(milliseconds=settings.plugin_breaker_cooldown_ms)


async def call(
    plugin: Installed,
    hook: str,
    *,
    tenant: TenantInfo | None,
    config: dict[str, Any],
    settings: Settings,
    **arguments: Any,
) -> Any:
    """Call ``hook`` of ``plugin`` with the keyword ``arguments`` it accepts; its checked result. Raises
    :class:`PluginFailed` for any failure of the plugin's (the breaker is the caller's: see :func:`contained`)."""
    manifest = plugin.manifest
    urls = [str(config[k]) for k in manifest.outbound_config_keys if config.get(k)]
    policy = OutboundPolicy.build(
        manifest.name,
        manifest.outbound_hosts,
        urls,
        settings.plugin_allow_networks,
        timeout_seconds=settings.plugin_timeout_ms / 1000,
    )
    function = getattr(plugin.module, hook)
    wanted = inspect.signature(function).parameters
    # A plugin that may call no host (a parser) gets the process's one client that refuses every request: making
    # and closing a client costs more than reading an HL7 message.
    async with guarded_client(policy) if policy.hosts else contextlib.nullcontext(_offline(manifest.name)) as http:
        context = PluginContext(
            plugin=manifest.name,
            tenant=tenant,
            config=dict(config),
            http=http,
            log=logging.getLogger(f"carehub.plugin.{manifest.name}"),
        )
        given = {k: v for k, v in {"context": context, **arguments}.items() if k in wanted}
        try:
            async with asyncio.timeout(settings.plugin_timeout_ms / 1000):
                value = function(**given)
                if inspect.isawaitable(value):
                    value = await value
        except TimeoutError:
            raise PluginFailed(manifest.name, hook, f"took longer than {settings.plugin_timeout_ms} ms") from None
        except ValueError as exc:
            raise PluginFailed(manifest.name, hook, f"refused: {exc}", refused=True) from exc
        except Exception as exc:  # a plugin's bug must not become ours
            raise PluginFailed(manifest.name, hook, f"raised {type(exc).__name__}: {exc}") from exc
    try:
        return check_result(hook, value)
    except WrongResult as exc:
        raise PluginFailed(manifest.name, hook, f"returned garbage: {exc}") from exc


async def contained(
    row: PluginEnablement,
    plugin: Installed,
    hook: str,
    *,
    tenant: TenantInfo | None,
    config: dict[str, Any],
    settings: Settings,
    **arguments: Any,
) -> Any:
    """:func:`call` under the tenant's breaker for this plugin, recording the outcome on ``row`` (the caller
    commits it, in a transaction of its own when the call's work rolls back)."""
    if breaker_open(row):
        raise PluginFailed(plugin.name, hook, f"not called: its circuit breaker is open until {row.open_until}")
    try:
        result = await call(plugin, hook, tenant=tenant, config=config, settings=settings, **arguments)
    except PluginFailed as exc:
        record_failure(row, settings, str(exc))
        log.warning("%s", exc)
        raise
    record_success(row)
    return result
