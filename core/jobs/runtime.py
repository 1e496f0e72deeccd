"""The job broker and the one actor that delivers outbox events to their handlers.

Redis (dramatiq's Redis broker) when ``CAREHUB_REDIS_URL`` is set, otherwise an in-process broker. Every message
names its event's tenant; the actor restores that tenant context before it touches the database and refuses a
message without one. A handler's effect and its receipt commit together, so a redelivered message has its
effect once. Failures are retried with exponential backoff up to ``job_max_retries``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from dramatiq.middleware.asyncio import AsyncIO
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import schema as _schema  # noqa: F401 - every table known to the ORM (foreign keys resolve)
from core.db import make_engine, make_sessionmaker
from core.jobs import rules as _rules  # noqa: F401 - registers the handlers
from core.jobs.handlers import Event, handler
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


def make_broker(settings: Settings) -> dramatiq.Broker:
    middleware = [
        AgeLimit(),
        TimeLimit(time_limit=settings.job_time_limit_ms),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # "after" hooks run in reverse order: this one sees a message after Retries has given it up.
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

    def _sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        # Made on first use, inside the worker's event loop (the engine belongs to that loop).
        if self._db is None:
            self._db = make_sessionmaker(
                make_engine(self.settings.database_url, pool_size=self.settings.job_worker_threads)
            )
        return self._db

    async def deliver(self, message: dict[str, Any]) -> None:
        """Run one handler for one event, once in effect."""
        try:
            tenant_id = uuid.UUID(str(message["tenant_id"]))
            event = Event(
                id=uuid.UUID(str(message["event_id"])),
                tenant_id=tenant_id,
                topic=str(message["topic"]),
                payload=dict(message.get("payload") or {}),
                aggregate_id=uuid.UUID(message["aggregate_id"]) if message.get("aggregate_id") else None,
            )
            run = handler(event.topic, str(message["handler"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused(f"not a carehub event message: {exc!r}") from None
        with tenant_context(tenant_id):
            async with self._sessionmaker()() as session, session.begin():
                done = await session.scalar(
                    select(JobReceipt.id).where(
                        JobReceipt.event_id == event.id, JobReceipt.handler == message["handler"]
                    )
                )
                if done is not None:
                    log.info("event %s already handled by %s", event.id, message["handler"])
                    return
                session.add(JobReceipt(event_id=event.id, handler=str(message["handler"])))
                await run(session, event)

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

    def close(self) -> None:
        """Close the actor's database connections (call before stopping the worker: they live on its loop)."""
        if self._db is not None:
            engine = self._db.kw["bind"]
            get_event_loop_thread().run_coroutine(engine.dispose())  # type: ignore[union-attr]
            self._db = None
