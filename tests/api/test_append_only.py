"""Sent messages, their attachments and recorded plan versions cannot be changed or deleted in the database
itself, whatever the code path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World, login
from tests.factories import patient_body


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(settings.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


async def test_messages_and_plan_versions_are_append_only(
    client: AsyncTestClient[Any], world: World, db: async_sessionmaker[AsyncSession]
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body("AO-1"), headers=admin)).json()
    thread = await client.post(
        "/api/v1/threads",
        headers=admin,
        json={
            "patient_id": patient["id"],
            "subject": "Results",
            "body": "Potassium 6.4: please repeat today",
            "attachments": [{"name": "lab.txt", "content_type": "text/plain", "data": "SyA2LjQ="}],
        },
    )
    assert thread.status_code == 201, thread.text
    plan = await client.post("/api/v1/care-plans", headers=admin, json={"patient_id": patient["id"], "title": "P"})
    assert plan.status_code == 201
    forgeries = (
        "UPDATE messages SET body = 'Potassium normal'",
        "UPDATE message_attachments SET sha256 = 'forged'",
        "UPDATE care_plan_versions SET changes = '[]'",
        "DELETE FROM messages",
        "DELETE FROM message_attachments",
        "DELETE FROM care_plan_versions",
    )
    with tenant_context(world.tenant_a):
        for statement in forgeries:
            async with db() as session:
                with pytest.raises((DBAPIError, ProgrammingError)):
                    await session.execute(text(statement))
                await session.rollback()
    messages = (await client.get(f"/api/v1/threads/{thread.json()['id']}/messages", headers=admin)).json()["items"]
    assert messages[0]["body"] == "Potassium 6.4: please repeat today"
    history = (await client.get(f"/api/v1/care-plans/{plan.json()['id']}/versions", headers=admin)).json()
    assert history[0]["changes"] == [{"op": "create"}]
