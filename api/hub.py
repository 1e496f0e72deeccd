"""What a running API process holds: settings, the database, the role decision point, the broker link."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.tokens import TokenService
from core.authz import Authorizer, load_rules
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tenants import passwords


@dataclass
class Hub:
    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    tokens: TokenService
    authorizer: Authorizer | None = None
    redis: Redis | None = field(default=None)

    @classmethod
    def create(cls, settings: Settings) -> Hub:
        passwords.configure(settings.password_time_cost, settings.password_memory_kib)
        engine = make_engine(settings.database_url)
        redis = (
            Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        return cls(
            settings=settings, engine=engine, db=make_sessionmaker(engine), tokens=TokenService(settings), redis=redis
        )

    async def start(self) -> None:
        async with self.db() as session:
            self.authorizer = Authorizer(await load_rules(session))

    async def stop(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()
