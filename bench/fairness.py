"""Fairness: how long another tenant's critical lab result waits while one tenant has a backlog of 10,000 events.

    python -m bench.fairness [backlog]   # CAREHUB_DATABASE_URL / CAREHUB_MIGRATION_DATABASE_URL / CAREHUB_REDIS_URL

Tenant A has ``backlog`` events in the outbox (10 per patient, 1,000 patients; each handled by a handler whose
only effect is its receipt). Tenant B has a critical lab result whose event waits with them. The relay and the
workers then start (as ``carehub worker`` runs them), and the script measures:

1. B's critical result written before the start: from the start to the commit of its handler (the real one: a stat
   task and an alert for the ordering clinician);
2. once A's first 30% are handled (the rest waiting, in the outbox or the broker's queue), B writes a second
   critical result and an ordinary event: from each event's writing to its handler's commit;
3. how long A's backlog takes to drain.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import dramatiq
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.jobs import bench_settings, new_tenant
from core import migrate, outbox
from core.db import make_engine, make_sessionmaker, utcnow
from core.jobs.models import JobReceipt
from core.jobs.relay import relay_forever
from core.jobs.runtime import JobRuntime
from core.outbox import OutboxEvent
from core.patients.models import Patient
from core.results.models import LabResult
from core.settings import Settings
from tenants.context import network_scope, tenant_context
from tenants.models import Membership, User

CRITICAL = "lab_result.critical_received"
PATIENTS_IN_A = 1000


@dataclass(frozen=True)
class Clinic:
    tenant_id: uuid.UUID
    clinician_id: uuid.UUID
    patient_id: uuid.UUID


async def clinic_with_a_patient(settings: Settings, db: async_sessionmaker[AsyncSession]) -> Clinic:
    """Tenant B: a clinician (a member) and a patient, for whom critical results are written."""
    tenant_id = await new_tenant(settings, "B")
    clinician_id, patient_id = uuid.uuid4(), uuid.uuid4()
    owner = make_engine(settings.owner_database_url)
    async with make_sessionmaker(owner)() as session, session.begin():
        session.add(User(id=clinician_id, email=f"dr-{clinician_id.hex[:8]}@bench.example", full_name="Dr. Bench"))
    await owner.dispose()
    with tenant_context(tenant_id):
        async with db() as session, session.begin():
            session.add(Membership(user_id=clinician_id, roles=["clinician"]))
            session.add(
                Patient(
                    id=patient_id,
                    mrn="BENCH-1",
                    given_name="Pat",
                    family_name="Bench",
                    birth_date=date(1950, 1, 1),
                    sex="female",
                )
            )
    return Clinic(tenant_id, clinician_id, patient_id)


async def critical_result(db: async_sessionmaker[AsyncSession], clinic: Clinic) -> uuid.UUID:
    """A critical potassium written as the results service writes one (the result, its event); the event's id."""
    result_id = uuid.uuid4()
    with tenant_context(clinic.tenant_id):
        async with db() as session, session.begin():
            session.add(
                LabResult(
                    id=result_id,
                    patient_id=clinic.patient_id,
                    code="2823-3",
                    display="Potassium",
                    value="6.9",
                    unit="mmol/L",
                    reference_range="3.5-5.1",
                    interpretation="critical",
                    status="final",
                    effective_at=utcnow() - timedelta(minutes=5),
                    ordered_by=clinic.clinician_id,
                )
            )
            payload = {
                "result_id": str(result_id),
                "patient_id": str(clinic.patient_id),
                "code": "2823-3",
                "interpretation": "critical",
                "status": "final",
            }
            return _emit(session, CRITICAL, payload, clinic.patient_id)


async def ordinary_event(db: async_sessionmaker[AsyncSession], clinic: Clinic) -> uuid.UUID:
    """An event of B that is not critical (another patient's): it shares the ``events`` queue with A's."""
    with tenant_context(clinic.tenant_id):
        async with db() as session, session.begin():
            return _emit(session, "bench.ping", {"n": -1}, uuid.uuid4())


def _emit(session: AsyncSession, topic: str, payload: dict[str, Any], aggregate_id: uuid.UUID) -> uuid.UUID:
    """outbox.emit, with the event's id known to the caller."""
    event = OutboxEvent(id=uuid.uuid4(), topic=topic, payload=payload, aggregate_id=aggregate_id)
    session.add(event)
    return event.id


async def handled_at(db: async_sessionmaker[AsyncSession], event_id: uuid.UUID) -> tuple[datetime, datetime] | None:
    """(the event's writing, its first handler's commit), once handled."""
    with network_scope("bench: read the receipts"):
        async with db() as session:
            row = (
                await session.execute(
                    select(OutboxEvent.created_at, func.min(JobReceipt.processed_at))
                    .join(JobReceipt, JobReceipt.event_id == OutboxEvent.id)
                    .where(OutboxEvent.id == event_id)
                    .group_by(OutboxEvent.created_at)
                )
            ).first()
    return (row[0], row[1]) if row else None


async def counts(db: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID) -> tuple[int, int, datetime | None]:
    """Tenant A's unpublished events, handled events, and its last handler's commit."""
    with tenant_context(tenant_id):
        async with db() as session:
            unpublished = await session.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
            )
            handled, last = (
                await session.execute(select(func.count(), func.max(JobReceipt.processed_at)).select_from(JobReceipt))
            ).one()
    return int(unpublished or 0), int(handled or 0), last


async def analyze(settings: Settings) -> None:
    """Table statistics after the bulk load, as autovacuum gathers them on a running database after so many rows
    (without them PostgreSQL plans for empty tables, which a long-running installation never sees)."""
    if not settings.is_postgres:
        return
    owner = make_engine(settings.owner_database_url)
    async with owner.connect() as conn:
        await conn.execute(text("ANALYZE outbox_events"))
        await conn.execute(text("ANALYZE job_receipts"))
        await conn.commit()
    await owner.dispose()


async def run(settings: Settings, backlog: int) -> list[str]:
    await migrate.grant_app_role(settings)
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    tenant_a = await new_tenant(settings, "A")
    clinic = await clinic_with_a_patient(settings, db)
    patients = [uuid.uuid4() for _ in range(PATIENTS_IN_A)]
    with tenant_context(tenant_a):
        for start in range(0, backlog, 1000):
            async with db() as session, session.begin():
                for n in range(start, min(start + 1000, backlog)):
                    outbox.emit(session, "bench.ping", {"n": n}, aggregate_id=patients[n % PATIENTS_IN_A])
    first = await critical_result(db, clinic)
    await analyze(settings)

    runtime = JobRuntime(settings)
    worker = dramatiq.Worker(runtime.broker, worker_threads=settings.job_worker_threads)
    worker.start()
    stop = asyncio.Event()
    started, began = utcnow(), time.perf_counter()
    relay = asyncio.create_task(
        relay_forever(db, runtime, settings.relay_interval_ms / 1000, settings.relay_batch, stop)
    )
    lines: list[str] = []
    second: dict[str, uuid.UUID] = {}
    handed_over = None
    try:
        while True:
            unpublished, handled, last = await counts(db, tenant_a)
            if handed_over is None and unpublished == 0:
                handed_over = time.perf_counter() - began
            if not second and handled >= backlog * 0.3:
                waiting, in_broker = backlog - handled, await asyncio.to_thread(runtime.queue_depth)
                second = {"critical": await critical_result(db, clinic), "ordinary": await ordinary_event(db, clinic)}
            if handled >= backlog and second and all([await handled_at(db, e) for e in second.values()]):
                break
            await asyncio.sleep(0.1)
        drained = (last - started).total_seconds() if last else float("nan")
        times = await handled_at(db, first)
        assert times is not None
        lines.append(
            f"B's critical result, written with A's {backlog:,} events in the outbox: handled "
            f"{(times[1] - started).total_seconds():.2f} s after the start"
        )
        for kind, event_id in second.items():
            times = await handled_at(db, event_id)
            assert times is not None
            lines.append(
                f"B's {kind} event, written with {waiting:,} of A's events waiting ({in_broker:,} in the broker's "
                f"queue, the rest in the outbox): handled "
                f"{(times[1] - times[0]).total_seconds():.2f} s after it was written"
            )
        lines.append(f"A's last event handed to the broker after {handed_over or 0:.1f} s; drained in {drained:.1f} s")
        lines.append(f"A's drain rate: {backlog / drained:,.0f} events/s")
    finally:
        stop.set()
        await relay
        runtime.close()
        worker.stop()
        runtime.broker.close()
        await engine.dispose()
    return lines


def main() -> None:
    backlog = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    settings = bench_settings()
    lines = asyncio.run(run(settings, backlog))
    broker = "redis" if settings.redis_url else "in-process"
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"{settings.database_url.split(':')[0]} + {broker}, {settings.job_worker_threads} worker threads, "
        f"relay batch {settings.relay_batch}"
    )
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
