"""Per-patient order: a handler applies one patient's events in the order they were written, even with several
worker threads, a retry or a lost message in between, while another patient's events go ahead; retries, waits and
redeliveries are counted on /metrics, and waiting is never counted as failing."""

# ruff: noqa: F811 - the db fixture imported from tests.test_jobs is a parameter name here

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit, outbox
from core.jobs.handlers import Event, on
from core.jobs.models import JobDelivery
from core.jobs.relay import QUEUE_LIMIT_BATCHES, relay_forever, relay_once
from core.jobs.runtime import CRITICAL_QUEUE, NAMESPACE, QUEUE, JobRuntime, message_for
from core.outbox import OutboxEvent
from core.settings import Settings
from tenants.context import network_scope, tenant_context
from tests.conftest import World, login
from tests.test_jobs import Running, db  # noqa: F401 - the db fixture

# Real workers and retries with their backoff: the tests wait for them.
pytestmark = pytest.mark.slow


EVENTS_PER_PATIENT = 5
# What the recording handler saw, in the order it committed: (patient, n).
SEEN: list[tuple[str, int]] = []
# The patient whose first event is slow and fails once, and the one that must not wait for it.
SLOW: dict[str, Any] = {"patient": None, "other": None, "failed": 0, "other_done": None}


@on("test.ordered", "ordered-recorder")
async def _record(session: AsyncSession, event: Event) -> None:
    patient, n = str(event.aggregate_id), int(event.payload["n"])
    if patient == SLOW["patient"] and n == 0 and not SLOW["failed"]:
        # Hold this worker thread until the other patient's events are all handled (proof that they do not wait
        # behind this one), then fail: the retry comes after the later events of this patient were tried.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(SLOW["other_done"].wait(), timeout=20)
        SLOW["failed"] += 1
        raise RuntimeError("the downstream system is not ready yet")
    audit.record(session, audit.SYSTEM, action="test.ordered", resource_type="Test", resource_id=event.id)
    SEEN.append((patient, n))
    if patient == SLOW["other"] and n == EVENTS_PER_PATIENT - 1:
        SLOW["other_done"].set()


@pytest.fixture
def workers(settings: Settings) -> Iterator[Running]:
    quick = settings.model_copy(update={"job_min_backoff_ms": 100, "job_max_backoff_ms": 500})
    running = Running(quick, threads=3)
    running.worker.start()
    try:
        yield running
    finally:
        running.runtime.close()
        running.worker.stop()
        running.runtime.broker.close()


def _metric(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in {text}")


COUNTERS = (
    'carehub_job_retries_total{queue="events"}',
    'carehub_job_failures_total{queue="events"}',
    'carehub_job_order_waits_total{queue="events"}',
    'carehub_job_redeliveries_total{queue="events"}',
)


async def _counters(client: AsyncTestClient[Any]) -> dict[str, float]:
    scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert "# TYPE carehub_job_retries_total counter" in scraped.text
    return {name: _metric(scraped.text, name) for name in COUNTERS}


async def test_a_patients_events_are_handled_in_order_and_another_patient_does_not_wait(
    client: AsyncTestClient[Any], world: World, workers: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    SEEN.clear()
    slow, other = uuid.uuid4(), uuid.uuid4()
    SLOW.update(patient=str(slow), other=str(other), failed=0, other_done=asyncio.Event())
    before = await _counters(client)
    # Both patients' events written together, interleaved, in one transaction (as one change can write several).
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            for n in range(EVENTS_PER_PATIENT):
                for patient in (slow, other):
                    outbox.emit(session, "test.ordered", {"n": n}, aggregate_id=patient)

    assert await relay_once(db, workers.runtime) == 2 * EVENTS_PER_PATIENT
    await workers.settle(db)

    def order(patient: uuid.UUID) -> list[int]:
        return [n for p, n in SEEN if p == str(patient)]

    assert order(slow) == list(range(EVENTS_PER_PATIENT))
    assert order(other) == list(range(EVENTS_PER_PATIENT))
    # The other patient's events were all handled before the slow patient's first one (which failed once).
    assert SEEN.index((str(other), EVENTS_PER_PATIENT - 1)) < SEEN.index((str(slow), 0))
    assert SLOW["failed"] == 1

    after = await _counters(client)
    retries, failures, waits, _ = (after[name] - before[name] for name in COUNTERS)
    assert retries == 1  # the one failure; waiting for an earlier event is not a retry
    assert failures == 0
    assert waits >= EVENTS_PER_PATIENT - 1  # each later event of the slow patient waited at least once
    admin = await login(client, "admin.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/jobs/dead-letters", headers=admin)).json()["items"] == []
    handled = (await client.get("/api/v1/audit-events?action=test.ordered&limit=50", headers=admin)).json()
    assert len(handled["items"]) == 2 * EVENTS_PER_PATIENT  # each effect once


async def test_an_earlier_event_without_a_delivery_does_not_hold_the_patient_back(
    world: World, workers: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    """An event taken in before the handler existed (or before the ledger) has no delivery for it: the handler
    will never see it, and the patient's later event does not wait for it."""
    SEEN.clear()
    SLOW.update(patient=None, other=None, failed=0)
    patient, now = uuid.uuid4(), datetime.now(UTC)
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            written = now - timedelta(seconds=1)
            session.add(
                OutboxEvent(
                    topic="test.ordered", payload={"n": 0}, aggregate_id=patient, created_at=written, published_at=now
                )
            )
            outbox.emit(session, "test.ordered", {"n": 1}, aggregate_id=patient)
    began = time.monotonic()
    assert await relay_once(db, workers.runtime) == 1
    await workers.settle(db)
    assert SEEN == [(str(patient), 1)]
    assert time.monotonic() - began < 5


def _lose_every_message(runtime: JobRuntime) -> int:
    """What the broker holds is gone (Redis killed without persistence, or restarted empty): how many were."""
    broker = runtime.broker
    if isinstance(broker, StubBroker):
        held = sum(queue.qsize() for queue in broker.queues.values())
        broker.flush_all()
        return held
    held = sum(int(broker.client.llen(f"{NAMESPACE}:{queue}")) for queue in (QUEUE, CRITICAL_QUEUE))
    broker.client.flushdb()
    return held


async def test_a_patients_events_lost_by_the_broker_are_handed_over_again_in_order(
    client: AsyncTestClient[Any], world: World, settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    """The broker loses every message it holds after the relay handed them over: the ledger hands each over
    again once its delivery timeout has passed, the patient's events are handled in order, each once, and the
    redeliveries are counted (the old relay marked them done when it handed them over: they were never handled)."""
    SEEN.clear()
    SLOW.update(patient=None, other=None, failed=0)
    timeout_s = 1.5
    short = settings.model_copy(update={"job_delivery_timeout_ms": int(timeout_s * 1000), "job_time_limit_ms": 1000})
    patients = [uuid.uuid4(), uuid.uuid4()]
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            for n in range(3):
                for patient in patients:
                    outbox.emit(session, "test.ordered", {"n": n}, aggregate_id=patient)
    before = await _counters(client)
    running = Running(short, threads=3)  # its worker starts only after the loss
    try:
        assert await relay_once(db, running.runtime) == 6
        assert await asyncio.to_thread(_lose_every_message, running.runtime) == 6
        running.worker.start()
        began = time.monotonic()
        await running.settle(db, seconds=30)
        took = time.monotonic() - began
    finally:
        running.runtime.close()
        running.worker.stop()
        running.runtime.broker.close()
    for patient in patients:
        assert [n for p, n in SEEN if p == str(patient)] == [0, 1, 2]
    assert len(SEEN) == 6
    assert timeout_s - 0.5 < took < timeout_s + 10  # handed over again after the timeout, not before
    after = await _counters(client)
    assert after[COUNTERS[3]] - before[COUNTERS[3]] == 6
    assert after[COUNTERS[1]] - before[COUNTERS[1]] == 0  # a lost message is not a failure


async def test_a_job_that_fails_for_good_is_counted_once_per_attempt(
    client: AsyncTestClient[Any], world: World, settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    """Two retries, then given up: /metrics shows 2 retries and 1 failure, and the job is in the dead letters."""
    SEEN.clear()
    SLOW.update(patient=None, other=None, failed=0)
    quick = settings.model_copy(update={"job_max_retries": 2, "job_min_backoff_ms": 10, "job_max_backoff_ms": 50})
    running = Running(quick, threads=2)
    running.worker.start()
    try:
        before = await _counters(client)
        with tenant_context(world.tenant_a):
            async with db() as session, session.begin():
                outbox.emit(session, "test.always_failing", {}, aggregate_id=uuid.uuid4())
        await running.settle(db)
        after = await _counters(client)
    finally:
        running.runtime.close()
        running.worker.stop()
        running.runtime.broker.close()
    assert after[COUNTERS[0]] - before[COUNTERS[0]] == 2
    assert after[COUNTERS[1]] - before[COUNTERS[1]] == 1
    admin = await login(client, "admin.a@test.example", world.slug_a)
    [letter] = (await client.get("/api/v1/jobs/dead-letters", headers=admin)).json()["items"]
    assert letter["topic"] == "test.always_failing"


@on("test.always_failing", "always-failing")
async def _always_failing(session: AsyncSession, event: Event) -> None:
    raise RuntimeError("the downstream system refused the request")


async def _never_handed_over(db: async_sessionmaker[AsyncSession]) -> int:
    with network_scope("test: count the ledger"):
        async with db() as session:
            query = select(func.count()).select_from(JobDelivery).where(JobDelivery.sends == 0)
            return int(await session.scalar(query) or 0)


async def test_a_backlog_waits_in_the_ledger_and_a_critical_event_still_goes_out(
    world: World, settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    """The relay keeps the broker's queue short, so that the next batch (fair across tenants) is taken from the
    ledger; a critical event goes out whatever the queue's length. No worker runs: the queue only fills."""
    batch, limit = 10, QUEUE_LIMIT_BATCHES * 10
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            for n in range(limit + 15):
                outbox.emit(session, "test.ordered", {"n": n}, aggregate_id=uuid.uuid4())
    runtime = JobRuntime(settings)
    stop = asyncio.Event()
    relay = asyncio.create_task(relay_forever(db, runtime, 0.05, batch, stop))
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while await asyncio.to_thread(runtime.queue_depth) < limit:
            assert asyncio.get_running_loop().time() < deadline, "the relay did not fill the queue"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # several more relay passes: nothing more goes out
        assert await asyncio.to_thread(runtime.queue_depth) == limit
        assert await _never_handed_over(db) == 15

        with tenant_context(world.tenant_b):
            async with db() as session, session.begin():
                outbox.emit(session, "lab_result.critical_received", {"result_id": str(uuid.uuid4())}, uuid.uuid4())
        while await _never_handed_over(db) > 15:
            assert asyncio.get_running_loop().time() < deadline, "the critical event did not go out"
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(runtime.queue_depth) == limit
    finally:
        stop.set()
        await relay
        runtime.broker.close()


async def test_a_message_without_its_events_time_is_ordered_by_the_outbox(
    world: World, settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    """A message written before messages carried their event's time (a dead letter replayed after an upgrade)
    still waits for the earlier event of its patient: the time is read from the outbox."""
    SEEN.clear()
    SLOW.update(patient=None, other=None, failed=0)
    patient = uuid.uuid4()
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            for n in range(2):
                outbox.emit(session, "test.ordered", {"n": n}, aggregate_id=patient)
    runtime = JobRuntime(settings)  # no worker: deliver is called as the worker would
    try:
        assert await relay_once(db, runtime) == 2
        with network_scope("test: read the outbox"):
            async with db() as session:
                events = list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at)))
        later = message_for(events[1], "ordered-recorder")
        del later["created_at"]
        await runtime.deliver(later)
        assert SEEN == []  # it waits (due again shortly, in the ledger) for the first one
        await runtime.deliver(message_for(events[0], "ordered-recorder"))
        await runtime.deliver(later)
        assert SEEN == [(str(patient), 0), (str(patient), 1)]
    finally:
        await runtime.dispose()
        runtime.broker.close()
