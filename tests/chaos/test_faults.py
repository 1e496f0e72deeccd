"""Chaos: the real API, workers and schedulers, with their Redis killed, their connections dropped, a worker and
the scheduler leader killed, and PostgreSQL gone for a while. Whatever breaks, each of 300 no-shows has exactly one
follow-up task in the end, and the suite says how long the backlog took to drain after the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from core.jobs.handlers import handlers_for
from tests.chaos import workload
from tests.chaos.harness import Deployment, asyncpg_dsn, wait_until
from tests.chaos.summary import SUMMARY_PROPERTY

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.xdist_group("chaos")]

JOBS = "carehub:jobs"


def _report(
    record_property: Callable[[str, object], None],
    fault: str,
    counted: workload.Count,
    took: float | None,
    **extra: Any,
) -> None:
    record_property(SUMMARY_PROPERTY, json.dumps(workload.summary(fault, counted, took, **extra)))


async def _assert_exactly_one_each(
    deployment: Deployment, load: workload.Workload, counted: workload.Count, took: float | None, note: str = ""
) -> None:
    evidence = await workload.evidence(deployment, counted.missing)
    detail = (
        f"{counted.no_shows} no-shows: {counted.follow_ups} follow-up tasks, {counted.duplicates} duplicates, "
        f"{len(counted.missing)} missing, {counted.strays} for other appointments, {counted.unlinked} unlinked; "
        f"drain {took if took is None else round(took, 1)} s. {note}\n{evidence}"
    )
    assert counted.complete and counted.follow_ups == workload.PATIENTS * workload.NO_SHOWS_PER_PATIENT, detail
    assert counted.unlinked == 0, detail


def _held_by_redis(deployment: Deployment) -> dict[str, int]:
    """The messages the broker holds: queued, delayed (order waits, retries) and taken by a worker, not acked."""
    with contextlib.closing(deployment.redis.client()) as redis:
        unacked = sum(int(redis.scard(key) or 0) for key in redis.scan_iter(f"{JOBS}:__acks__.*", count=1000))
        return {
            "queued": int(redis.llen(f"{JOBS}:events")),
            "delayed": int(redis.llen(f"{JOBS}:events.DQ")),
            "unacked": unacked,
            "messages": int(redis.hlen(f"{JOBS}:events.msgs")) + int(redis.hlen(f"{JOBS}:events.DQ.msgs")),
        }


def _order_waits(deployment: Deployment) -> int:
    with contextlib.closing(deployment.redis.client()) as redis:
        value = redis.hget(f"{JOBS}:__counters__", "order_waits:events")
    return int(value or 0)


# 1. Redis killed (no persistence) while it holds the messages --------------------------------------------------


async def test_redis_killed_while_holding_messages(
    deployment: Deployment, record_property: Callable[[str, object], None]
) -> None:
    """The workers freeze with the no-shows handed over and mostly unhandled, Redis holding messages (queued,
    waiting for their patient's earlier ones, taken by a worker, or waiting for a retry after a moment without
    the database); Redis is killed with SIGKILL (nothing on disk) and comes back empty. Meanwhile the API stays
    ready, naming the broker as degraded. Every no-show still gets its follow-up, once: the relay hands over again
    what went without an outcome."""
    async with workload.client(deployment) as http:
        load = await workload.prepare(http, deployment, "redis-kill")
        answers = await workload.mark_no_shows(http, load.appointments, workload.Answers())
        assert not answers.errors, answers.errors[:5]
        # As soon as the relay has handed every no-show over, freeze the workers (relay and handlers together).
        deadline = time.monotonic() + 30
        while (await workload.published(deployment, load))[0] < len(load.appointments):
            assert time.monotonic() < deadline, "the relay did not hand the no-shows to Redis within 30 s"
            await asyncio.sleep(0.05)
        # A moment without the database first: the jobs running then fail and wait for their retry.
        await asyncio.to_thread(deployment.proxy.cut)
        await asyncio.sleep(0.6)
        await asyncio.to_thread(deployment.proxy.restore)
        await asyncio.sleep(0.3)
        for worker in deployment.workers:
            worker.freeze()
        held = _held_by_redis(deployment)
        before = await workload.count(deployment, load)
        unhandled = before.no_shows - before.follow_ups
        assert unhandled > 0 and held["messages"] > 0, (
            f"harness: the workers handled every no-show before they were frozen (held {held}); nothing to lose"
        )

        deployment.redis.kill9()
        outage: dict[str, Any] = {}
        try:
            ready = await http.get("/readyz")
            metrics = await http.get("/metrics")
            outage = {
                "readyz": ready.status_code,
                "degraded": ready.json().get("degraded"),
                "metrics": metrics.status_code,
            }
            assert ready.status_code == 200 and "broker" in ready.json()["degraded"], ready.text
            assert metrics.status_code == 200, metrics.text
            assert "carehub_broker_up 0" in metrics.text.splitlines(), metrics.text
            # The API goes on serving: its requests need the database, not the broker.
            marked = await http.get("/api/v1/patients?limit=1")
            assert marked.status_code == 200, marked.text
        finally:
            await asyncio.to_thread(deployment.redis.start)  # empty: no snapshot, no append-only file
            for worker in deployment.workers:
                worker.thaw()
        recovered_at = time.time()
        counted, took = await workload.drain(deployment, load, recovered_at)
    fault = "1 redis kill -9 (no persistence)"
    _report(record_property, fault, counted, took, unhandled_at_kill=unhandled, held=held, **outage)
    await _assert_exactly_one_each(deployment, load, counted, took, f"Redis held {held}; {unhandled} unhandled.")


# 2. Connections to Redis dropped while events wait for their patient's earlier ones ------------------------------


async def test_redis_connections_dropped_during_order_waits(
    deployment: Deployment, record_property: Callable[[str, object], None]
) -> None:
    """While a patient's later no-shows wait for the earlier ones, Redis drops every client connection (``CLIENT
    KILL TYPE normal``), again and again until the follow-ups are made: the workers reconnect (the broker's, the
    relay's and the API's clients alike) and every no-show gets its follow-up once."""
    waits_before = _order_waits(deployment)
    killed: list[int] = []
    at_kills: list[int] = []
    state: dict[str, float] = {}

    async def drop_connections(load: workload.Workload) -> None:
        # Once the handlers are under way (later no-shows waiting for their patient's earlier ones), every 0.3 s
        # while follow-ups are still missing: at least three drops, at most ten.
        deadline = time.monotonic() + 60
        while (made := (await workload.count(deployment, load)).follow_ups) < 10:
            assert time.monotonic() < deadline, "harness: no follow-ups within 60 s; nothing to interrupt"
            await asyncio.sleep(0.05)
        while len(killed) < 10 and (len(killed) < 3 or made < len(load.appointments)):
            with contextlib.closing(deployment.redis.client()) as redis:
                killed.append(int(redis.client_kill_filter(_type="normal")))
            at_kills.append(made)
            state["recovered_at"] = time.time()
            await asyncio.sleep(0.3)
            made = (await workload.count(deployment, load)).follow_ups

    async with workload.client(deployment) as http:
        load = await workload.prepare(http, deployment, "conn-drop")
        answers, _ = await asyncio.gather(
            workload.mark_no_shows(http, load.appointments, workload.Answers()), drop_connections(load)
        )
        assert not answers.errors, answers.errors[:5]
        counted, took = await workload.drain(deployment, load, state["recovered_at"])
    waits = _order_waits(deployment) - waits_before
    _report(
        record_property,
        "2 redis connections dropped",
        counted,
        took,
        clients_killed=killed,
        follow_ups_at_kills=at_kills,
        order_waits=waits,
    )
    assert sum(killed) > 0, "harness: CLIENT KILL found no connection to drop"
    assert at_kills[0] < counted.no_shows, f"harness: every follow-up was made before the first drop ({at_kills})"
    await _assert_exactly_one_each(deployment, load, counted, took, f"Dropped {killed} connections; {waits} waits.")


# 3. A worker killed while it makes follow-ups ----------------------------------------------------------------------


async def test_worker_killed_mid_job(deployment: Deployment, record_property: Callable[[str, object], None]) -> None:
    """One worker is killed with SIGKILL while follow-ups are being made (its taken messages unacknowledged, its
    relay's transaction cut); a replacement starts. The other workers take over its messages after the heartbeat
    timeout; every no-show gets its follow-up once."""
    state: dict[str, Any] = {}

    async def kill_mid_job(load: workload.Workload) -> None:
        deadline = time.monotonic() + 60
        while (await workload.count(deployment, load)).follow_ups < 40:
            assert time.monotonic() < deadline, "harness: no follow-ups within 60 s; nothing to interrupt"
            await asyncio.sleep(0.05)
        state["held"] = _held_by_redis(deployment)
        state["follow_ups_at_kill"] = (await workload.count(deployment, load)).follow_ups
        deployment.workers[0].kill9()
        state["replacement"] = await asyncio.to_thread(deployment.replace_worker, 0)
        state["recovered_at"] = time.time()

    async with workload.client(deployment) as http:
        load = await workload.prepare(http, deployment, "worker-kill")
        answers, _ = await asyncio.gather(
            workload.mark_no_shows(http, load.appointments, workload.Answers()), kill_mid_job(load)
        )
        assert not answers.errors, answers.errors[:5]
        counted, took = await workload.drain(deployment, load, state["recovered_at"])
    at_kill = state["follow_ups_at_kill"]
    _report(record_property, "3 worker kill -9 mid-job", counted, took, follow_ups_at_kill=at_kill, held=state["held"])
    assert at_kill < counted.no_shows, f"harness: every follow-up was made before the kill ({at_kill})"
    await _assert_exactly_one_each(deployment, load, counted, took, f"{at_kill} follow-ups were made at the kill.")


# 4. The scheduler leader killed --------------------------------------------------------------------------------

PERIODIC = ("schedule.overdue_tasks", "schedule.critical_results", "schedule.deferred_notifications")
TICKS = """
SELECT o.topic, (o.payload->>'period')::bigint AS period, o.id,
       (SELECT count(*) FROM job_receipts r WHERE r.event_id = o.id) AS receipts,
       (SELECT count(DISTINCT r.handler) FROM job_receipts r WHERE r.event_id = o.id) AS handlers
FROM outbox_events o
WHERE o.topic LIKE 'schedule.%' AND o.tenant_id = $1::uuid AND (o.payload->>'at')::timestamptz >= to_timestamp($2)
ORDER BY o.topic, period
"""


async def _ticks(deployment: Deployment, since: float) -> list[asyncpg.Record]:
    assert deployment.facility is not None
    conn = await asyncpg.connect(asyncpg_dsn(deployment.owner_url))
    try:
        return list(await conn.fetch(TICKS, deployment.facility.tenant_id, since))
    finally:
        await conn.close()


async def test_scheduler_leader_killed(deployment: Deployment, record_property: Callable[[str, object], None]) -> None:
    """The scheduler holding the leader key is killed with SIGKILL shortly before a minute begins; the other one
    takes the key over and writes the next period's events. Each rule's events cover every period once (no period
    skipped, none twice), and each tick event gets one receipt per handler. The 300 no-shows go on meanwhile."""
    deployment.start_schedulers()  # scheduler-1 leads (it took the key before scheduler-2 started)
    leader, follower = deployment.schedulers
    first_key = deployment.leader_value()
    window_start = time.time() // 60 * 60  # the minute the leader is now writing
    async with workload.client(deployment) as http:
        load = await workload.prepare(http, deployment, "leader-kill")
        # Kill 35 to 52 s into a minute: the follower's lead (after the key's 3 s expiry) begins before the next.
        into_minute = time.time() % 60
        if not 35 <= into_minute <= 52:
            await asyncio.sleep((35 - into_minute) % 60)
        killed_at = time.time()
        leader.kill9()

        async def takeover() -> float:
            await asyncio.to_thread(
                wait_until, lambda: deployment.leader_value() not in (None, first_key), 15, "the follower taking over"
            )
            return time.time() - killed_at

        answers, took_over = await asyncio.gather(
            workload.mark_no_shows(http, load.appointments, workload.Answers()), takeover()
        )
        recovered_at = killed_at + took_over
        assert not answers.errors, answers.errors[:5]
        counted, took = await workload.drain(deployment, load, recovered_at)
        # The period after the kill is written by the follower; its handlers' receipts follow.
        next_period = int(killed_at // 60) + 1
        deadline = next_period * 60 + 30
        while True:
            ticks = await _ticks(deployment, window_start)
            newest = {r["topic"]: r for r in ticks if r["period"] == next_period}
            if all(t in newest and newest[t]["receipts"] >= len(handlers_for(t)) for t in PERIODIC):
                break
            if time.time() > deadline:
                break
            await asyncio.sleep(0.5)
    assert follower.alive(), "the follower scheduler died"
    periods = {t: sorted(r["period"] for r in ticks if r["topic"] == t) for t in PERIODIC}
    receipts = {(r["topic"], r["period"]): (int(r["receipts"]), int(r["handlers"])) for r in ticks}
    _report(
        record_property,
        "4 scheduler leader kill -9",
        counted,
        took,
        takeover_seconds=round(took_over, 2),
        periods={t: [p - periods[t][0] for p in ps] if ps else [] for t, ps in periods.items()},
    )
    for topic, seen in periods.items():
        first = int(window_start // 60)
        expected = list(range(first, next_period + 1))
        assert seen == expected, f"{topic}: periods {seen}, expected each of {expected} once"
    wrong = {
        key: got
        for key, got in receipts.items()
        if got != (len(handlers_for(key[0])), len(handlers_for(key[0]))) and key[1] <= next_period
    }
    assert not wrong, f"tick events without exactly one receipt per handler ((receipts, handlers) by tick): {wrong}"
    await _assert_exactly_one_each(deployment, load, counted, took, f"The follower led after {took_over:.1f} s.")


# 5. PostgreSQL stopped and started under load ------------------------------------------------------------------


async def test_postgresql_stopped_and_started_under_load(
    deployment: Deployment, record_property: Callable[[str, object], None]
) -> None:
    """While the API takes the no-shows and the workers handle them, PostgreSQL goes away for 5 s (every
    connection closed, new ones refused) and comes back. No request answers 500: those that reach the database
    meanwhile answer 503 with Retry-After and are sent again. Every no-show gets its follow-up once."""
    probes: Counter[str] = Counter()
    server_errors: list[str] = []
    state: dict[str, float] = {}
    answers = workload.Answers(signal_at=60)

    async def probe(http: httpx.AsyncClient, path: str) -> None:
        answer = await http.get(path)
        probes[f"{path.split('?')[0]} {answer.status_code}"] += 1
        if answer.status_code >= 500 and answer.status_code != 503:
            server_errors.append(f"GET {path}: {answer.status_code} {answer.text[:300]}")

    async def outage(http: httpx.AsyncClient) -> None:
        await answers.reached.wait()
        await asyncio.to_thread(deployment.proxy.cut)
        state["cut_at"] = time.time()
        while time.time() - state["cut_at"] < 5.0:
            for path in ("/readyz", "/metrics", "/api/v1/patients?limit=1"):
                await probe(http, path)
            await asyncio.sleep(0.2)
        await asyncio.to_thread(deployment.proxy.restore)
        state["recovered_at"] = time.time()

    async with workload.client(deployment) as http:
        load = await workload.prepare(http, deployment, "pg-restart")
        await asyncio.gather(workload.mark_no_shows(http, load.appointments, answers, retry_for=90.0), outage(http))
        for path in ("/readyz", "/api/v1/patients?limit=1"):
            await probe(http, path)
        counted, took = await workload.drain(deployment, load, state["recovered_at"])
    statuses = dict(answers.statuses)
    _report(
        record_property,
        "5 postgresql stopped and started",
        counted,
        took,
        statuses=statuses,
        retried=answers.retried,
        probes=dict(probes),
    )
    errors = server_errors + [e for e in answers.errors if " 5" in e or "no answer" in e]
    assert not errors, f"answers other than 503 during the outage: {errors[:10]}"
    assert not answers.errors, answers.errors[:10]
    assert answers.statuses[500] == 0, statuses
    assert probes["/readyz 503"] > 0, f"harness: the outage was never seen by /readyz ({dict(probes)})"
    await _assert_exactly_one_each(
        deployment, load, counted, took, f"No-show answers {statuses}, {answers.retried} sent again; probes {probes}."
    )
