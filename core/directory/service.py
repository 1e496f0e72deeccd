"""A coordinator's search for community services (food, housing, transport ...) across every directory plugin the
tenant enabled and the network allows.

The directories are asked at the same time, each with its own configuration for this tenant and under the plugin
time limit, so that the coordinator waits for the slowest directory, not for all of them in turn. One that fails,
hangs or answers garbage is left out of this answer with a note saying so, and the others' services still come
back; its failure is counted by its breaker for this tenant, shown to the tenant's admins and audited as the
plugin, as a job's would be. While its breaker is open it is not asked.

A search carries what the coordinator typed (text, a category, a postal code, a language) and nothing from a
patient's record, so it needs no data category in a plugin's manifest. The search is audited all the same: it
leaves carehub for the directories it names.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import utcnow
from core.directory.schemas import DirectoryOut, DirectorySearchOut, ServiceOut
from core.errors import InvalidInput
from core.plugins import invoke
from core.plugins.models import PluginEnablement
from core.plugins.outcomes import failed
from core.plugins.registry import Installed, registry
from core.plugins.service import config_of, is_allowed, policies_in
from core.principal import Principal
from core.settings import Settings
from plugin_sdk.payloads import ServiceQuery, ServiceRecord, TenantInfo
from plugin_sdk.results import WrongResult
from tenants.models import Tenant

HOOK = "carehub_directory_search"
RESOURCE = "Directory"
# A search is a read: a directory's success is written to its enablement only when that changes the breaker's
# state, or to refresh its last success at most once a minute, so that searches do not queue on the row's lock.
SUCCESS_REFRESH = timedelta(minutes=1)


@dataclass(frozen=True)
class Directory:
    plugin: Installed
    row: PluginEnablement


async def directories(session: AsyncSession, tenant: Tenant) -> list[Directory]:
    """The directory plugins the tenant enabled and the network allows, by name."""
    policies = await policies_in(session, tenant.network_id)
    rows = await session.scalars(
        select(PluginEnablement).where(PluginEnablement.enabled.is_(True)).order_by(PluginEnablement.plugin)
    )
    found = []
    for row in rows:
        plugin = registry().get(row.plugin)
        if plugin is not None and plugin.implements(HOOK) and is_allowed(policies, row.plugin):
            found.append(Directory(plugin, row))
    return found


def check(query: ServiceQuery) -> None:
    if not (query.text or query.category):
        raise InvalidInput("give q (what to look for) or a category", field="q", source="query")
    if query.radius_km is not None and not query.postal_code:
        raise InvalidInput("a radius needs a postal_code to measure from", field="radius_km", source="query")


async def search(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    *,
    text: str | None = None,
    category: str | None = None,
    postal_code: str | None = None,
    radius_km: float | None = None,
    language: str | None = None,
    limit: int = 20,
) -> DirectorySearchOut:
    """Up to ``limit`` services from each directory, with how each directory fared."""
    principal.require("directory", "read")
    query = ServiceQuery(
        text=text, category=category, postal_code=postal_code, radius_km=radius_km, language=language, limit=limit
    )
    check(query)
    tenant = await session.scalar(select(Tenant).where(Tenant.id == principal.tenant_id))
    assert tenant is not None  # a caller with the permission acts in a tenant
    found = await directories(session, tenant)
    asked = [d for d in found if not invoke.breaker_open(d.row)]
    info = invoke.tenant_info(tenant)
    answers = dict(
        zip(
            (d.plugin.name for d in asked),
            await asyncio.gather(*(_ask(d, info, settings, query) for d in asked)),
            strict=True,
        )
    )
    items: list[ServiceOut] = []
    outcome: list[DirectoryOut] = []
    for directory in found:
        name, row = directory.plugin.name, directory.row
        answer = answers.get(name)
        if answer is None:
            outcome.append(
                _out(directory, 0, f"not asked: paused after repeated failures until {row.open_until:%H:%M} UTC")
            )
        elif isinstance(answer, invoke.PluginFailed):
            failed(session, row, settings, HOOK, str(answer))
            outcome.append(_out(directory, 0, _note(answer, settings)))
        else:
            records = answer[: query.limit]
            items.extend(_service(name, record) for record in records)
            outcome.append(_out(directory, len(records), None))
            _succeeded(row)
    audit.record(
        session,
        principal.actor,
        action="directory.search",
        resource_type=RESOURCE,
        detail={
            # Which parts of the search were given, not what they said: the coordinator may have typed anything.
            "given": [f for f in ("text", "category", "postal_code", "radius_km", "language") if getattr(query, f)],
            "directories": [d.plugin.name for d in asked],
            "failed": [o.plugin for o in outcome if o.error],
            "found": len(items),
        },
    )
    return DirectorySearchOut(items=items, directories=outcome)


async def _ask(
    directory: Directory, tenant: TenantInfo, settings: Settings, query: ServiceQuery
) -> list[ServiceRecord] | invoke.PluginFailed:
    """One directory's services, or its failure (returned, so that one directory's failure stops no other)."""
    try:
        config = config_of(settings.plugin_secret_keys, directory.row)
        records: list[ServiceRecord] = await invoke.call(
            directory.plugin, HOOK, tenant=tenant, config=config, settings=settings, query=query
        )
    except invoke.PluginFailed as exc:
        return exc
    except Exception as exc:  # its configuration cannot be read or used: still this directory's failure alone
        return invoke.PluginFailed(directory.plugin.name, HOOK, f"could not be called: {type(exc).__name__}: {exc}")
    return records


def _note(failure: invoke.PluginFailed, settings: Settings) -> str:
    """Why a directory found nothing this time, in words for the coordinator (the admins see the whole error)."""
    if isinstance(failure.__context__, TimeoutError):
        return f"no answer within {settings.plugin_timeout_ms / 1000:g} s"
    if isinstance(failure.__cause__, WrongResult):
        return "its answer could not be read"
    return "it could not search just now; your administrators can see why in the plugin's status"


def _succeeded(row: PluginEnablement) -> None:
    last = row.last_success_at
    if row.failures or row.open_until is not None or last is None or utcnow() - last > SUCCESS_REFRESH:
        invoke.record_success(row)


def _out(directory: Directory, found: int, error: str | None) -> DirectoryOut:
    return DirectoryOut(plugin=directory.plugin.name, title=directory.plugin.manifest.title, found=found, error=error)


def _service(plugin: str, record: ServiceRecord) -> ServiceOut:
    return ServiceOut(
        plugin=plugin,
        id=record.id,
        name=record.name,
        organization=record.organization,
        description=record.description,
        categories=list(record.categories),
        address=dict(record.address) if record.address is not None else None,
        phone=record.phone,
        url=record.url,
        hours=record.hours,
        languages=list(record.languages),
        eligibility=record.eligibility,
    )
