"""Audit events below the API: written with the transaction they belong to, in one statement, and only with it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.audit import AuditEvent
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tenants.context import NoTenantContext, network_scope, tenant_context
from tests.conftest import World

ACTOR = audit.Actor(user_id=uuid.uuid4(), roles=("clinician",))


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], list[str]]]:
    """Sessions, and the SQL statements they send that write audit events."""
    engine = make_engine(settings.database_url)
    inserts: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_EVENTS"):
            inserts.append(statement)

    yield make_sessionmaker(engine), inserts
    await engine.dispose()


async def _actions(db: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID) -> list[str]:
    with tenant_context(tenant_id):
        async with db() as session:
            return list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.action)))


async def test_events_commit_with_their_transaction_in_one_statement(
    db: tuple[async_sessionmaker[AsyncSession], list[str]], world: World
) -> None:
    sessions, inserts = db
    with tenant_context(world.tenant_a):
        async with sessions() as session:
            for n in range(3):
                audit.record(session, ACTOR, action=f"test.read.{n}", resource_type="Test", resource_id=uuid.uuid4())
            await session.commit()
    assert len(inserts) == 1
    assert await _actions(sessions, world.tenant_a) == ["test.read.0", "test.read.1", "test.read.2"]
    assert await _actions(sessions, world.tenant_b) == []
    with tenant_context(world.tenant_a):
        async with sessions() as session:
            row = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "test.read.0"))).one()
    assert (row.actor_user_id, row.actor_roles, row.outcome, row.tenant_id) == (
        ACTOR.user_id,
        ["clinician"],
        "success",
        world.tenant_a,
    )
    assert row.at is not None and row.at.tzinfo is not None


async def test_a_rolled_back_transaction_takes_its_events_with_it(
    db: tuple[async_sessionmaker[AsyncSession], list[str]], world: World
) -> None:
    sessions, inserts = db
    with tenant_context(world.tenant_a):
        async with sessions() as session:
            audit.record(session, ACTOR, action="test.before_any_statement", resource_type="Test")
            await session.rollback()
            audit.record(session, ACTOR, action="test.after_a_statement", resource_type="Test")
            await session.rollback()
            audit.record(session, ACTOR, action="test.kept", resource_type="Test")
            await session.commit()
        async with sessions() as session:
            audit.record(session, ACTOR, action="test.closed_without_commit", resource_type="Test")
    assert await _actions(sessions, world.tenant_a) == ["test.kept"]
    assert len(inserts) == 1


async def test_the_transaction_reads_its_own_events(
    db: tuple[async_sessionmaker[AsyncSession], list[str]], world: World
) -> None:
    sessions, _ = db
    with tenant_context(world.tenant_a):
        async with sessions() as session:
            audit.record(session, ACTOR, action="test.first", resource_type="Test")
            count = await session.scalar(select(func.count()).select_from(AuditEvent))
            assert count == 1
            audit.record(session, ACTOR, action="test.second", resource_type="Test")
            actions = list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.action)))
            assert actions == ["test.first", "test.second"]
            await session.rollback()
    assert await _actions(sessions, world.tenant_a) == []


async def test_a_rolled_back_savepoint_takes_its_events_with_it(
    db: tuple[async_sessionmaker[AsyncSession], list[str]], world: World
) -> None:
    sessions, _ = db
    with tenant_context(world.tenant_a):
        async with sessions() as session:
            audit.record(session, ACTOR, action="test.outer", resource_type="Test")
            savepoint = await session.begin_nested()
            audit.record(session, ACTOR, action="test.inside_savepoint", resource_type="Test")
            await savepoint.rollback()
            await session.commit()
    assert await _actions(sessions, world.tenant_a) == ["test.outer"]


async def test_events_keep_the_tenant_rules_of_every_row(
    db: tuple[async_sessionmaker[AsyncSession], list[str]], world: World
) -> None:
    sessions, _ = db
    async with sessions() as session:
        with pytest.raises(NoTenantContext):
            audit.record(session, ACTOR, action="test.no_tenant", resource_type="Test")
    with tenant_context(world.tenant_a):
        async with sessions() as session:
            with pytest.raises(NoTenantContext):
                audit.record(session, ACTOR, action="test.elsewhere", resource_type="Test", tenant_id=world.tenant_b)
            audit.record(session, ACTOR, action="test.here", resource_type="Test", tenant_id=world.tenant_a)
            await session.commit()
    with network_scope("test: an event in a named tenant"):
        async with sessions() as session:
            audit.record(session, audit.SYSTEM, action="test.network", resource_type="Test", tenant_id=world.tenant_b)
            await session.commit()
    assert await _actions(sessions, world.tenant_a) == ["test.here"]
    assert await _actions(sessions, world.tenant_b) == ["test.network"]
