"""Periodic rules. Each tick of a rule is one outbox event per active tenant, with an id derived from the rule,
the period and the tenant: however many schedulers run, a period's event exists once (the primary key refuses
a second), and the relay and handlers take it from there. With Redis, one scheduler at a time leads (a lock with
expiry) so that the others do not even try.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.outbox import OutboxEvent
from tenants.context import network_scope, tenant_context
from tenants.models import Tenant

log = logging.getLogger(__name__)
NAMESPACE = uuid.UUID("5b0c7c1e-2f49-4c6e-9d55-3c1f0e6a9a01")
LEADER_KEY = "carehub:scheduler:leader"


@dataclass(frozen=True)
class PeriodicRule:
    name: str  # also the event topic
    period_seconds: int


RULES = (
    PeriodicRule("schedule.overdue_tasks", 60),
    PeriodicRule("schedule.critical_results", 60),
    PeriodicRule("schedule.deferred_notifications", 60),
    PeriodicRule("schedule.appointment_reminders", 300),
    PeriodicRule("schedule.prune_outbox", 3600),
    PeriodicRule("schedule.plugin_sync", 60),
)


def period_of(rule: PeriodicRule, now: datetime) -> int:
    return int(now.timestamp()) // rule.period_seconds


def event_id(rule: PeriodicRule, period: int, tenant_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{rule.name}/{period}/{tenant_id}")


async def tick(db: async_sessionmaker[AsyncSession], now: datetime, rules: tuple[PeriodicRule, ...] = RULES) -> int:
    """Write this period's event of every rule for every active tenant; the number written by this call."""
    with network_scope("scheduler: the active tenants"):
        async with db() as session:
            tenants = list(await session.scalars(select(Tenant.id).where(Tenant.status == "active")))
    written = 0
    for rule in rules:
        period = period_of(rule, now)
        at = datetime.fromtimestamp(period * rule.period_seconds, UTC)
        for tenant_id in tenants:
            with tenant_context(tenant_id):
                try:
                    async with db() as session, session.begin():
                        session.add(
                            OutboxEvent(
                                id=event_id(rule, period, tenant_id),
                                topic=rule.name,
                                payload={"period": period, "at": at.isoformat()},
                            )
                        )
                    written += 1
                except IntegrityError:
                    pass  # another scheduler wrote this period already
    return written


class Leadership:
    """A Redis lock with expiry: the holder renews it each tick; when it dies, another takes over after ``ttl``."""

    def __init__(self, redis: Redis, ttl_ms: int) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.me = f"{socket.gethostname()}:{uuid.uuid4()}"

    async def hold(self) -> bool:
        if await self.redis.set(LEADER_KEY, self.me, nx=True, px=self.ttl_ms):
            return True
        # Renew only our own lock (compare and extend in one step).
        renewed = await self.redis.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0",
            1,
            LEADER_KEY,
            self.me,
            self.ttl_ms,
        )
        return bool(renewed)


async def run(db: async_sessionmaker[AsyncSession], redis: Redis | None, interval: float, stop: asyncio.Event) -> None:
    """Tick every ``interval`` seconds until ``stop``; with Redis, only while leading."""
    leadership = Leadership(redis, int(interval * 3000)) if redis is not None else None
    while not stop.is_set():
        try:
            if leadership is None or await leadership.hold():
                await tick(db, datetime.now(UTC))
        except Exception as exc:  # the database or Redis is down: try again next tick
            log.warning("scheduler: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
