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
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import utcnow
from core.jobs.models import DeadLetter, JobReceipt
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


async def backlog(session: AsyncSession) -> tuple[int, int]:
    """What waits: unpublished outbox events and dead letters nobody has replayed (two counts, for /readyz)."""
    with network_scope("job metrics: counts over every tenant"):
        unpublished = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
        pending = await session.scalar(
            select(func.count()).select_from(DeadLetter).where(DeadLetter.replay_requested_at.is_(None))
        )
    return int(unpublished or 0), int(pending or 0)


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
    unpublished, pending = await backlog(session)
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
        "outbox_unpublished": unpublished,
        "outbox_oldest_unpublished_seconds": max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        "dead_letters_pending": pending,
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
        "Domain events not yet handed to the job broker.",
        [("", stats.outbox_unpublished)],
    )
    metric(
        "carehub_outbox_oldest_unpublished_seconds",
        "gauge",
        "Age of the oldest event still in the outbox.",
        [("", stats.outbox_oldest_unpublished_seconds)],
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
        "Messages waiting in the broker (delayed: retries waiting).",
        [
            (f'{{queue="{QUEUE}"}}', stats.queue_depth),
            (f'{{queue="{QUEUE}.delayed"}}', stats.delayed_depth),
            (f'{{queue="{CRITICAL_QUEUE}"}}', stats.critical_depth),
        ],
    )
    for what, name, help_text in (
        ("retries", "carehub_job_retries_total", "Failed job attempts put back for another try."),
        ("failures", "carehub_job_failures_total", "Jobs given up after their last retry (or refused)."),
        (
            "order_waits",
            "carehub_job_order_waits_total",
            "Jobs put back to wait for an earlier event about the same record (not failures).",
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
