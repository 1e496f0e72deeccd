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
    summary="The database and the job broker are reachable",
    responses={503: ResponseSpec(dict[str, Any], description="Not ready: `checks` says what is unreachable")},
)
async def readyz(state: State) -> Response[dict[str, Any]]:
    hub: Hub = state.hub
    checks: dict[str, str] = {}
    try:
        async with hub.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if hub.redis is not None:
        try:
            await hub.redis.ping()
            checks["broker"] = "ok (redis)"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
    else:
        checks["broker"] = "ok (in-process)"
    if checks["database"] == "ok":
        async with hub.db() as session:
            waiting, dead = await metrics.backlog(session)
        checks["jobs"] = f"ok ({waiting} events waiting in the outbox, {dead} dead letters to look at)"
    ready = all(v.startswith("ok") for v in checks.values())
    return Response({"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503)


@get(
    "/metrics",
    opt=OPT,
    tags=["health"],
    summary="Job metrics in the Prometheus text format (aggregates only: no tenant or patient)",
    media_type="text/plain; version=0.0.4",
)
async def metrics_endpoint(state: State) -> Response[str]:
    hub: Hub = state.hub
    async with hub.db() as session:
        stats = await metrics.collect(session, hub.redis)
    return Response(metrics.prometheus(stats), media_type="text/plain; version=0.0.4")
