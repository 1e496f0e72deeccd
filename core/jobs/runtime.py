"""The job broker and the one actor that delivers outbox events to their handlers.

Redis (dramatiq's Redis broker) when ``CAREHUB_REDIS_URL`` is set, otherwise an in-process broker. Every message
names its event's tenant; the actor restores that tenant context before it touches the database and refuses a
message without one. A handler's effect and its receipt commit together, so a redelivered message has its
effect once. Failures are retried with exponential backoff up to ``job_max_retries``.

A handler sees one aggregate's (patient's) events in the order they were written: a message whose handler has not
yet handled an earlier event of the same aggregate waits (it is put back, shortly, without spending a retry).
Retries, failures for good and those waits are counted per queue for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from dramatiq.middleware.asyncio import AsyncIO
from sqlalchemy import ColumnElement, ScalarSelect, Select, bindparam, null, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import schema as _schema  # noqa: F401 - every table known to the ORM (foreign keys resolve)
from core.db import make_engine, make_sessionmaker, utcnow
from core.jobs.handlers import HANDLERS, Event, handler
from core.jobs.models import DeadLetter, JobReceipt
from core.outbox import OutboxEvent
from core.settings import Settings
from tenants.context import tenant_context

log = logging.getLogger(__name__)
QUEUE = "events"
# Events that must not wait behind anyone's backlog: their own queue, and the workers take them first.
CRITICAL_QUEUE = "critical"
CRITICAL_TOPICS = frozenset({"lab_result.critical_received"})
CRITICAL_ACTOR = "carehub.deliver.critical"
NAMESPACE = "carehub:jobs"
ACTOR = "carehub.deliver"
# With Redis: one hash of counters ("retries:events" -> n) shared by every worker, read by /metrics.
COUNTERS_KEY = f"{NAMESPACE}:__counters__"
# A message waiting for an earlier event of its aggregate is put back after 100 ms, then 200 ms, ... up to 5 s.
ORDER_WAIT_MIN_MS = 100
ORDER_WAIT_MAX_MS = 5_000

_local_counts: Counter[str] = Counter()
_local_lock = threading.Lock()


class Refused(Exception):
    """A message the actor will not run (no tenant, unknown handler): retrying cannot help."""


class DeadLetters(dramatiq.Middleware):
    """After its last retry, a failed job is written to its tenant's dead-letter list (listed before Retries)."""

    def __init__(self) -> None:
        self.runtime: JobRuntime | None = None

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None or not message.failed or self.runtime is None:
            return
        if message.actor_name not in (ACTOR, CRITICAL_ACTOR):
            return
        body = message.args[0] if message.args else {}
        trace = str(message.options.get("traceback") or "")
        error = f"{type(exception).__name__}: {exception}\n{trace}"[:20_000]
        retries = int(message.options.get("retries", 0))
        loop = get_event_loop_thread()
        if loop is None:
            log.error("no event loop to record a dead letter for %r", body)
            return
        try:
            loop.run_coroutine(self.runtime.record_dead_letter(body, error, retries))
        except Exception:  # never let the dead-letter write take the worker down
            log.exception("could not record a dead letter for %r", body)


def count(broker: dramatiq.Broker, what: str, queue: str) -> None:
    """Add one to a job counter: in Redis when it is the broker (every worker adds to the same numbers), otherwise
    in this process (the in-process broker's jobs run here)."""
    name = f"{what}:{q_name(queue)}"
    if isinstance(broker, RedisBroker):
        try:
            broker.client.hincrby(COUNTERS_KEY, name, 1)
        except Exception:  # a lost count must not fail the job
            log.warning("could not count %s in Redis", name, exc_info=True)
        return
    with _local_lock:
        _local_counts[name] += 1


def local_counts() -> dict[str, int]:
    """This process's job counters (the in-process broker's), ``{"retries:events": n, ...}``."""
    with _local_lock:
        return dict(_local_counts)


class JobCounters(dramatiq.Middleware):
    """Counts each failed attempt as a retry, or as a failure for good once Retries has given the job up (listed
    before Retries, so that its "after" hook sees Retries' decision)."""

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is None or message.actor_name not in (ACTOR, CRITICAL_ACTOR):
            return
        count(broker, "failures" if message.failed else "retries", message.queue_name)


def ordering_window(settings: Settings) -> timedelta:
    """How long after it was handed to the broker an earlier event can still hold back a later one of its aggregate.

    As long as its job may still be running or waiting for a retry: every retry's longest backoff, a time limit per
    attempt, and the heartbeat timeout after which a dead worker's job runs again (18 minutes with the defaults).
    After that the earlier event is handled, in the dead letters, or will never be handled by this handler (it was
    published before the handler existed): it no longer holds anything back, and no message waits longer.
    """
    backoffs = sum(
        min(2 * settings.job_min_backoff_ms * 2**attempt, settings.job_max_backoff_ms)
        for attempt in range(settings.job_max_retries)
    )
    attempts = (settings.job_max_retries + 1) * settings.job_time_limit_ms
    return timedelta(milliseconds=backoffs + attempts + settings.job_heartbeat_timeout_ms)


def _first(rows: Select[uuid.UUID]) -> ScalarSelect[uuid.UUID]:
    """The first row's id or NULL, as a correlated subquery with LIMIT 1: PostgreSQL keeps it a per-row index lookup,
    where NOT EXISTS may become an anti-join that, on a young table without statistics, reads every receipt of the
    tenant for each earlier event (30 ms a check in the fairness benchmark)."""
    return rows.limit(1).scalar_subquery()


@functools.cache
def _handled_and_earlier_query(ordering: str) -> Select[uuid.UUID, Any]:
    """The delivery's one statement, built once (building it costs more than running it): the event's receipt, and
    the first earlier event of its aggregate that the handler has neither handled nor given up on. ``ordering`` is
    "none" (no aggregate, or waited long enough), "by_message" (the event's time is bound) or "by_outbox"."""
    event_id = bindparam("event_id", type_=OutboxEvent.id.type)
    handler_name = bindparam("handler", type_=JobReceipt.handler.type)
    handled = _first(select(JobReceipt.id).where(JobReceipt.event_id == event_id, JobReceipt.handler == handler_name))
    if ordering == "none":
        return select(handled.label("handled"), null().label("earlier"))
    this: ColumnElement[Any] = (
        bindparam("created_at", type_=OutboxEvent.created_at.type)
        if ordering == "by_message"
        else select(OutboxEvent.created_at).where(OutboxEvent.id == event_id).scalar_subquery()
    )
    earlier = (
        select(OutboxEvent.id)
        .where(
            OutboxEvent.aggregate_id == bindparam("aggregate_id", type_=OutboxEvent.aggregate_id.type),
            OutboxEvent.topic.in_(bindparam("topics", expanding=True)),
            tuple_(OutboxEvent.created_at, OutboxEvent.id) < tuple_(this, event_id),
            or_(
                OutboxEvent.published_at.is_(None),
                OutboxEvent.published_at >= bindparam("published_since", type_=OutboxEvent.created_at.type),
            ),
            _first(
                select(JobReceipt.id).where(JobReceipt.event_id == OutboxEvent.id, JobReceipt.handler == handler_name)
            ).is_(None),
            _first(
                select(DeadLetter.id).where(DeadLetter.event_id == OutboxEvent.id, DeadLetter.handler == handler_name)
            ).is_(None),
        )
        .order_by(OutboxEvent.created_at, OutboxEvent.id)
        .limit(1)
        .scalar_subquery()
    )
    return select(handled.label("handled"), earlier.label("earlier"))


def subscribed_topics(handler_name: str) -> list[str]:
    """The topics a handler is registered for (its name keys its receipts, whatever the topic)."""
    return sorted(topic for topic, named in HANDLERS.items() if handler_name in named)


def make_broker(settings: Settings) -> dramatiq.Broker:
    middleware = [
        AgeLimit(),
        TimeLimit(time_limit=settings.job_time_limit_ms),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        CurrentMessage(),
        # "after" hooks run in reverse order: these see a message after Retries has decided on it.
        JobCounters(),
        DeadLetters(),
        Retries(
            max_retries=settings.job_max_retries,
            min_backoff=settings.job_min_backoff_ms,
            max_backoff=settings.job_max_backoff_ms,
            retry_when=lambda retries, exc: not isinstance(exc, Refused) and retries < settings.job_max_retries,
        ),
        AsyncIO(),
    ]
    if not settings.redis_url:
        return StubBroker(middleware=middleware)
    return RedisBroker(
        url=settings.redis_url,
        middleware=middleware,
        namespace=NAMESPACE,
        heartbeat_timeout=settings.job_heartbeat_timeout_ms,
        # Out of a million fetches: every fetch also requeues the messages of workers that stopped sending
        # heartbeats, so a crashed worker's jobs run again within heartbeat_timeout.
        maintenance_chance=1_000_000,
        # A blocked socket cannot be interrupted by a time limit: every call to Redis has its own timeouts.
        socket_connect_timeout=2,
        socket_timeout=10,
    )


def message_for(event: OutboxEvent, handler_name: str) -> dict[str, Any]:
    return {
        "event_id": str(event.id),
        "tenant_id": str(event.tenant_id),
        "topic": event.topic,
        "handler": handler_name,
        "payload": event.payload,
        "aggregate_id": str(event.aggregate_id) if event.aggregate_id else None,
        # Where the event stands in its aggregate's order (see JobRuntime.deliver).
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


class JobRuntime:
    """A broker with the delivery actor declared on it, and the database the actor writes to."""

    def __init__(self, settings: Settings, broker: dramatiq.Broker | None = None) -> None:
        self.settings = settings
        self.broker = broker if broker is not None else make_broker(settings)
        # dramatiq: lower numbers first when a worker holds messages of both.
        self.actor: dramatiq.Actor[Any, Any] = dramatiq.Actor(
            self.deliver, broker=self.broker, actor_name=ACTOR, queue_name=QUEUE, priority=100, options={}
        )
        self.critical_actor: dramatiq.Actor[Any, Any] = dramatiq.Actor(
            self.deliver,
            broker=self.broker,
            actor_name=CRITICAL_ACTOR,
            queue_name=CRITICAL_QUEUE,
            priority=0,
            options={},
        )
        self._db: async_sessionmaker[AsyncSession] | None = None
        for middleware in self.broker.middleware:
            if isinstance(middleware, DeadLetters):
                middleware.runtime = self

    def send(self, message: dict[str, Any]) -> None:
        """Put one (event, handler) message on its queue; raises when the broker is unreachable."""
        actor = self.critical_actor if message.get("topic") in CRITICAL_TOPICS else self.actor
        actor.send(message)

    def queue_depth(self) -> int:
        """Messages waiting in the events queue for a worker (not the critical queue, not retries waiting)."""
        if isinstance(self.broker, RedisBroker):
            return int(self.broker.client.llen(f"{NAMESPACE}:{QUEUE}"))
        if isinstance(self.broker, StubBroker):
            return self.broker.queues[QUEUE].qsize()
        return 0

    def _sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        # Made on first use, inside the worker's event loop (the engine belongs to that loop).
        if self._db is None:
            self._db = make_sessionmaker(
                make_engine(self.settings.database_url, pool_size=self.settings.job_worker_threads)
            )
        return self._db

    async def deliver(self, message: dict[str, Any]) -> None:
        """Run one handler for one event, once in effect, after the handler's earlier events of the same aggregate."""
        try:
            tenant_id = uuid.UUID(str(message["tenant_id"]))
            event = Event(
                id=uuid.UUID(str(message["event_id"])),
                tenant_id=tenant_id,
                topic=str(message["topic"]),
                payload=dict(message.get("payload") or {}),
                aggregate_id=uuid.UUID(message["aggregate_id"]) if message.get("aggregate_id") else None,
            )
            name = str(message["handler"])
            run = handler(event.topic, name)
            created_at = datetime.fromisoformat(message["created_at"]) if message.get("created_at") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused(f"not a carehub event message: {exc!r}") from None
        current = CurrentMessage.get_current_message()
        with tenant_context(tenant_id):
            async with self._sessionmaker()() as session, session.begin():
                done, earlier = await self._handled_and_earlier(session, event, created_at, name, current)
                if done:
                    log.info("event %s already handled by %s", event.id, name)
                    return
                if earlier is None:
                    session.add(JobReceipt(event_id=event.id, handler=name))
                    await run(session, event)
        if earlier is not None:
            log.info("event %s waits for %s to be handled by %s first", event.id, earlier, name)
            await asyncio.to_thread(self._wait_again, message, current)

    async def _handled_and_earlier(
        self,
        session: AsyncSession,
        event: Event,
        created_at: datetime | None,
        name: str,
        current: dramatiq.Message[Any] | None,
    ) -> tuple[bool, uuid.UUID | None]:
        """Whether the handler has handled the event, and an earlier event of the same aggregate that it has yet to
        handle (or None): one statement, a round trip, each part an indexed lookup.

        Earlier is (created_at, id): events written in one transaction may share a timestamp, and the relay hands
        them over in the same order. An event in the dead letters does not hold the others back, nor does one
        handed to the broker longer ago than the ordering window; and a message that has already waited that long
        goes ahead (with a warning): a patient's events wait for one another, never for ever.
        """
        params: dict[str, Any] = {"event_id": event.id, "handler": name}
        ordering = "none"
        window = ordering_window(self.settings)
        since = int(current.options.get("order_wait_since", 0)) if current is not None else 0
        if since and time.time() * 1000 - since > window.total_seconds() * 1000:
            log.warning("event %s stopped waiting for the earlier events of %s", event.id, event.aggregate_id)
        elif event.aggregate_id is not None:
            # The message carries its event's time (one written before it did not: read from the outbox).
            ordering = "by_message" if created_at is not None else "by_outbox"
            params.update(
                aggregate_id=event.aggregate_id, topics=subscribed_topics(name), published_since=utcnow() - window
            )
            if created_at is not None:
                params["created_at"] = created_at
        row = (await session.execute(_handled_and_earlier_query(ordering), params)).one()
        return row.handled is not None, row.earlier

    def _wait_again(self, message: dict[str, Any], current: dramatiq.Message[Any] | None) -> None:
        """Put the message back on its queue shortly, keeping its retries (waiting is not failing)."""
        if current is None:  # called outside a worker: a new message
            actor = self.critical_actor if message.get("topic") in CRITICAL_TOPICS else self.actor
            actor.send_with_options(args=(message,), delay=ORDER_WAIT_MIN_MS)
            count(self.broker, "order_waits", actor.queue_name)
            return
        waits = int(current.options.get("order_waits", 0))
        since = int(current.options.get("order_wait_since", 0)) or int(time.time() * 1000)
        delay = min(ORDER_WAIT_MIN_MS * 2**waits, ORDER_WAIT_MAX_MS)
        again = current.copy(options={"order_waits": waits + 1, "order_wait_since": since})
        self.broker.enqueue(again, delay=delay)
        count(self.broker, "order_waits", current.queue_name)

    async def record_dead_letter(self, message: dict[str, Any], error: str, retries: int) -> None:
        """Keep a job that failed for good in its tenant's dead-letter list (a message without one is only logged)."""
        try:
            tenant_id = uuid.UUID(str(message["tenant_id"]))
            event_id = uuid.UUID(str(message["event_id"]))
        except (KeyError, TypeError, ValueError):
            log.error("a job without a tenant failed for good: %r (%s)", message, error.splitlines()[0])
            return
        with tenant_context(tenant_id):
            async with self._sessionmaker()() as session, session.begin():
                session.add(
                    DeadLetter(
                        event_id=event_id,
                        topic=str(message.get("topic", ""))[:100],
                        handler=str(message.get("handler", ""))[:100],
                        message=message,
                        error=error,
                        retries=retries,
                    )
                )
        log.warning(
            "job %s/%s failed for good: %s", message.get("topic"), message.get("handler"), error.splitlines()[0]
        )

    async def dispose(self) -> None:
        """Close the actor's database connections from the running loop (when ``deliver`` was awaited there, not
        in a worker)."""
        if self._db is not None:
            await self._db.kw["bind"].dispose()
            self._db = None

    def close(self) -> None:
        """Close the actor's database connections (call before stopping the worker: they live on its loop)."""
        if self._db is not None:
            engine = self._db.kw["bind"]
            get_event_loop_thread().run_coroutine(engine.dispose())  # type: ignore[union-attr]
            self._db = None
