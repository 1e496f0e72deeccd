"""FHIR resources imported per second by the bundled ehr_fhir plugin through the worker's sync, next to a floor in
the same run that fetches the same pages and stores each resource in one bare INSERT.

    python -m bench.fhir [copies]   # CAREHUB_DATABASE_URL / CAREHUB_MIGRATION_DATABASE_URL as for bench.jobs

The EHR is the local FHIR R4 server of the tests (``tests/plugins/fhir_server.py``: searchset paging with next
links, ``_lastUpdated``), serving ``copies`` copies of its realistic record set (30 patients with identifiers,
names, telecoms and addresses; 9 encounters with diagnoses and dispositions; 6 conditions; 12 lab and vital
observations with interpretations and reference ranges), over HTTP on loopback, 100 resources a page.

- ``carehub``: ``schedule.plugin_sync`` handled for the tenant until the plugin reports every pull caught up:
  each page mapped by the plugin into effects, checked and applied by the host in a savepoint with its
  watermark (patients matched on identifiers and linked for the network, records keyed by the EHR's id, audit
  and outbox events), one job transaction per run of at most 20 pages a resource type.
- ``floor``: the same searches and pages with one HTTP client, each resource stored as JSON in one bare INSERT
  per page (executemany), committed per page.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import platform
import sys
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select, text

from bench.jobs import bench_settings, new_tenant
from core import migrate
from core.conditions.models import Condition
from core.db import make_engine, make_sessionmaker
from core.encounters.models import Encounter
from core.jobs.events import Event
from core.patients.models import Patient
from core.plugins import sync
from core.plugins.models import PluginEnablement
from core.results.models import LabResult
from core.settings import Settings
from tenants.context import tenant_context
from tests.plugins.fhir_server import FhirServer

TOKEN = "bench-static-token"  # noqa: S105 - the local test server's bearer token
TYPES = ("Patient", "Encounter", "Condition", "Observation")
FLOOR_TABLE = "bench_fhir_floor"


def _copy(value: Any, k: int) -> Any:
    """A resource of copy ``k``: its id, references to other resources and identifier values suffixed."""
    if isinstance(value, list):
        return [_copy(v, k) for v in value]
    if not isinstance(value, dict):
        return value
    out = {key: _copy(v, k) for key, v in value.items()}
    if isinstance(out.get("id"), str) and "resourceType" in out:
        out["id"] = f"{out['id']}-{k}"
    reference = out.get("reference")
    if isinstance(reference, str) and "/" in reference and not reference.startswith("#"):
        out["reference"] = f"{reference}-{k}"
    if "system" in out and isinstance(out.get("value"), str) and "code" not in out and "unit" not in out:
        out["value"] = f"{out['value']}-{k}"  # an identifier (a telecom's value gets it too: harmless)
    return out


def serve(copies: int) -> FhirServer:
    server = FhirServer()
    seeded = copy.deepcopy(server.resources)
    for kind in TYPES:
        server.resources[kind] = {
            f"{rid}-{k}": _copy(resource, k) for k in range(copies) for rid, resource in seeded[kind].items()
        }
    server.add_bearer(TOKEN)
    return server


async def carehub(settings: Settings, server: FhirServer) -> tuple[float, int]:
    tenant_id = await new_tenant(settings, "Bench Hospital")
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    config = {"base_url": server.base_url, "auth": "bearer", "bearer_token": TOKEN, "page_size": 100}
    with tenant_context(tenant_id):
        async with db() as session, session.begin():
            session.add(PluginEnablement(plugin="ehr_fhir", enabled=True, config=config))
    sync.configure(settings.model_copy(update={"plugin_allow_networks": ["127.0.0.0/8"]}))
    began = time.perf_counter()
    for _ in range(10_000):
        with tenant_context(tenant_id):
            async with db() as session, session.begin():
                event = Event(
                    id=uuid.uuid4(), tenant_id=tenant_id, topic="schedule.plugin_sync", payload={}, aggregate_id=None
                )
                await sync.sync_tenant(session, event)
            async with db() as session:
                row = await session.scalar(select(PluginEnablement))
                assert row is not None and row.failures == 0, row.last_error if row else "no enablement"
                if row.synced_at is not None:
                    break
    elapsed = time.perf_counter() - began
    with tenant_context(tenant_id):
        async with db() as session:
            counts = [
                int(await session.scalar(select(func.count()).select_from(m)) or 0)
                for m in (Patient, Encounter, Condition, LabResult)
            ]
    await engine.dispose()
    return sum(counts) / elapsed, sum(counts)


async def floor(settings: Settings, server: FhirServer) -> tuple[float, int]:
    owner = make_engine(settings.owner_database_url)
    async with owner.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))
        await conn.execute(
            text(f"CREATE TABLE {FLOOR_TABLE} (id varchar(80) PRIMARY KEY, kind varchar(20), body text NOT NULL)")
        )
    await owner.dispose()
    await migrate.grant_app_role(settings)
    engine = make_engine(settings.database_url)
    insert = text(f"INSERT INTO {FLOOR_TABLE} (id, kind, body) VALUES (:i, :k, :b)")  # noqa: S608
    stored = 0
    began = time.perf_counter()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for kind in TYPES:
            url: str | None = f"{server.base_url}/{kind}?_count=100&_sort=_lastUpdated"
            while url:
                bundle = (await http.get(url)).json()
                rows = [
                    {"i": f"{kind}/{e['resource']['id']}", "k": kind, "b": json.dumps(e["resource"])}
                    for e in bundle.get("entry", [])
                ]
                if rows:
                    async with engine.begin() as conn:
                        await conn.execute(insert, rows)
                stored += len(rows)
                url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    elapsed = time.perf_counter() - began
    await engine.dispose()
    return stored / elapsed, stored


def main() -> None:
    copies = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    settings = bench_settings()
    asyncio.run(migrate.grant_app_role(settings))
    with serve(copies) as server:
        offered = sum(len(server.resources[kind]) for kind in TYPES)
        bare, fetched = asyncio.run(floor(settings, server))
        rate, imported = asyncio.run(carehub(settings, server))
    database = settings.database_url.split(":")[0]
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; {database}")
    print(f"the EHR serves {offered} resources ({copies} copies of its record set), 100 a page, over loopback HTTP")
    print(f"floor (fetch every page, one INSERT per page)         {bare:8,.0f} resources/s  ({fetched} stored)")
    print(f"carehub sync (ehr_fhir, mapped, matched, applied)     {rate:8,.0f} resources/s  ({imported} imported)")
    print(f"ratio carehub / floor: {rate / bare:.0%}")


if __name__ == "__main__":
    main()
