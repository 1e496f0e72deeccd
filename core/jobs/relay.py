"""The outbox relay: takes committed domain events into the job ledger, and hands due deliveries to the broker.

Intake: each unpublished outbox event becomes one delivery per handler (``JobDelivery``), in the transaction that
marks the event published; the event's work is in the ledger from then on. One relay at a time takes events in
(an advisory lock on PostgreSQL; SQLite has one writer), oldest first within a tenant and fair across tenants, so
a patient's earlier event is always in the ledger before a later one.

Hand-over: deliveries that are due (new ones, retries whose backoff has passed, order waits, and those handed over
earlier without an outcome within the delivery timeout) go to the broker. Each is first marked handed over, with
its timeout as its next time, and committed; then the messages are sent, so a crash or a broker outage at any
point leaves each delivery either to be sent again now or after its timeout: a message the broker loses (Redis
killed without persistence, a frozen worker's prefetch) is handed over again within ``job_delivery_timeout_ms``.
A delivery whose hand-overs time out more often than the retries allow goes to the dead letters, like a failure.

A backlog waits in the ledger, not in the broker: the broker's events queue is first come, first served, so once a
tenant's 10,000 messages are in it, another tenant's next event is handled after all of them. The relay keeps that
queue short (``QUEUE_LIMIT_BATCHES`` batches) and hands over the rest batch by batch, each batch fair across
tenants; critical events are handed over whatever the queue's length (they have their own queue).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import utcnow
from core.jobs.handlers import handlers_for
from core.jobs.models import JobDelivery
from core.jobs.runtime import CRITICAL_TOPICS, JobRuntime, count, dead_letter, message_of, queue_of
from core.outbox import OutboxEvent
from tenants.context import network_scope

log = logging.getLogger(__name__)
# The broker's events queue is full at this many batches; while it is, the relay looks again this often (seconds).
QUEUE_LIMIT_BATCHES = 2
FULL_QUEUE_RECHECK = 0.05
# The relay never looks again sooner than this (seconds), however soon the next delivery is due.
SHORTEST_WAIT = 0.02
# pg_try_advisory_xact_lock's key for the intake (any constant; "carehub" in ASCII).
INTAKE_LOCK = 0x63617265687562


@dataclass(frozen=True)
class HandOver:
    """What one hand-over did: deliveries sent, redelivered after a timeout, and when the next one is due."""

    sent: int
    redelivered: int
    next_due: datetime | None


async def relay_once(
    db: async_sessionmaker[AsyncSession], runtime: JobRuntime, batch: int = 200, *, critical_only: bool = False
) -> int:
    """Take one batch of events into the ledger and hand one batch of due deliveries (only critical ones if
    ``critical_only``) to the broker; the number of events taken in (raises if the broker is down)."""
    taken = await take_in(db, batch)
    await hand_over(db, runtime, batch, critical_only=critical_only)
    return taken


async def take_in(db: async_sessionmaker[AsyncSession], batch: int = 200) -> int:
    """Make the deliveries of one batch of unpublished events and mark the events published; how many."""
    with network_scope("outbox relay: events of every tenant go into the job ledger"):
        async with db() as session, session.begin():
            postgres = session.get_bind().dialect.name == "postgresql"
            if postgres and not await session.scalar(select(func.pg_try_advisory_xact_lock(INTAKE_LOCK))):
                return 0  # another relay is taking events in
            # Fair across tenants: the first unpublished event of every tenant, then the second of every
            # tenant, ... (oldest first within a tenant), so one tenant's backlog cannot hold the others back.
            rank = (
                func.row_number()
                .over(partition_by=OutboxEvent.tenant_id, order_by=(OutboxEvent.created_at, OutboxEvent.id))
                .label("rank")
            )
            waiting = select(OutboxEvent.id, OutboxEvent.created_at, rank).where(OutboxEvent.published_at.is_(None))
            ranked = waiting.subquery()
            picked = select(ranked.c.id).order_by(ranked.c.rank, ranked.c.created_at).limit(batch)
            events = (
                await session.execute(
                    select(
                        OutboxEvent.id,
                        OutboxEvent.tenant_id,
                        OutboxEvent.topic,
                        OutboxEvent.aggregate_id,
                        OutboxEvent.created_at,
                    ).where(OutboxEvent.id.in_(picked))
                )
            ).all()
            if not events:
                return 0
            now = utcnow()
            deliveries = [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": event.tenant_id,
                    "event_id": event.id,
                    "handler": name,
                    "topic": event.topic,
                    "aggregate_id": event.aggregate_id,
                    "event_created_at": event.created_at,
                    "created_at": now,
                    "next_attempt_at": now,
                    "sent_at": None,
                    "sends": 0,
                    "attempts": 0,
                    "waits": 0,
                    "last_error": None,
                }
                for event in events
                for name in handlers_for(event.topic)
            ]
            if deliveries:
                await session.execute(insert(JobDelivery), deliveries)
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_([event.id for event in events]))
                .values(published_at=now, attempts=OutboxEvent.attempts + 1)
                .execution_options(synchronize_session=False)
            )
    return len(events)


async def hand_over(
    db: async_sessionmaker[AsyncSession], runtime: JobRuntime, batch: int = 200, *, critical_only: bool = False
) -> HandOver:
    """Hand one batch of due deliveries to the broker (critical ones first); raises if the broker is down, after
    putting back what it could not send."""
    settings = runtime.settings
    timeout = timedelta(milliseconds=settings.job_delivery_timeout_ms)
    now = utcnow()
    with network_scope("outbox relay: due deliveries of every tenant go to the job broker"):
        async with db() as session, session.begin():
            rows = (await session.execute(_due(session, now, batch, critical_only))).all()
            expired = [row for row in rows if row.sent_at is not None]
            messages: list[dict[str, Any]] = []
            send_ids: list[uuid.UUID] = []
            given_up: list[uuid.UUID] = []
            for row in sorted(rows, key=lambda r: r.topic not in CRITICAL_TOPICS):
                message = message_of(
                    row.event_id, row.tenant_id, row.topic, row.handler, row.payload, row.aggregate_id,
                    row.event_created_at,
                )  # fmt: skip
                if row.sent_at is not None and row.attempts + 1 > settings.job_max_retries:
                    given_up.append(row.id)
                    error = _no_outcome(row.sent_at, settings.job_delivery_timeout_ms)
                    session.add(dead_letter(message, error, row.attempts + 1))
                    log.warning("job %s/%s failed for good: %s", row.topic, row.handler, error)
                    continue
                messages.append(message)
                send_ids.append(row.id)
            if expired:
                await session.execute(
                    update(JobDelivery)
                    .where(JobDelivery.id.in_([row.id for row in expired]))
                    .values(
                        attempts=JobDelivery.attempts + 1,
                        last_error=f"no outcome within {settings.job_delivery_timeout_ms} ms of its hand-over "
                        "(the broker lost the message, or its worker stopped)",
                    )
                    .execution_options(synchronize_session=False)
                )
            if given_up:
                await session.execute(
                    delete(JobDelivery).where(JobDelivery.id.in_(given_up)).execution_options(synchronize_session=False)
                )
            if send_ids:
                await session.execute(
                    update(JobDelivery)
                    .where(JobDelivery.id.in_(send_ids))
                    .values(sent_at=now, sends=JobDelivery.sends + 1, next_attempt_at=now + timeout)
                    .execution_options(synchronize_session=False)
                )
            next_due = await session.scalar(select(func.min(JobDelivery.next_attempt_at)))
    for row in expired:
        count(runtime.broker, "failures" if row.id in given_up else "redeliveries", queue_of(row.topic))
    if messages:
        sent, refused = await asyncio.to_thread(runtime.send_all, messages)
        if refused is not None:
            await _put_back(db, send_ids[sent:])
            raise refused
    return HandOver(sent=len(messages), redelivered=len(expired), next_due=next_due)


def _due(session: AsyncSession, now: datetime, batch: int, critical_only: bool) -> Any:
    """The batch of due deliveries with their events' payloads: fair across tenants (the first due delivery of
    every tenant, then the second, ...), rows no other relay holds."""
    rank = (
        func.row_number()
        .over(
            partition_by=JobDelivery.tenant_id,
            order_by=(JobDelivery.next_attempt_at, JobDelivery.event_created_at, JobDelivery.event_id),
        )
        .label("rank")
    )
    due = select(JobDelivery.id, JobDelivery.next_attempt_at, rank).where(JobDelivery.next_attempt_at <= now)
    if critical_only:
        due = due.where(JobDelivery.topic.in_(CRITICAL_TOPICS))
    ranked = due.subquery()
    picked = select(ranked.c.id).order_by(ranked.c.rank, ranked.c.next_attempt_at).limit(batch)
    query = (
        select(
            JobDelivery.id,
            JobDelivery.tenant_id,
            JobDelivery.event_id,
            JobDelivery.handler,
            JobDelivery.topic,
            JobDelivery.aggregate_id,
            JobDelivery.event_created_at,
            JobDelivery.sent_at,
            JobDelivery.attempts,
            OutboxEvent.payload,
        )
        .join(OutboxEvent, and_(OutboxEvent.tenant_id == JobDelivery.tenant_id, OutboxEvent.id == JobDelivery.event_id))
        .where(JobDelivery.id.in_(picked), JobDelivery.next_attempt_at <= now)
        .order_by(JobDelivery.event_created_at, JobDelivery.event_id)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Several relays may run: each takes rows no other one holds.
        query = query.with_for_update(of=JobDelivery, skip_locked=True)
    return query


def _no_outcome(sent_at: datetime, timeout_ms: int) -> str:
    return (
        f"no outcome within {timeout_ms} ms of its hand-over at {sent_at.isoformat()}, more often than the retries "
        "allow (the broker lost the message, or its worker stopped, each time)"
    )


async def _put_back(db: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]) -> None:
    """Deliveries marked handed over whose messages could not be sent: due again now (best effort; if this fails
    too, they are handed over after their timeout)."""
    if not ids:
        return
    try:
        with network_scope("outbox relay: deliveries the broker did not take are due again"):
            async with db() as session, session.begin():
                await session.execute(
                    update(JobDelivery)
                    .where(JobDelivery.id.in_(ids))
                    .values(sent_at=None, next_attempt_at=utcnow(), sends=JobDelivery.sends - 1)
                    .execution_options(synchronize_session=False)
                )
    except Exception:
        log.warning("outbox relay: %d deliveries wait for their timeout", len(ids), exc_info=True)


async def recover_in_process(db: async_sessionmaker[AsyncSession]) -> int:
    """With the in-process broker, what it held died with the last process: when a process's relay starts, before
    its broker has taken anything, deliveries handed over earlier are due now (instead of after their timeout).
    How many."""
    with network_scope("outbox relay: the in-process broker's messages died with its process"):
        async with db() as session, session.begin():
            result = await session.execute(
                update(JobDelivery)
                .where(JobDelivery.sent_at.is_not(None))
                .values(sent_at=None, next_attempt_at=utcnow())
                .execution_options(synchronize_session=False)
            )
    return int(getattr(result, "rowcount", 0) or 0)


async def relay_forever(
    db: async_sessionmaker[AsyncSession], runtime: JobRuntime, interval: float, batch: int, stop: asyncio.Event
) -> None:
    """Relay until ``stop`` is set; while the broker or the database is down, keep trying, backing off. While the
    broker's events queue is full, only critical deliveries go out, and the relay looks again shortly (the workers
    are busy, and must not run dry). Otherwise it looks again when the next delivery is due, at most ``interval``
    later (new events are noticed within ``interval``)."""
    delay = interval
    recovered = False
    while not stop.is_set():
        try:
            if runtime.volatile and not recovered and not runtime.handed_over:
                if moved := await recover_in_process(db):
                    log.info("outbox relay: %d deliveries of the last run are due again", moved)
                recovered = True
            full = await asyncio.to_thread(runtime.queue_depth) >= QUEUE_LIMIT_BATCHES * batch
            taken = await take_in(db, batch)
            handed = await hand_over(db, runtime, batch, critical_only=full)
            if taken >= batch or handed.sent >= batch:
                delay = 0
            elif full:
                delay = min(interval, FULL_QUEUE_RECHECK)
            elif handed.next_due is None:
                delay = interval
            else:
                delay = min(max((handed.next_due - utcnow()).total_seconds(), SHORTEST_WAIT), interval)
        except Exception as exc:  # the broker or the database is down: wait and retry
            log.warning("outbox relay: %s; retrying in %.1f s", exc, delay)
            delay = min(max(delay * 2, interval), 30.0)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
