"""Numbers about the background jobs, read at scrape time from the database (and Redis when it is the broker).

The job counters (retries, failures for good, ordering waits) are kept in Redis when it is the broker, shared by
every worker; with the in-process broker they are this process's own (its jobs run here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import utcnow
from core.jobs.models import DeadLetter, JobDelivery, JobReceipt
from core.jobs.runtime import COUNTERS_KEY, CRITICAL_QUEUE, NAMESPACE, QUEUE, local_counts
from core.outbox import OutboxEvent
from tenants.context import network_scope

log = logging.getLogger(__name__)
LATENCY_SAMPLE = 2000
WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class JobStats:
    """What a scrape reads; a figure that could not be read (its side was down) is None and left out."""

    database_up: bool = True
    broker_up: bool = True
    outbox_unpublished: int | None = None
    outbox_oldest_unpublished_seconds: float | None = None
    # Deliveries in the ledger (jobs not done): handed to the broker and not answered yet, waiting for a retry or
    # an earlier event (handed over before), new (never handed over); and the age of the oldest.
    deliveries_in_flight: int | None = None
    deliveries_waiting: int | None = None
    deliveries_new: int | None = None
    delivery_oldest_seconds: float | None = None
    dead_letters_pending: int | None = None
    dead_letters_replayed: int | None = None
    handled_last_hour: int | None = None
    latency_p50_seconds: float | None = None
    latency_p95_seconds: float | None = None
    queue_depth: int | None = None
    delayed_depth: int | None = None
    critical_depth: int | None = None
    # "retries:events" -> n: see core.jobs.runtime.count (empty when nothing was counted yet).
    counters: dict[str, int] = field(default_factory=dict)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Backlog:
    """What waits, for /readyz: events not yet in the ledger, jobs in it (all, and those handed to the broker
    without an outcome yet), the age of the oldest job, and dead letters nobody has replayed."""

    unpublished: int
    pending: int
    in_flight: int
    waiting: int
    oldest_seconds: float
    dead_letters: int


async def backlog(session: AsyncSession) -> Backlog:
    with network_scope("job metrics: counts over every tenant"):
        unpublished = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
        ledger = (
            await session.execute(
                select(
                    func.count(),
                    func.count(JobDelivery.sent_at),
                    func.coalesce(func.sum(case((JobDelivery.sends == 0, 1), else_=0)), 0),
                    func.min(JobDelivery.created_at),
                )
            )
        ).one()
        dead = await session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.replay_requested_at.is_(None))
        )
    total, in_flight, new, oldest = ledger
    return Backlog(
        unpublished=int(unpublished or 0),
        pending=int(total or 0),
        in_flight=int(in_flight or 0),
        waiting=int(total or 0) - int(in_flight or 0) - int(new or 0),
        oldest_seconds=max((utcnow() - oldest).total_seconds(), 0.0) if oldest else 0.0,
        dead_letters=int(dead or 0),
    )


async def collect(db: async_sessionmaker[AsyncSession], redis: Redis | None) -> JobStats:
    """Aggregates over every tenant (no tenant or patient appears in them). Never raises for an outage: the side
    that is down is reported as down, and the figures it holds are left out."""
    figures: dict[str, Any] = {}
    try:
        async with db() as session:
            figures.update(await _database_figures(session))
    except Exception as exc:
        log.warning("metrics: the database could not be read: %s", exc)
        figures["database_up"] = False
    if redis is not None:
        try:
            figures.update(await _broker_figures(redis))
        except Exception as exc:
            log.warning("metrics: the job broker could not be read: %s", exc)
            figures["broker_up"] = False
    else:
        figures["counters"] = local_counts()
    return JobStats(**figures)


async def _database_figures(session: AsyncSession) -> dict[str, Any]:
    now = utcnow()
    waiting = await backlog(session)
    with network_scope("job metrics: counts over every tenant"):
        oldest = await session.scalar(
            select(func.min(OutboxEvent.created_at)).where(OutboxEvent.published_at.is_(None))
        )
        replayed = await session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.replay_requested_at.is_not(None))
        )
        # Latency: from the change (the event's creation) to its handler's commit.
        pairs = (
            await session.execute(
                select(JobReceipt.processed_at, OutboxEvent.created_at)
                .join(OutboxEvent, OutboxEvent.id == JobReceipt.event_id)
                .where(JobReceipt.processed_at >= now - WINDOW)
                .order_by(JobReceipt.processed_at.desc())
                .limit(LATENCY_SAMPLE)
            )
        ).all()
        handled = await session.scalar(
            select(func.count()).select_from(JobReceipt).where(JobReceipt.processed_at >= now - WINDOW)
        )
    latencies = [max((done - created).total_seconds(), 0.0) for done, created in pairs]
    return {
        "outbox_unpublished": waiting.unpublished,
        "outbox_oldest_unpublished_seconds": max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        "deliveries_in_flight": waiting.in_flight,
        "deliveries_waiting": waiting.waiting,
        "deliveries_new": waiting.pending - waiting.in_flight - waiting.waiting,
        "delivery_oldest_seconds": waiting.oldest_seconds,
        "dead_letters_pending": waiting.dead_letters,
        "dead_letters_replayed": int(replayed or 0),
        "handled_last_hour": int(handled or 0),
        "latency_p50_seconds": _quantile(latencies, 0.5),
        "latency_p95_seconds": _quantile(latencies, 0.95),
    }


async def _broker_figures(redis: Redis) -> dict[str, Any]:
    stored = await redis.hgetall(COUNTERS_KEY)
    return {
        "queue_depth": int(await redis.llen(f"{NAMESPACE}:{QUEUE}")),
        "delayed_depth": int(await redis.llen(f"{NAMESPACE}:{QUEUE}.DQ")),
        "critical_depth": int(await redis.llen(f"{NAMESPACE}:{CRITICAL_QUEUE}")),
        "counters": {_text(name): int(value) for name, value in stored.items()},
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def prometheus(stats: JobStats) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float | None]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is not None:
                lines.append(f"{name}{labels} {value:g}")

    metric("carehub_database_up", "gauge", "Whether the database answered this scrape.", [("", stats.database_up)])
    metric(
        "carehub_broker_up",
        "gauge",
        "Whether the job broker answered this scrape (writes go on while it is down: events wait in the outbox).",
        [("", stats.broker_up)],
    )
    metric(
        "carehub_outbox_unpublished",
        "gauge",
        "Domain events not yet taken into the job ledger.",
        [("", stats.outbox_unpublished)],
    )
    metric(
        "carehub_outbox_oldest_unpublished_seconds",
        "gauge",
        "Age of the oldest event still in the outbox.",
        [("", stats.outbox_oldest_unpublished_seconds)],
    )
    metric(
        "carehub_job_deliveries",
        "gauge",
        "Jobs in the ledger, not done: in_flight (handed to the broker, no outcome yet; handed over again after the "
        "delivery timeout), waiting (for a retry or an earlier event), new (not handed over yet).",
        [
            ('{state="in_flight"}', stats.deliveries_in_flight),
            ('{state="waiting"}', stats.deliveries_waiting),
            ('{state="new"}', stats.deliveries_new),
        ],
    )
    metric(
        "carehub_job_delivery_oldest_seconds",
        "gauge",
        "Age of the oldest job not done (since its event was taken into the ledger).",
        [("", stats.delivery_oldest_seconds)],
    )
    metric(
        "carehub_job_dead_letters",
        "gauge",
        "Jobs that failed after every retry.",
        [('{state="pending"}', stats.dead_letters_pending), ('{state="replayed"}', stats.dead_letters_replayed)],
    )
    metric(
        "carehub_jobs_handled_last_hour",
        "gauge",
        "Event handlers that committed in the last hour.",
        [("", stats.handled_last_hour)],
    )
    metric(
        "carehub_job_latency_seconds",
        "gauge",
        "From a change to its handler's commit, over the last hour.",
        [('{quantile="0.5"}', stats.latency_p50_seconds), ('{quantile="0.95"}', stats.latency_p95_seconds)],
    )
    metric(
        "carehub_job_queue_depth",
        "gauge",
        "Messages waiting in the broker (delayed: always 0, retries and waits are kept in the ledger).",
        [
            (f'{{queue="{QUEUE}"}}', stats.queue_depth),
            (f'{{queue="{QUEUE}.delayed"}}', stats.delayed_depth),
            (f'{{queue="{CRITICAL_QUEUE}"}}', stats.critical_depth),
        ],
    )
    for what, name, help_text in (
        ("retries", "carehub_job_retries_total", "Failed job attempts scheduled for another try."),
        (
            "redeliveries",
            "carehub_job_redeliveries_total",
            "Messages handed over again after the delivery timeout (the broker lost them, or their worker stopped).",
        ),
        ("failures", "carehub_job_failures_total", "Jobs given up after their last retry (or refused)."),
        (
            "order_waits",
            "carehub_job_order_waits_total",
            "Job attempts that waited for an earlier event about the same record (not failures).",
        ),
    ):
        metric(
            name,
            "counter",
            help_text,
            [
                (f'{{queue="{queue}"}}', stats.counters.get(f"{what}:{queue}", 0) if stats.broker_up else None)
                for queue in (QUEUE, CRITICAL_QUEUE)
            ],
        )
    return "\n".join(lines) + "\n"
