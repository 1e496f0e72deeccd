"""Background jobs: the outbox relay hands committed events to the broker, the delivery actor runs each handler
once in effect in the event's tenant, and nothing is lost while the broker is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit, outbox
from core.db import make_engine, make_sessionmaker
from core.jobs import scheduler
from core.jobs.handlers import Event, on
from core.jobs.models import JobDelivery
from core.jobs.relay import relay_forever, relay_once
from core.jobs.runtime import CRITICAL_QUEUE, NAMESPACE, QUEUE, JobRuntime, Refused, message_for
from core.outbox import OutboxEvent
from core.settings import Settings
from tenants.context import network_scope, tenant_context
from tests.conftest import World, login
from tests.factories import patient_body

# Real workers, a real broker, leases and heartbeats: the tests wait for them.
pytestmark = pytest.mark.slow


class Running:
    """A job runtime with a worker thread consuming its queue."""

    def __init__(self, settings: Settings, threads: int = 1) -> None:
        self.runtime = JobRuntime(settings)
        self.worker = dramatiq.Worker(self.runtime.broker, worker_threads=threads, worker_timeout=100)

    def drain(self) -> None:
        for queue in (CRITICAL_QUEUE, QUEUE):
            if isinstance(self.runtime.broker, StubBroker):
                self.runtime.broker.join(queue, timeout=60_000, fail_fast=False)
            else:
                self.runtime.broker.join(queue, timeout=60_000)
        self.worker.join()

    @contextlib.asynccontextmanager
    async def relaying(self, db: async_sessionmaker[AsyncSession], interval: float = 0.02) -> AsyncIterator[None]:
        """The relay running beside the worker (retries and order waits are handed over again by it)."""
        stop = asyncio.Event()
        relay = asyncio.create_task(relay_forever(db, self.runtime, interval, 200, stop))
        try:
            yield
        finally:
            stop.set()
            await relay

    async def settle(self, db: async_sessionmaker[AsyncSession], seconds: float = 60) -> None:
        """Relay and run jobs until nothing is left: every event taken into the ledger and every delivery done (or
        in the dead letters)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        async with self.relaying(db):
            while await _ledger(db) != (0, 0):
                assert loop.time() < deadline, f"the jobs did not settle: {await _ledger(db)}"
                await asyncio.sleep(0.05)
        await asyncio.to_thread(self.drain)


async def _ledger(db: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """Events not yet taken into the ledger, and deliveries in it (not done), in one snapshot."""
    unpublished = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
    pending = select(func.count()).select_from(JobDelivery)
    with network_scope("test: count the ledger"):
        async with db() as session:
            row = (await session.execute(select(unpublished.scalar_subquery(), pending.scalar_subquery()))).one()
    return int(row[0]), int(row[1])


@pytest.fixture
def jobs(settings: Settings) -> Iterator[Running]:
    running = Running(settings)
    running.worker.start()
    try:
        yield running
    finally:
        running.runtime.close()
        running.worker.stop()
        running.runtime.broker.close()


@pytest.fixture
async def db(settings: Settings) -> Any:
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def _no_show(client: AsyncTestClient[Any], world: World) -> tuple[dict[str, str], str]:
    """A booked appointment the patient missed: the API records the no-show (and writes its outbox event)."""
    admin = await login(client, "admin.a@test.example", world.slug_a)
    me = (await client.get("/api/v1/auth/me", headers=admin)).json()
    patient = (await client.post("/api/v1/patients", json=patient_body("JB-1"), headers=admin)).json()
    start = datetime.now(UTC) - timedelta(minutes=40)
    appointment = await client.post(
        "/api/v1/appointments",
        headers=admin,
        json={
            "patient_id": patient["id"],
            "participant_id": me["user_id"],
            "kind": "phone",
            "start_at": start.isoformat(),
            "end_at": (start + timedelta(minutes=20)).isoformat(),
            "reason": "Blood pressure review",
        },
    )
    assert appointment.status_code == 201, appointment.text
    missed = await client.post(
        f"/api/v1/appointments/{appointment.json()['id']}/status", headers=admin, json={"status": "noshow"}
    )
    assert missed.status_code == 200, missed.text
    return admin, patient["id"]


async def _follow_ups(client: AsyncTestClient[Any], headers: dict[str, str], patient_id: str) -> list[str]:
    tasks = (await client.get(f"/api/v1/tasks?queue=all&patient_id={patient_id}", headers=headers)).json()
    return [t["title"] for t in tasks["items"] if t["template_code"] == "noshow-follow-up"]


async def _unpublished(db: async_sessionmaker[AsyncSession], *, but: tuple[str, ...] = ()) -> int:
    with network_scope("test: count the outbox"):
        async with db() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None), OutboxEvent.topic.not_in(but))
            )
    return int(count or 0)


async def test_a_no_show_becomes_one_follow_up_task(
    client: AsyncTestClient[Any], world: World, jobs: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    admin, patient_id = await _no_show(client, world)
    assert await _follow_ups(client, admin, patient_id) == []  # nothing happens inside the request

    assert await relay_once(db, jobs.runtime) >= 3  # patient, appointment created, no-show
    # All handed over (the worker may already have handled the no-show and written its task's event).
    assert await _unpublished(db, but=("task.created",)) == 0
    await asyncio.to_thread(jobs.drain)
    assert await _follow_ups(client, admin, patient_id) == ["Follow up on a missed appointment"]

    # The same message delivered again (a redelivery after a crash, a replay): the effect happens once.
    with network_scope("test: read the outbox"):
        async with db() as session:
            noshow = await session.scalar(select(OutboxEvent).where(OutboxEvent.topic == "appointment.noshow"))
    assert noshow is not None
    jobs.runtime.send(message_for(noshow, "noshow-follow-up-task"))
    await asyncio.to_thread(jobs.drain)
    assert await _follow_ups(client, admin, patient_id) == ["Follow up on a missed appointment"]
    assert await relay_once(db, jobs.runtime) == 1  # only the follow-up task's own task.created event


async def _in_flight(db: async_sessionmaker[AsyncSession]) -> int:
    with network_scope("test: count the ledger"):
        async with db() as session:
            query = select(func.count()).select_from(JobDelivery).where(JobDelivery.sent_at.is_not(None))
            return int(await session.scalar(query) or 0)


async def test_events_wait_in_the_ledger_while_the_broker_is_down(
    client: AsyncTestClient[Any], world: World, settings: Settings, jobs: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    admin, patient_id = await _no_show(client, world)  # the requests succeed whatever the broker's state
    waiting = await _unpublished(db)
    down = JobRuntime(settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"}))
    if settings.redis_url:  # an unreachable Redis: the relay fails, and every job stays due in the ledger
        with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a refused connection
            await relay_once(db, down)
        unpublished, pending = await _ledger(db)
        assert waiting >= 3 and unpublished == 0 and pending >= 1  # the no-show's job (at least) waits, due
        assert await _in_flight(db) == 0  # nothing counts as handed over
    await relay_once(db, jobs.runtime)  # the broker is back: handed over at once, not after a timeout
    await asyncio.to_thread(jobs.drain)
    assert await _follow_ups(client, admin, patient_id) == ["Follow up on a missed appointment"]
    assert (await _ledger(db))[1] == 0


async def test_a_message_without_a_tenant_is_refused(settings: Settings) -> None:
    runtime = JobRuntime(settings.model_copy(update={"redis_url": None}))
    with pytest.raises(Refused):
        await runtime.deliver({"event_id": "5", "topic": "appointment.noshow", "handler": "noshow-follow-up-task"})


# A handler that fails until the fault is fixed: stands for a bug or an outage in a real handler.
FAULT = {"broken": True}


@on("test.poison", "flaky-handler")
async def _flaky(session: AsyncSession, event: Event) -> None:
    if FAULT["broken"]:
        raise RuntimeError("the downstream system refused the request")
    audit.record(session, audit.SYSTEM, action="test.handled", resource_type="Test", resource_id=event.id)


async def _wait_for(check: Any, seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_poison_message_ends_in_the_dead_letters_and_can_be_replayed(
    client: AsyncTestClient[Any], world: World, settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    FAULT["broken"] = True
    quick = settings.model_copy(update={"job_max_retries": 2, "job_min_backoff_ms": 10, "job_max_backoff_ms": 50})
    running = Running(quick)
    running.worker.start()
    try:
        with tenant_context(world.tenant_a):
            async with db() as session, session.begin():
                outbox.emit(session, "test.poison", {"note": "x"})
        async with running.relaying(db):
            admin = await login(client, "admin.a@test.example", world.slug_a)

            async def dead() -> list[dict[str, Any]]:
                listed = await client.get("/api/v1/jobs/dead-letters", headers=admin)
                assert listed.status_code == 200, listed.text
                return list(listed.json()["items"])

            await _wait_for(dead)
            [letter] = await dead()
            assert (letter["topic"], letter["handler"], letter["retries"]) == ("test.poison", "flaky-handler", 3)
            assert "the downstream system refused the request" in letter["error"]
            # Another tenant's administrator neither sees nor replays it; a clinician may not look.
            b_admin = await login(client, "admin.b@test.example", world.slug_b)
            assert (await client.get("/api/v1/jobs/dead-letters", headers=b_admin)).json()["items"] == []
            url = f"/api/v1/jobs/dead-letters/{letter['id']}"
            assert (await client.post(f"{url}/replay", headers=b_admin)).status_code == 404
            doc = await login(client, "doc.a@test.example", world.slug_a)
            assert (await client.get("/api/v1/jobs/dead-letters", headers=doc)).status_code == 403

            FAULT["broken"] = False  # the fault is fixed
            replayed = await client.post(f"{url}/replay", headers=admin)
            assert replayed.status_code == 202 and replayed.json()["replay_requested_at"] is not None
            assert (await client.post(f"{url}/replay", headers=admin)).status_code == 409

            async def handled() -> bool:
                events = await client.get("/api/v1/audit-events?action=test.handled", headers=admin)
                return len(events.json()["items"]) == 1

            await _wait_for(handled)
            assert (await client.get(url, headers=admin)).json()["replayed_at"] is not None
            assert len(await dead()) == 1  # no new failure
            assert (await _ledger(db))[1] == 0
    finally:
        FAULT["broken"] = False
        running.runtime.close()
        running.worker.stop()
        running.runtime.broker.close()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in {text}")


async def test_metrics_and_readiness_show_the_backlog(
    client: AsyncTestClient[Any], world: World, jobs: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    await _no_show(client, world)
    before = await client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    assert _metric(before.text, "carehub_outbox_unpublished") >= 3
    assert "ok (" in (await client.get("/readyz")).json()["checks"]["jobs"]

    await relay_once(db, jobs.runtime)
    await asyncio.to_thread(jobs.drain)
    after = (await client.get("/metrics")).text
    assert _metric(after, "carehub_outbox_unpublished") == 1  # the follow-up task's own event, not yet relayed
    assert _metric(after, "carehub_jobs_handled_last_hour") == 1
    assert _metric(after, 'carehub_job_latency_seconds{quantile="0.5"}') >= 0
    assert _metric(after, 'carehub_job_dead_letters{state="pending"}') == 0
    assert "patient" not in after.lower()  # aggregates only


@pytest.mark.postgres_only
async def test_a_dead_workers_job_runs_again_within_the_heartbeat_timeout(
    client: AsyncTestClient[Any], world: World, settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    """A worker takes the no-show job and dies before finishing it (no ack, no more heartbeats): another
    worker takes it over once the heartbeat timeout has passed, and the follow-up task is made once."""
    assert settings.redis_url, "the PostgreSQL leg runs with Redis"
    fast = settings.model_copy(update={"job_heartbeat_timeout_ms": 1000})
    admin, patient_id = await _no_show(client, world)

    doomed = JobRuntime(fast)  # the worker that will die: it fetches, then is never heard of again
    await relay_once(db, doomed)
    consumer = doomed.broker.consume(QUEUE, prefetch=50, timeout=1000)
    taken = []
    for _ in range(10):
        message = await asyncio.to_thread(next, consumer)
        if message is not None:
            taken.append(message)
        if any(m.args[0]["topic"] == "appointment.noshow" for m in taken):
            break
    assert any(m.args[0]["topic"] == "appointment.noshow" for m in taken)
    assert await _follow_ups(client, admin, patient_id) == []

    survivor = Running(fast)
    survivor.worker.start()
    started = asyncio.get_running_loop().time()
    try:

        async def recovered() -> bool:
            return await _follow_ups(client, admin, patient_id) == ["Follow up on a missed appointment"]

        await _wait_for(recovered, seconds=30)
        took = asyncio.get_running_loop().time() - started
        await asyncio.sleep(1.5)  # nothing more happens: the effect is there once
        assert await _follow_ups(client, admin, patient_id) == ["Follow up on a missed appointment"]
        assert took < 15, f"recovery took {took:.1f} s"
    finally:
        survivor.runtime.close()
        survivor.worker.stop()
        survivor.runtime.broker.close()
        doomed.broker.close()


async def _staff_ids(client: AsyncTestClient[Any], admin: dict[str, str]) -> dict[str, str]:
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    return {m["email"].split("@")[0]: m["user_id"] for m in members}


async def _process(db: async_sessionmaker[AsyncSession], jobs: Running) -> None:
    await jobs.settle(db)


async def test_a_critical_result_alerts_the_ordering_clinician_with_a_stat_task(
    client: AsyncTestClient[Any], world: World, jobs: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    ids = await _staff_ids(client, admin)
    patient = (await client.post("/api/v1/patients", json=patient_body("JB-2"), headers=admin)).json()
    result = await client.post(
        f"/api/v1/patients/{patient['id']}/results",
        headers=admin,
        json={
            "code": "2823-3",
            "display": "Potassium",
            "value": "6.9",
            "unit": "mmol/L",
            "reference_range": "3.5-5.1",
            "interpretation": "critical",
            "status": "final",
            "effective_at": (datetime.now(UTC) - timedelta(minutes=30)).isoformat(),
            "ordered_by": ids["doc.a"],
        },
    )
    assert result.status_code == 201, result.text
    await _process(db, jobs)

    inbox = (await client.get("/api/v1/alerts", headers=doc)).json()["items"]
    assert [(a["kind"], a["severity"], a["title"]) for a in inbox] == [
        ("lab.critical", "critical", "Critical result: Potassium 6.9 mmol/L")
    ]
    task = (await client.get(f"/api/v1/tasks/{inbox[0]['task_id']}", headers=doc)).json()
    assert (task["priority"], task["assignee_id"], task["status"]) == ("stat", ids["doc.a"], "requested")
    assert (await client.get("/api/v1/alerts", headers=chw)).json()["items"] == []
    alert_url = f"/api/v1/alerts/{inbox[0]['id']}"
    assert (await client.post(f"{alert_url}/acknowledge", headers=chw)).status_code == 404  # not theirs
    acknowledged = await client.post(f"{alert_url}/acknowledge", headers=doc)
    assert acknowledged.json()["state"] == "acknowledged" and acknowledged.json()["acknowledged_at"]
    assert (await client.post(f"{alert_url}/resolve", headers=doc)).json()["state"] == "resolved"
    assert (await client.get("/api/v1/alerts", headers=doc)).json()["items"] == []
    assert len((await client.get("/api/v1/alerts?state=resolved", headers=doc)).json()["items"]) == 1
    assert (await client.post(f"{alert_url}/acknowledge", headers=doc)).status_code == 409


async def test_a_care_plan_change_alerts_the_rest_of_the_care_team(
    client: AsyncTestClient[Any], world: World, jobs: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    ids = await _staff_ids(client, admin)
    patient = (await client.post("/api/v1/patients", json=patient_body("JB-3"), headers=admin)).json()
    team = await client.post(
        f"/api/v1/patients/{patient['id']}/care-team",
        headers=admin,
        json={"members": [{"user_id": ids["doc.a"], "role": "primary_care"}, {"user_id": ids["chw.a"], "role": "chw"}]},
    )
    assert team.status_code == 201
    plan = (
        await client.post("/api/v1/care-plans", headers=doc, json={"patient_id": patient["id"], "title": "HF"})
    ).json()
    await client.patch(f"/api/v1/care-plans/{plan['id']}", headers=doc, json={"status": "active"})
    await _process(db, jobs)
    # The clinician who changed it is not alerted; the CHW is (creating the plan alerts nobody).
    assert (await client.get("/api/v1/alerts", headers=doc)).json()["items"] == []
    [alert] = (await client.get("/api/v1/alerts", headers=chw)).json()["items"]
    assert (alert["kind"], alert["title"], alert["patient_id"]) == (
        "care_plan.updated",
        "Care plan updated: HF (version 2)",
        patient["id"],
    )


async def _ticks(db: async_sessionmaker[AsyncSession], topic: str = "schedule.overdue_tasks") -> int:
    with network_scope("test: count the ticks"):
        async with db() as session:
            count = await session.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.topic == topic)
            )
    return int(count or 0)


async def test_several_schedulers_write_each_period_once(world: World, db: async_sessionmaker[AsyncSession]) -> None:
    now = datetime(2026, 12, 1, 9, 0, 30, tzinfo=UTC)
    # Two schedulers tick at the same moment, and one again later in the same minute.
    written = await asyncio.gather(scheduler.tick(db, now), scheduler.tick(db, now))
    written_again = await scheduler.tick(db, now + timedelta(seconds=20))
    # One event per rule and active tenant (two tenants): overdue tasks, critical results, deferred
    # notifications and the plugins' EHR sync (every minute), appointment reminders (every five minutes), pruning
    # (every hour).
    assert len(scheduler.RULES) == 6
    assert sum(written) + written_again == 12 and await _ticks(db) == 2
    await scheduler.tick(db, now + timedelta(seconds=60))  # the overdue check's next period, the same hour
    assert await _ticks(db) == 4 and await _ticks(db, "schedule.prune_outbox") == 2


@pytest.mark.postgres_only
async def test_one_scheduler_leads_and_another_takes_over(settings: Settings) -> None:
    assert settings.redis_url
    redis = Redis.from_url(settings.redis_url)
    try:
        first, second = scheduler.Leadership(redis, 300), scheduler.Leadership(redis, 300)
        assert await first.hold() and not await second.hold()
        assert await first.hold()  # renews its own lead
        await asyncio.sleep(0.4)  # the leader stops (no renewal): its lock expires
        assert await second.hold() and not await first.hold()
    finally:
        await redis.delete(scheduler.LEADER_KEY)
        await redis.aclose()


async def test_an_overdue_task_escalates_level_by_level(
    client: AsyncTestClient[Any], world: World, jobs: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    ids = await _staff_ids(client, admin)
    patient = (await client.post("/api/v1/patients", json=patient_body("JB-4"), headers=admin)).json()
    await client.post(
        f"/api/v1/patients/{patient['id']}/care-team",
        headers=admin,
        json={"members": [{"user_id": ids["admin.a"], "role": "care_manager", "is_lead": True}]},
    )
    due = datetime.now(UTC) + timedelta(hours=2)
    task = await client.post(
        "/api/v1/tasks",
        headers=admin,
        json={
            "patient_id": patient["id"],
            "title": "Post-discharge call",
            "owner_id": ids["doc.a"],
            "assignee_id": ids["chw.a"],
            "due_at": due.isoformat(),
        },
    )
    assert task.status_code == 201, task.text

    async def at(minutes_after_due: int) -> None:
        # A controllable clock: the scheduler's tick at that moment (no sleeping for real minutes).
        await scheduler.tick(db, due + timedelta(minutes=minutes_after_due))
        await _process(db, jobs)

    async def overdue(headers: dict[str, str]) -> list[str]:
        items = (await client.get("/api/v1/alerts", headers=headers)).json()["items"]
        return [a["title"] for a in items if a["kind"] == "task.overdue"]

    await at(-5)  # not due yet
    assert await overdue(chw) == []
    await at(1)  # past due: the assignee
    assert await overdue(chw) == ["Overdue (level 1): Post-discharge call"] and await overdue(doc) == []
    await at(2)  # a later tick at the same level changes nothing
    assert len(await overdue(chw)) == 1
    await at(61)  # an hour late: the owner
    assert await overdue(doc) == ["Overdue (level 2): Post-discharge call"]
    await at(241)  # four hours late: the care team's lead
    assert await overdue(admin) == ["Overdue (level 3): Post-discharge call"]
    stored = (await client.get(f"/api/v1/tasks/{task.json()['id']}", headers=admin)).json()
    assert stored["escalation_level"] == 3
    comments = (await client.get(f"/api/v1/tasks/{task.json()['id']}/comments", headers=admin)).json()
    assert [c["body"] for c in comments][-1] == "Escalated automatically to level 3."


async def test_one_tenants_backlog_does_not_hold_back_anothers_critical_result(
    client: AsyncTestClient[Any], world: World, settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    # Tenant B has 300 events waiting; then tenant A receives a critical lab result.
    with tenant_context(world.tenant_b):
        async with db() as session, session.begin():
            for n in range(300):
                outbox.emit(session, "test.backlog", {"n": n})
    admin = await login(client, "admin.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body("JB-9"), headers=admin)).json()
    critical = await client.post(
        f"/api/v1/patients/{patient['id']}/results",
        headers=admin,
        json={
            "code": "2823-3",
            "display": "Potassium",
            "value": "7.1",
            "interpretation": "critical",
            "status": "final",
            "effective_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        },
    )
    assert critical.status_code == 201
    runtime = JobRuntime(settings)  # no worker: look at what the relay hands over
    try:
        assert await relay_once(db, runtime, batch=20) == 20
        # A's events were in the first batch (round robin over tenants), the critical one on its own queue.
        with network_scope("test: read the outbox"):
            async with db() as session:
                published = await session.scalar(
                    select(OutboxEvent.published_at).where(OutboxEvent.topic == "lab_result.critical_received")
                )
        assert published is not None
        if isinstance(runtime.broker, StubBroker):
            waiting = runtime.broker.queues[CRITICAL_QUEUE].qsize()
        else:
            redis = Redis.from_url(settings.redis_url or "")
            waiting = int(await redis.llen(f"{NAMESPACE}:{CRITICAL_QUEUE}"))
            await redis.aclose()
        assert waiting == 1
    finally:
        runtime.broker.close()


async def test_published_events_are_pruned_after_a_week(
    world: World, jobs: Running, db: async_sessionmaker[AsyncSession]
) -> None:
    now = datetime.now(UTC)
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            for topic, published in (("old", now - timedelta(days=8)), ("recent", now - timedelta(days=1))):
                session.add(OutboxEvent(topic=f"test.{topic}", payload={}, published_at=published))
    await scheduler.tick(db, now)
    await _process(db, jobs)
    with network_scope("test: read the outbox"):
        async with db() as session:
            topics = set(await session.scalars(select(OutboxEvent.topic)))
    assert "test.recent" in topics and "test.old" not in topics


async def test_a_job_whose_hand_overs_never_get_an_outcome_ends_in_the_dead_letters(
    client: AsyncTestClient[Any], world: World, settings: Settings, db: async_sessionmaker[AsyncSession]
) -> None:
    """No worker ever answers (every message lost, or its worker dying each time): after the first hand-over and
    one redelivery (job_max_retries=1) the job is a dead letter saying why, and nothing of it is left in the
    ledger. Nothing loops for ever."""
    short = settings.model_copy(
        update={"job_max_retries": 1, "job_delivery_timeout_ms": 1100, "job_time_limit_ms": 1000}
    )
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            outbox.emit(session, "test.poison", {"note": "never answered"})
    runtime = JobRuntime(short)  # no worker consumes its queue
    admin = await login(client, "admin.a@test.example", world.slug_a)

    async def dead() -> list[dict[str, Any]]:
        return list((await client.get("/api/v1/jobs/dead-letters", headers=admin)).json()["items"])

    stop = asyncio.Event()
    relay = asyncio.create_task(relay_forever(db, runtime, 0.05, 200, stop))
    try:
        await _wait_for(dead, seconds=15)
    finally:
        stop.set()
        await relay
        runtime.broker.close()
    [letter] = await dead()
    assert (letter["topic"], letter["handler"], letter["retries"]) == ("test.poison", "flaky-handler", 2)
    assert "no outcome within 1100 ms" in letter["error"]
    assert await _ledger(db) == (0, 0)
