"""The outbox relay: moves committed domain events to the job broker, oldest first.

An event is marked published only in the transaction that handed all its messages to the broker; when the broker
is unreachable nothing is marked and the events wait in the outbox (requests are never held up by it). A message
handed over twice (a crash between handing over and committing) is harmless: handlers are idempotent.

A backlog waits in the outbox, not in the broker: the broker's events queue is first come, first served, so once a
tenant's 10,000 events are in it, another tenant's next event is handled after all of them. The relay keeps that
queue short (``QUEUE_LIMIT_BATCHES`` batches) and hands over the rest batch by batch, each batch fair across
tenants; critical events are handed over whatever the queue's length (they have their own queue).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import utcnow
from core.jobs.handlers import handlers_for
from core.jobs.models import DeadLetter
from core.jobs.runtime import CRITICAL_TOPICS, JobRuntime, message_for
from core.outbox import OutboxEvent
from tenants.context import network_scope

log = logging.getLogger(__name__)
# The broker's events queue is full at this many batches; while it is, the relay looks again this often (seconds).
QUEUE_LIMIT_BATCHES = 2
FULL_QUEUE_RECHECK = 0.05


async def relay_once(
    db: async_sessionmaker[AsyncSession], runtime: JobRuntime, batch: int = 200, *, critical_only: bool = False
) -> int:
    """Hand one batch of unpublished events (only critical ones if ``critical_only``) to the broker; the number
    handed over (raises if the broker is down)."""
    with network_scope("outbox relay: events of every tenant go to the job broker"):
        async with db() as session, session.begin():
            # Fair across tenants: the first unpublished event of every tenant, then the second of every
            # tenant, ... (oldest first within a tenant), so one tenant's backlog cannot hold the others back.
            rank = (
                func.row_number()
                .over(partition_by=OutboxEvent.tenant_id, order_by=(OutboxEvent.created_at, OutboxEvent.id))
                .label("rank")
            )
            waiting = select(OutboxEvent.id, OutboxEvent.created_at, rank).where(OutboxEvent.published_at.is_(None))
            if critical_only:
                waiting = waiting.where(OutboxEvent.topic.in_(CRITICAL_TOPICS))
            ranked = waiting.subquery()
            picked = select(ranked.c.id).order_by(ranked.c.rank, ranked.c.created_at).limit(batch)
            query = (
                select(OutboxEvent)
                .where(OutboxEvent.id.in_(picked), OutboxEvent.published_at.is_(None))
                .order_by(OutboxEvent.created_at, OutboxEvent.id)
            )
            if session.get_bind().dialect.name == "postgresql":
                # Several relays may run: each takes rows no other one holds.
                query = query.with_for_update(skip_locked=True)
            events = list((await session.scalars(query)).all())
            # Critical events are handed over first: their queue is taken first, and a batch is hundreds of
            # round trips to the broker. Per aggregate, order is kept by the handlers (see JobRuntime.deliver).
            events.sort(key=lambda event: event.topic not in CRITICAL_TOPICS)
            now = utcnow()
            for event in events:
                event.attempts += 1
                for name in handlers_for(event.topic):
                    await asyncio.to_thread(runtime.send, message_for(event, name))
                event.published_at = now
            # Dead letters a tenant administrator asked to replay: the same message again (same event id).
            replays = select(DeadLetter).where(
                DeadLetter.replay_requested_at.is_not(None), DeadLetter.replayed_at.is_(None)
            )
            if session.get_bind().dialect.name == "postgresql":
                replays = replays.with_for_update(skip_locked=True)
            for letter in (await session.scalars(replays.limit(batch))).all():
                await asyncio.to_thread(runtime.send, dict(letter.message))
                letter.replayed_at = now
    return len(events)


async def relay_forever(
    db: async_sessionmaker[AsyncSession], runtime: JobRuntime, interval: float, batch: int, stop: asyncio.Event
) -> None:
    """Relay until ``stop`` is set; while the broker is down, keep the events and try again, backing off. While the
    broker's events queue is full, only critical events go out, and the relay looks again shortly (the workers are
    busy, and must not run dry)."""
    delay = interval
    while not stop.is_set():
        try:
            full = await asyncio.to_thread(runtime.queue_depth) >= QUEUE_LIMIT_BATCHES * batch
            moved = await relay_once(db, runtime, batch, critical_only=full)
            delay = min(interval, FULL_QUEUE_RECHECK) if full else interval if moved < batch else 0
        except Exception as exc:  # the broker or the database is down: wait and retry
            log.warning("outbox relay: %s; retrying in %.1f s", exc, delay)
            delay = min(max(delay * 2, interval), 30.0)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
