"""Events per second through outbox -> relay -> broker -> actor -> database, next to raw Redis push/pop.

    python -m bench.jobs [events]      # CAREHUB_DATABASE_URL / CAREHUB_MIGRATION_DATABASE_URL / CAREHUB_REDIS_URL

Without CAREHUB_REDIS_URL the broker is in-process (the embedded default) and there is no Redis baseline.
Each event runs a handler whose only effect is its receipt: this measures the pipeline, not a rule. The ledger's
work is in it: a delivery row per event written at intake, marked at hand-over and deleted with the receipt.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid

import dramatiq
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import migrate, outbox
from core.db import make_engine, make_sessionmaker
from core.jobs.handlers import Event, on
from core.jobs.models import JobDelivery, JobReceipt
from core.jobs.relay import relay_once
from core.jobs.runtime import JobRuntime
from core.settings import Settings, load_settings
from tenants.context import network_scope, tenant_context
from tenants.models import Network, Tenant


@on("bench.ping", "bench-receipt-only")
async def _noop(session: AsyncSession, event: Event) -> None:
    return None


def bench_settings() -> Settings:
    settings = load_settings()
    if "CAREHUB_DATABASE_URL" not in os.environ:
        folder = tempfile.mkdtemp(prefix="carehub-bench-")
        settings = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{folder}/bench.sqlite3"})
    migrate.upgrade(settings)
    return settings


async def new_tenant(settings: Settings, name: str = "B") -> uuid.UUID:
    """An active tenant in a network of its own (networks and tenants are the table owner's to create)."""
    tenant_id = uuid.uuid4()
    owner = make_engine(settings.owner_database_url)
    with network_scope("bench: set up a tenant"):
        async with make_sessionmaker(owner)() as session, session.begin():
            network = Network(id=uuid.uuid4(), slug=f"bench-{tenant_id.hex[:8]}", name="Bench")
            session.add(network)
            session.add(
                Tenant(
                    id=tenant_id,
                    network_id=network.id,
                    slug=f"b-{tenant_id.hex[:12]}",
                    name=name,
                    kind="clinic",
                    status="active",
                )
            )
    await owner.dispose()
    return tenant_id


async def pipeline(settings: Settings, events: int) -> tuple[float, str]:
    await migrate.grant_app_role(settings)  # as `carehub db upgrade` does
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    tenant_id = await new_tenant(settings)
    with tenant_context(tenant_id):
        for start in range(0, events, 1000):
            async with db() as session, session.begin():
                for n in range(start, min(start + 1000, events)):
                    outbox.emit(session, "bench.ping", {"n": n}, aggregate_id=uuid.uuid4())
    runtime = JobRuntime(settings)
    worker = dramatiq.Worker(runtime.broker, worker_threads=settings.job_worker_threads)
    worker.start()
    began = time.perf_counter()

    async def done() -> int:
        with tenant_context(tenant_id):
            async with db() as session:
                return int(await session.scalar(select(func.count()).select_from(JobReceipt)) or 0)

    while await relay_once(db, runtime, batch=500):
        pass
    for _ in range(100_000):
        if await done() >= events:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - began
    with tenant_context(tenant_id):
        async with db() as session:
            left = int(await session.scalar(select(func.count()).select_from(JobDelivery)) or 0)
    assert left == 0, f"{left} deliveries still in the ledger after every receipt committed"
    runtime.close()
    worker.stop()
    runtime.broker.close()
    await engine.dispose()
    broker = "redis" if settings.redis_url else "in-process"
    return events / elapsed, f"{settings.database_url.split(':')[0]} + {broker}, {settings.job_worker_threads} threads"


def raw_redis(url: str, messages: int) -> float:
    client = Redis.from_url(url)
    key = f"carehub:bench:{uuid.uuid4()}"
    body = json.dumps({"event_id": str(uuid.uuid4()), "tenant_id": str(uuid.uuid4()), "payload": {"n": 1}})
    began = time.perf_counter()
    for _ in range(messages):
        client.lpush(key, body)
    for _ in range(messages):
        client.brpop([key], timeout=1)
    elapsed = time.perf_counter() - began
    client.delete(key)
    client.close()
    return messages / elapsed


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rate, what = asyncio.run(pipeline(bench_settings(), events))
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; {events} events")
    print(f"outbox -> relay -> broker -> actor -> database ({what}): {rate:,.0f} events/s")
    url = os.environ.get("CAREHUB_REDIS_URL")
    if url:
        raw = raw_redis(url, events)
        print(f"raw Redis LPUSH + BRPOP, one client, same run:            {raw:,.0f} messages/s")
        print(f"ratio pipeline / raw Redis: {rate / raw:.2%}")


if __name__ == "__main__":
    main()
