"""What a running API process holds: settings, the database, the role decision point, the broker link."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.tokens import TokenService
from core.authz import Authorizer, load_rules
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tenants import passwords

log = logging.getLogger("carehub")


def engine_options(settings: Settings) -> dict[str, Any]:
    """Pool size and, on PostgreSQL, server-side timeouts so that no request holds a connection forever."""
    if not settings.is_postgres:
        return {}
    server_settings = {
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(settings.db_idle_in_transaction_timeout_ms),
        "application_name": "carehub",
    }
    return {"pool_size": settings.db_pool_size, "connect_args": {"server_settings": server_settings}}


class UnsafeDatabaseRole(RuntimeError):
    """The application would connect as a role that row-level security does not bind."""


@dataclass
class Hub:
    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    tokens: TokenService
    authorizer: Authorizer | None = None
    redis: Redis | None = field(default=None)
    # Sessions in *other* tenants' contexts, opened while a request holds its own connection (the network view,
    # break-the-glass, the portal's access log). A pool of their own: requests waiting for a second connection
    # from the pool their first one came from could otherwise all wait on each other under load.
    cross_tenant_engine: AsyncEngine | None = field(default=None)
    cross_tenant_db: async_sessionmaker[AsyncSession] | None = field(default=None)
    _jobs: Any = field(default=None, repr=False)

    @classmethod
    def create(cls, settings: Settings) -> Hub:
        passwords.configure(settings.password_time_cost, settings.password_memory_kib)
        engine = make_engine(settings.database_url, **engine_options(settings))
        redis = (
            Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        options = engine_options(settings)
        if "pool_size" in options:
            options["pool_size"] = max(2, settings.db_pool_size // 2)
        cross_tenant_engine = make_engine(settings.database_url, **options)
        return cls(
            settings=settings,
            engine=engine,
            db=make_sessionmaker(engine),
            tokens=TokenService(settings),
            redis=redis,
            cross_tenant_engine=cross_tenant_engine,
            cross_tenant_db=make_sessionmaker(cross_tenant_engine),
        )

    async def start(self) -> None:
        await self.check_database_role()
        async with self.db() as session:
            self.authorizer = Authorizer(await load_rules(session))
        if self.settings.jobs_in_process:
            self._start_jobs()

    def _start_jobs(self) -> None:
        """The embedded default's background work, inside this process: the relay, the event handlers and the
        periodic rules (a single process: no leader election)."""
        import dramatiq

        from core.jobs import scheduler
        from core.jobs.relay import relay_forever
        from core.jobs.runtime import JobRuntime
        from core.notify import delivery
        from core.plugins import sync as plugin_sync

        delivery.configure(self.settings.channel_config)
        plugin_sync.configure(self.settings)
        delivery.configured_channels()  # a bad channel setting stops the start, not the first send
        runtime = JobRuntime(self.settings)
        worker = dramatiq.Worker(runtime.broker, worker_threads=self.settings.job_worker_threads)
        worker.start()
        stop = asyncio.Event()
        relay = asyncio.create_task(
            relay_forever(self.db, runtime, self.settings.relay_interval_ms / 1000, self.settings.relay_batch, stop)
        )
        ticks = asyncio.create_task(scheduler.run(self.db, None, self.settings.scheduler_tick_ms / 1000, stop))
        self._jobs = (runtime, worker, stop, relay, ticks)
        log.info(
            "background jobs run in this process (relay, scheduler and %d handler threads)",
            self.settings.job_worker_threads,
        )

    async def check_database_role(self) -> None:
        """Refuse (in production) to run as a role that row-level security does not bind."""
        if not self.settings.is_postgres:
            return
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT r.rolsuper, r.rolbypassrls, EXISTS (SELECT 1 FROM pg_tables t"
                        " WHERE t.schemaname = current_schema()"
                        " AND pg_has_role(current_user, t.tableowner, 'MEMBER')) AS owns"
                        " FROM pg_roles r WHERE r.rolname = current_user"
                    )
                )
            ).one()
        problems = [
            name
            for name, flag in (
                ("is a superuser", row[0]),
                ("has BYPASSRLS", row[1]),
                ("owns the tables (or is a member of their owner)", row[2]),
            )
            if flag
        ]
        if not problems:
            return
        message = (
            f"CAREHUB_DATABASE_URL: the application's database role {' and '.join(problems)}, so row-level "
            "security does not bind it; connect as a role that does not own the tables and set "
            "CAREHUB_MIGRATION_DATABASE_URL for migrations"
        )
        if self.settings.env == "production":
            raise UnsafeDatabaseRole(message)
        log.warning(message)

    async def stop(self) -> None:
        if self._jobs is not None:
            runtime, worker, stop, relay, ticks = self._jobs
            stop.set()
            await relay
            await ticks
            runtime.close()
            worker.stop()
            runtime.broker.close()
            self._jobs = None
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()
        if self.cross_tenant_engine is not None:
            await self.cross_tenant_engine.dispose()
