"""The chaos suite's load and its ledger: no-shows sent to the real API, follow-up tasks counted in the database.

Each fault gets its own patients (about 100, three booked appointments each, in the past) and then marks every
appointment a no-show, so that one patient's three events wait for one another (the handler applies a patient's
events in order). What counts is in the database, read as the table owner: the follow-up tasks per appointment
(linked through the audit event the rule writes with each task), so a duplicate, a missing one or a stray shows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from tests.chaos.harness import Deployment, asyncpg_dsn
from tests.factories import patient_body

PATIENTS = 100
NO_SHOWS_PER_PATIENT = 3
CONCURRENCY = 16
DRAIN_LIMIT_SECONDS = 120.0
# After the last follow-up appears, how long nothing more may appear (a late redelivery would make a duplicate).
SETTLE_SECONDS = 3.0

FOLLOW_UPS = """
SELECT e.detail->>'appointment_id' AS appointment_id, count(*) AS tasks,
       max(extract(epoch FROM t.created_at)) AS last_at
FROM tasks t
JOIN audit_events e ON e.action = 'task.create' AND e.resource_type = 'Task' AND e.resource_id = t.id::text
WHERE t.template_code = 'noshow-follow-up' AND t.patient_id = ANY($1::uuid[])
GROUP BY 1
"""
ALL_FOLLOW_UPS = "SELECT count(*) FROM tasks WHERE template_code = 'noshow-follow-up' AND patient_id = ANY($1::uuid[])"
# Where each no-show of the missing follow-ups stands: its outbox event and the handler's receipt.
EVIDENCE = """
SELECT o.payload->>'appointment_id' AS appointment_id, o.id AS event_id, o.published_at, o.attempts,
       (SELECT count(*) FROM job_receipts r
        WHERE r.event_id = o.id AND r.handler = 'noshow-follow-up-task') AS receipts,
       (SELECT count(*) FROM job_dead_letters d WHERE d.event_id = o.id) AS dead_letters
FROM outbox_events o
WHERE o.topic = 'appointment.noshow' AND o.payload->>'appointment_id' = ANY($1::text[])
ORDER BY o.created_at
"""
PUBLISHED = """
SELECT count(*) FILTER (WHERE published_at IS NOT NULL) AS published, count(*) AS written
FROM outbox_events WHERE topic = 'appointment.noshow' AND payload->>'appointment_id' = ANY($1::text[])
"""


@dataclass
class Workload:
    """This fault's patients and their appointments, in the order they are marked (a patient's side by side)."""

    name: str
    patients: list[str]
    appointments: list[str]


@dataclass
class Answers:
    """What the API answered to the no-shows: statuses, the 5xx seen, and how many were sent again after a 503."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    retried: int = 0
    done: int = 0
    # Set once ``signal_at`` no-shows are recorded (a fault that starts part way through waits for it).
    signal_at: int | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Count:
    no_shows: int
    follow_ups: int
    duplicates: int
    missing: list[str]
    strays: int
    unlinked: int
    last_at: float | None

    @property
    def complete(self) -> bool:
        return self.follow_ups == self.no_shows and not self.missing and not self.duplicates and not self.strays


def client(deployment: Deployment) -> httpx.AsyncClient:
    assert deployment.facility is not None
    return httpx.AsyncClient(
        base_url=deployment.base_url,
        headers=deployment.facility.headers,
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
    )


async def _bounded(limit: int, jobs: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Any) -> Any:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(job) for job in jobs)))


async def prepare(http: httpx.AsyncClient, deployment: Deployment, name: str) -> Workload:
    """100 patients with three booked appointments each, all of them already past (they can be no-shows)."""
    assert deployment.facility is not None
    participant = deployment.facility.admin_user_id
    tag = f"{name[:12]}-{uuid.uuid4().hex[:6]}"

    async def patient(n: int) -> str:
        answer = await http.post("/api/v1/patients", json=patient_body(f"CH-{tag}-{n}", given_name=f"Chaos{n}"))
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    patients = await _bounded(CONCURRENCY, [patient(n) for n in range(PATIENTS)])
    now = datetime.now(UTC)

    async def appointment(patient_id: str, k: int) -> str:
        start = now - timedelta(minutes=40 + 25 * k)
        answer = await http.post(
            "/api/v1/appointments",
            json={
                "patient_id": patient_id,
                "participant_id": participant,
                "kind": "phone",
                "start_at": start.isoformat(),
                "end_at": (start + timedelta(minutes=20)).isoformat(),
                "reason": f"Chaos check {k + 1}",
            },
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    # The earliest appointment of each patient first: a patient's no-shows are sent in order, side by side.
    jobs = [appointment(p, k) for p in patients for k in reversed(range(NO_SHOWS_PER_PATIENT))]
    return Workload(name, patients, await _bounded(CONCURRENCY, jobs))


async def mark_no_shows(
    http: httpx.AsyncClient, appointments: list[str], answers: Answers, *, retry_for: float = 60.0
) -> Answers:
    """Mark every appointment a no-show, some at once. A 503 (the database is restarting: ``Retry-After``) is
    sent again until it succeeds; a 409 on such a retry means the first attempt had committed. Any 5xx but 503,
    and anything else unexpected, is kept in ``answers.errors``."""

    async def one(appointment_id: str) -> None:
        deadline = time.monotonic() + retry_for
        again = False
        while True:
            try:
                answer = await http.post(f"/api/v1/appointments/{appointment_id}/status", json={"status": "noshow"})
            except httpx.TransportError as exc:
                answers.errors.append(f"{appointment_id}: no answer: {type(exc).__name__}: {exc}")
                return
            answers.statuses[answer.status_code] += 1
            if answer.status_code == 503 and time.monotonic() < deadline:
                answers.retried += 1
                again = True
                await asyncio.sleep(min(float(answer.headers.get("retry-after") or 1), 1.0))
                continue
            if answer.status_code == 200 or (again and answer.status_code == 409):
                answers.done += 1
                if answers.signal_at is not None and answers.done >= answers.signal_at:
                    answers.reached.set()
                return
            answers.errors.append(f"{appointment_id}: {answer.status_code} {answer.text[:300]}")
            return

    await _bounded(CONCURRENCY, [one(a) for a in appointments])
    return answers


async def count(deployment: Deployment, workload: Workload) -> Count:
    conn = await asyncpg.connect(asyncpg_dsn(deployment.owner_url))
    try:
        rows = await conn.fetch(FOLLOW_UPS, workload.patients)
        unlinked_total = int(await conn.fetchval(ALL_FOLLOW_UPS, workload.patients))
    finally:
        await conn.close()
    per = {str(r["appointment_id"]): int(r["tasks"]) for r in rows}
    expected = set(workload.appointments)
    linked = sum(per.values())
    last = max((float(r["last_at"]) for r in rows), default=None)
    return Count(
        no_shows=len(workload.appointments),
        follow_ups=unlinked_total,
        duplicates=sum(n - 1 for a, n in per.items() if a in expected and n > 1),
        missing=sorted(expected - per.keys()),
        strays=sum(n for a, n in per.items() if a not in expected),
        unlinked=unlinked_total - linked,
        last_at=last,
    )


async def published(deployment: Deployment, workload: Workload) -> tuple[int, int]:
    """How many of the workload's no-show events the relay has handed over, of how many written."""
    conn = await asyncpg.connect(asyncpg_dsn(deployment.owner_url))
    try:
        row = await conn.fetchrow(PUBLISHED, workload.appointments)
    finally:
        await conn.close()
    assert row is not None
    return int(row["published"]), int(row["written"])


async def evidence(deployment: Deployment, missing: list[str], limit: int = 15) -> str:
    """The outbox events, receipts and dead letters of the no-shows whose follow-up is missing."""
    if not missing:
        return ""
    conn = await asyncpg.connect(asyncpg_dsn(deployment.owner_url))
    try:
        rows = await conn.fetch(EVIDENCE, missing[:limit])
    finally:
        await conn.close()
    lines = [f"{len(missing)} no-shows without a follow-up; the first {min(limit, len(missing))}:"]
    lines += [
        f"  appointment {r['appointment_id']}: event {r['event_id']} published_at={r['published_at']} "
        f"attempts={r['attempts']} receipts={r['receipts']} dead_letters={r['dead_letters']}"
        for r in rows
    ]
    return "\n".join(lines)


async def drain(deployment: Deployment, workload: Workload, recovered_at: float) -> tuple[Count, float | None]:
    """Wait (at most :data:`DRAIN_LIMIT_SECONDS` from the recovery) until every no-show has its follow-up and
    nothing more appears for :data:`SETTLE_SECONDS`; the count, and the seconds from the recovery to the last
    follow-up (None when it never came)."""
    deadline = recovered_at + DRAIN_LIMIT_SECONDS
    settled_since: float | None = None
    seen: Count | None = None
    while True:
        now = time.time()
        current = await count(deployment, workload)
        if seen is None or (current.follow_ups, current.last_at) != (seen.follow_ups, seen.last_at):
            settled_since = now
        seen = current
        if current.follow_ups >= current.no_shows and settled_since is not None:
            if now - settled_since >= SETTLE_SECONDS:
                break
        if now > deadline:
            break
        await asyncio.sleep(0.25)
    took = None if seen.last_at is None else max(0.0, seen.last_at - recovered_at)
    return seen, took


def summary(fault: str, counted: Count, took: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "fault": fault,
        "no_shows": counted.no_shows,
        "follow_ups": counted.follow_ups,
        "duplicates": counted.duplicates,
        "missing": len(counted.missing),
        "drain_seconds": None if took is None else round(took, 2),
        **extra,
    }
