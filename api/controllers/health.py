"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.response import Response
from sqlalchemy import text

from api.hub import Hub
from core.jobs import metrics

OPT = {"public": True, "rate_limit_exempt": True}


@get("/healthz", opt=OPT, tags=["health"], summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/readyz",
    opt=OPT,
    tags=["health"],
    summary="Ready to serve requests: the database is reachable (a broker outage is reported as degraded)",
    responses={503: ResponseSpec(dict[str, Any], description="Not ready: `checks` says what is unreachable")},
)
async def readyz(state: State) -> Response[dict[str, Any]]:
    """Ready while the database answers: every write goes through it, and domain events wait in its outbox while
    the job broker is down, so a broker outage leaves the instance serving (``degraded`` names it) rather than
    taken out of a load balancer."""
    hub: Hub = state.hub
    checks: dict[str, str] = {}
    database = await _database_up(hub)
    checks["database"] = "ok" if database is None else f"unreachable: {database}"
    broker = await _broker_down(hub)
    checks["broker"] = ("ok (redis)" if hub.redis is not None else "ok (in-process)") if broker is None else broker
    jobs: dict[str, Any] | None = None
    if database is None:
        try:
            async with hub.db() as session:
                backlog = await metrics.backlog(session)
            checks["jobs"] = (
                f"ok ({backlog.unpublished} events waiting in the outbox, {backlog.pending} jobs not done, of which"
                f" {backlog.in_flight} handed to the broker, the oldest for {backlog.oldest_seconds:.0f} s;"
                f" {backlog.dead_letters} dead letters to look at)"
            )
            jobs = {
                "outbox_waiting": backlog.unpublished,
                "not_done": backlog.pending,
                "handed_over_not_done": backlog.in_flight,
                "waiting_for_retry_or_order": backlog.waiting,
                "oldest_not_done_seconds": round(backlog.oldest_seconds, 1),
                "dead_letters": backlog.dead_letters,
            }
        except Exception as exc:  # the database went away between the two checks
            checks["jobs"] = f"unknown: {type(exc).__name__}"
    ready = database is None
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    if jobs is not None:
        body["jobs"] = jobs
    body["degraded"] = [] if broker is None else ["broker"]
    return Response(body, status_code=200 if ready else 503)


async def _database_up(hub: Hub) -> str | None:
    """None when the database answers, else what went wrong."""
    try:
        async with hub.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return type(exc).__name__
    return None


async def _broker_down(hub: Hub) -> str | None:
    """None when the job broker answers (the in-process broker always does), else what went wrong."""
    if hub.redis is None:
        return None
    try:
        await hub.redis.ping()
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return None


@get(
    "/metrics",
    opt=OPT,
    tags=["health"],
    summary="Job metrics in the Prometheus text format (aggregates only: no tenant or patient)",
    media_type="text/plain; version=0.0.4",
)
async def metrics_endpoint(state: State) -> Response[str]:
    """Always answers: what cannot be read during an outage (the database's counts, the broker's queues) is left
    out, and ``carehub_database_up`` / ``carehub_broker_up`` say which side is down."""
    hub: Hub = state.hub
    stats = await metrics.collect(hub.db, hub.redis)
    return Response(metrics.prometheus(stats), media_type="text/plain; version=0.0.4")
