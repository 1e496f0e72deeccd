"""The job broker and the one actor that runs outbox events' handlers.

The database is the ledger (core.jobs.models.JobDelivery); the broker only carries messages. Redis (dramatiq's Redis
broker) when ``CAREHUB_REDIS_URL`` is set, otherwise an in-process broker. Every message names its event's tenant;
the actor restores that tenant context before it touches the database and refuses a message without one.

One attempt is one transaction: the handler's effect, its receipt and the end of its delivery commit together, so
a message handed over twice has its effect once. What an attempt did not finish goes back to the ledger, never to
the broker: a failure is counted on the delivery with its retry's time (exponential backoff, up to
``job_max_retries``, then the dead letters), and a message whose handler has not yet done an earlier event of the
same aggregate (patient) waits there briefly. The broker acknowledges every message and holds no delayed ones, so
nothing depends on a re-enqueue, and a message the broker loses is handed over again by the relay when its delivery
times out. Retries, failures for good, order waits and redeliveries are counted per queue for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.middleware import Callbacks, Pipelines, ShutdownNotifications, TimeLimit
from dramatiq.middleware.asyncio import AsyncIO
from sqlalchemy import ColumnElement, ScalarSelect, Select, bindparam, delete, null, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from core import schema as _schema  # noqa: F401 - every table known to the ORM (foreign keys resolve)
from core.db import make_engine, make_sessionmaker, utcnow
from core.jobs.events import PartlyDone
from core.jobs.handlers import HANDLERS, Event, handler
from core.jobs.models import DeadLetter, JobDelivery, JobReceipt
from core.outbox import OutboxEvent
from core.settings import Settings
from tenants.context import tenant_context
from tenants.isolation import append, prebuilt

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
# A delivery waiting for an earlier event of its aggregate is handed over again after 100 ms, 200 ms, ... up to 5 s.
ORDER_WAIT_MIN_MS = 100
ORDER_WAIT_MAX_MS = 5_000


_local_counts: Counter[str] = Counter()
_local_lock = threading.Lock()


class Refused(Exception):
    """A message the actor will not run (no tenant, unknown handler): retrying cannot help."""


def count(broker: dramatiq.Broker, what: str, queue: str, n: int = 1) -> None:
    """Add to a job counter: in Redis when it is the broker (every worker adds to the same numbers), otherwise in
    this process (the in-process broker's jobs run here). A count lost with Redis's data is a counter reset."""
    name = f"{what}:{q_name(queue)}"
    if isinstance(broker, RedisBroker):
        try:
            broker.client.hincrby(COUNTERS_KEY, name, n)
        except Exception:  # a lost count must not fail the job
            log.warning("could not count %s in Redis", name, exc_info=True)
        return
    with _local_lock:
        _local_counts[name] += n


def local_counts() -> dict[str, int]:
    """This process's job counters (the in-process broker's), ``{"retries:events": n, ...}``."""
    with _local_lock:
        return dict(_local_counts)


def queue_of(topic: str) -> str:
    return CRITICAL_QUEUE if topic in CRITICAL_TOPICS else QUEUE


def backoff(settings: Settings, attempts: int) -> timedelta:
    """How long a delivery waits after its ``attempts``-th failure: the minimum backoff doubled per failure up to
    the maximum, less up to a quarter at random (so that jobs failing together do not come back together)."""
    longest = min(settings.job_min_backoff_ms * 2 ** (attempts - 1), settings.job_max_backoff_ms)
    return timedelta(milliseconds=longest * (1 - random.random() / 4))  # noqa: S311 - jitter, not a secret


def ordering_window(settings: Settings) -> timedelta:
    """How long an earlier event of an aggregate can hold back a later one: as long as its delivery may still be
    retried, each attempt timing out at the worst (26.5 minutes with the defaults). Until then the earlier event is
    handled or in the dead letters, and releases the later ones; a delivery that has waited longer (its earlier one
    is stuck for a reason the ledger does not know) goes ahead, with a warning: it never waits for ever."""
    backoffs = sum(
        min(settings.job_min_backoff_ms * 2**attempt, settings.job_max_backoff_ms)
        for attempt in range(settings.job_max_retries)
    )
    attempts = (settings.job_max_retries + 1) * settings.job_delivery_timeout_ms
    return timedelta(milliseconds=backoffs + attempts)


def _first(rows: Select[Any]) -> ScalarSelect[Any]:
    """The first row's value or NULL, as a correlated subquery with LIMIT 1: PostgreSQL keeps it a per-row index
    lookup, where NOT EXISTS may become an anti-join that, on a young table without statistics, reads every receipt
    of the tenant for each check."""
    return rows.limit(1).scalar_subquery()


@functools.cache
def _state_query(ordering: str) -> Select[Any]:
    """An attempt's one statement, built once (building it costs more than running it): the event's receipt (done
    already?), its delivery's waits and intake time, and the first earlier event of its aggregate whose delivery to
    the same handler is not done (neither handled nor in the dead letters: a done delivery is deleted). ``ordering``
    is "none" (no aggregate, or waited long enough), "by_message" (the event's time is bound) or "by_outbox"."""
    event_id = bindparam("event_id", type_=OutboxEvent.id.type)
    handler_name = bindparam("handler", type_=JobReceipt.handler.type)
    handled = _first(select(JobReceipt.id).where(JobReceipt.event_id == event_id, JobReceipt.handler == handler_name))
    mine = (JobDelivery.event_id == event_id, JobDelivery.handler == handler_name)
    waits = _first(select(JobDelivery.waits).where(*mine))
    entered = _first(select(JobDelivery.created_at).where(*mine))
    if ordering == "none":
        return select(handled.label("handled"), null().label("earlier"), waits.label("waits"), entered.label("entered"))
    this: ColumnElement[Any] = (
        bindparam("created_at", type_=OutboxEvent.created_at.type)
        if ordering == "by_message"
        else select(OutboxEvent.created_at).where(OutboxEvent.id == event_id).scalar_subquery()
    )
    earlier = _first(
        select(JobDelivery.event_id)
        .where(
            JobDelivery.handler == handler_name,
            JobDelivery.aggregate_id == bindparam("aggregate_id", type_=JobDelivery.aggregate_id.type),
            tuple_(JobDelivery.event_created_at, JobDelivery.event_id) < tuple_(this, event_id),
        )
        .order_by(JobDelivery.event_created_at, JobDelivery.event_id)
    )
    return select(handled.label("handled"), earlier.label("earlier"), waits.label("waits"), entered.label("entered"))


# The end of a delivery, in the transaction of the handler's receipt.
_DONE = prebuilt(
    delete(JobDelivery)
    .where(JobDelivery.event_id == bindparam("event_id"), JobDelivery.handler == bindparam("handler"))
    .execution_options(synchronize_session=False)
)


def subscribed_topics(handler_name: str) -> list[str]:
    """The topics a handler is registered for (its name keys its receipts, whatever the topic)."""
    return sorted(topic for topic, named in HANDLERS.items() if handler_name in named)


def make_broker(settings: Settings) -> dramatiq.Broker:
    """No Retries middleware: a message is acknowledged whatever its attempt did (the ledger keeps what is left to
    do), so the broker never holds delayed messages, which dramatiq's Redis broker keeps in worker memory."""
    middleware = [
        # The attempt's own timeout (JobRuntime.deliver) comes first; this one stops a handler stuck outside the
        # event loop's reach, a little later.
        TimeLimit(time_limit=settings.job_time_limit_ms + 5_000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
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
        # heartbeats, so a crashed worker's jobs run again within heartbeat_timeout (the ledger's delivery
        # timeout covers them too, later).
        maintenance_chance=1_000_000,
        # A blocked socket cannot be interrupted by a time limit: every call to Redis has its own timeouts.
        socket_connect_timeout=2,
        socket_timeout=10,
    )


def message_for(event: OutboxEvent, handler_name: str) -> dict[str, Any]:
    return message_of(
        event.id, event.tenant_id, event.topic, handler_name, event.payload, event.aggregate_id, event.created_at
    )


def message_of(
    event_id: uuid.UUID,
    tenant_id: uuid.UUID,
    topic: str,
    handler_name: str,
    payload: dict[str, Any],
    aggregate_id: uuid.UUID | None,
    created_at: datetime | None,
) -> dict[str, Any]:
    """The broker message of one (event, handler) delivery: all a worker needs to run it."""
    return {
        "event_id": str(event_id),
        "tenant_id": str(tenant_id),
        "topic": topic,
        "handler": handler_name,
        "payload": payload,
        "aggregate_id": str(aggregate_id) if aggregate_id else None,
        # Where the event stands in its aggregate's order (see JobRuntime.deliver).
        "created_at": created_at.isoformat() if created_at else None,
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
        # Whether this runtime has handed a message to its broker yet (see relay.recover_in_process).
        self.handed_over = False

    @property
    def volatile(self) -> bool:
        """Whether the broker's messages die with this process (the in-process broker)."""
        return isinstance(self.broker, StubBroker)

    def send(self, message: dict[str, Any]) -> None:
        """Put one (event, handler) message on its queue; raises when the broker is unreachable."""
        actor = self.critical_actor if message.get("topic") in CRITICAL_TOPICS else self.actor
        actor.send(message)

    def send_all(self, messages: Iterable[dict[str, Any]]) -> tuple[int, Exception | None]:
        """Hand messages to the broker in order, until one cannot be: how many were, and the error that stopped."""
        sent = 0
        self.handed_over = True
        for message in messages:
            try:
                self.send(message)
            except Exception as exc:
                return sent, exc
            sent += 1
        return sent, None

    def queue_depth(self) -> int:
        """Messages waiting in the events queue for a worker (not the critical queue)."""
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
        """Run one handler for one event, once in effect, after the handler's earlier events of the same aggregate.

        Never raises for the handler's sake: its failure, a timeout or a lost database are written to the ledger
        (or, when even that fails, the delivery times out and is handed over again), and the message is done.
        """
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
            created_at = datetime.fromisoformat(message["created_at"]) if message.get("created_at") else None
        except (KeyError, TypeError, ValueError) as exc:
            count(self.broker, "failures", queue_of(str(message.get("topic", ""))))
            raise Refused(f"not a carehub event message: {exc!r}") from None
        with tenant_context(tenant_id):
            try:
                async with asyncio.timeout(self.settings.job_time_limit_ms / 1000):
                    waits = await self._attempt(event, name, created_at)
            except Exception as exc:
                await self._failed(message, event, name, created_at, exc)
                return
        if waits:
            count(self.broker, "order_waits", queue_of(event.topic))

    async def _attempt(self, event: Event, name: str, created_at: datetime | None) -> bool:
        """One attempt, in one transaction; whether it waits for an earlier event instead (written to the ledger)."""
        run = handler(event.topic, name)  # KeyError: a handler this worker does not know (fails, is retried)
        async with self._sessionmaker()() as session, session.begin():
            params: dict[str, Any] = {"event_id": event.id, "handler": name}
            ordering = "none"
            if event.aggregate_id is not None:
                # The message carries its event's time (one written before it did not: read from the outbox).
                ordering = "by_message" if created_at is not None else "by_outbox"
                params.update(aggregate_id=event.aggregate_id)
                if created_at is not None:
                    params["created_at"] = created_at
            row = (await session.execute(_state_query(ordering), params)).one()
            ledgered = row.entered is not None
            if row.handled is not None:
                log.info("event %s already handled by %s", event.id, name)
                if ledgered:
                    await session.execute(_DONE, {"event_id": event.id, "handler": name})
                return False
            if row.earlier is not None:
                if not ledgered or utcnow() - row.entered < ordering_window(self.settings):
                    log.info("event %s waits for %s to be handled by %s first", event.id, row.earlier, name)
                    await self._wait(session, event, name, created_at, row.waits or 0, ledgered)
                    return True
                log.warning("event %s stopped waiting for the earlier events of %s", event.id, event.aggregate_id)
            append(
                session,
                JobReceipt,
                {"id": uuid.uuid4(), "event_id": event.id, "handler": name, "processed_at": utcnow()},
            )
            await run(session, event)
            if ledgered:
                await session.execute(_DONE, {"event_id": event.id, "handler": name})
        return False

    async def _wait(
        self, session: AsyncSession, event: Event, name: str, created_at: datetime | None, waits: int, ledgered: bool
    ) -> None:
        """The delivery is handed over again shortly (100 ms, 200 ms, ... 5 s), its retries untouched."""
        due = utcnow() + timedelta(milliseconds=min(ORDER_WAIT_MIN_MS * 2**waits, ORDER_WAIT_MAX_MS))
        if ledgered:
            delivery = await session.scalar(
                select(JobDelivery).where(JobDelivery.event_id == event.id, JobDelivery.handler == name)
            )
            if delivery is not None:
                delivery.waits = waits + 1
                delivery.sent_at = None
                delivery.next_attempt_at = due
                return
        session.add(self._new_delivery(event, name, created_at, due, waits=1))

    def _new_delivery(
        self, event: Event, name: str, created_at: datetime | None, due: datetime, **counts: int
    ) -> JobDelivery:
        """A delivery for a message that came without one (sent before the ledger, or by hand)."""
        return JobDelivery(
            event_id=event.id,
            handler=name,
            topic=event.topic,
            aggregate_id=event.aggregate_id,
            event_created_at=created_at or utcnow(),
            next_attempt_at=due,
            sends=1,
            **counts,
        )

    async def _failed(
        self, message: dict[str, Any], event: Event, name: str, created_at: datetime | None, exc: BaseException
    ) -> None:
        """Count a failed attempt on its delivery: its retry's time, or after the last retry a dead letter. When the
        database cannot be written, the delivery is handed over again after its timeout, which counts it then."""
        error = f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}"[:20_000]
        queue = queue_of(event.topic)
        try:
            async with self._sessionmaker()() as session, session.begin():
                mine = (JobDelivery.event_id == event.id, JobDelivery.handler == name)
                handled = await session.scalar(
                    select(JobReceipt.id).where(JobReceipt.event_id == event.id, JobReceipt.handler == name)
                )
                delivery = await session.scalar(select(JobDelivery).where(*mine).with_for_update())
                if handled is not None:  # a duplicate that ran beside the attempt that succeeded
                    if delivery is not None:
                        await session.delete(delivery)
                    return
                if delivery is None:
                    delivery = self._new_delivery(event, name, created_at, utcnow())
                    session.add(delivery)
                if isinstance(exc, PartlyDone):
                    await exc.keep(session)
                delivery.attempts += 1
                delivery.last_error = error
                delivery.sent_at = None
                if delivery.attempts <= self.settings.job_max_retries:
                    delivery.next_attempt_at = utcnow() + backoff(self.settings, delivery.attempts)
                    outcome = "retries"
                else:
                    session.add(dead_letter(message, error, delivery.attempts))
                    await session.delete(delivery)
                    outcome = "failures"
        except StaleDataError:  # a duplicate's attempt (SQLite: no row locks) ended the delivery first
            log.info("job %s/%s: another attempt recorded its outcome first", event.topic, name)
            return
        except Exception:
            log.exception("job %s/%s failed and the failure could not be recorded", event.topic, name)
            return
        count(self.broker, outcome, queue)
        if outcome == "failures":
            log.warning("job %s/%s failed for good: %s", event.topic, name, error.splitlines()[0])
        else:
            log.info(
                "job %s/%s failed (attempt %d), retried later: %s",
                event.topic,
                name,
                delivery.attempts,
                error.splitlines()[0],
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


def dead_letter(message: dict[str, Any], error: str, attempts: int) -> DeadLetter:
    """The dead letter of a job (its message names its tenant, event and handler) that failed after its last retry;
    ``retries`` counts its failed attempts."""
    return DeadLetter(
        tenant_id=uuid.UUID(message["tenant_id"]),
        event_id=uuid.UUID(message["event_id"]),
        topic=str(message["topic"])[:100],
        handler=str(message["handler"])[:100],
        message=message,
        error=error,
        retries=attempts,
    )
