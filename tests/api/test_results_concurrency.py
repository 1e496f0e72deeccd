"""Two clinicians acknowledge the same result at the same moment: one event, and the first acknowledgement stands."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.db import make_engine, make_sessionmaker
from core.outbox import OutboxEvent
from core.principal import Principal
from core.results import service as results
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World, login
from tests.factories import patient_body


@pytest.mark.postgres_only
@pytest.mark.slow
async def test_two_concurrent_acknowledgements(client: Any, world: World, backend: str, settings: Settings) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    admin = await login(client, "admin.a@test.example", world.slug_a)
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    ids = {m["email"]: uuid.UUID(m["user_id"]) for m in members}
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).json()
    body = {
        "code": "2823-3",
        "display": "Potassium",
        "value": "6.9",
        "interpretation": "critical",
        "status": "final",
        "effective_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
    }
    rid = uuid.UUID(
        (await client.post(f"/api/v1/patients/{patient['id']}/results", json=body, headers=doc)).json()["id"]
    )

    hub = client.app.state.hub

    def who(email: str, role: str) -> Principal:
        return Principal(ids[email], email, email, world.tenant_a, (role,), hub.authorizer, "active")

    first, second = who("doc.a@test.example", "clinician"), who("admin.a@test.example", "tenant_admin")
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    with tenant_context(world.tenant_a):
        s1, s2 = db(), db()
        try:
            await results.acknowledge_result(s1, first, rid)  # row updated, not yet committed
            b_task = asyncio.create_task(results.acknowledge_result(s2, second, rid))  # reads the old row, waits
            await asyncio.sleep(0.3)
            await s1.commit()
            answer = await b_task
            await s2.commit()
        finally:
            await s1.close()
            await s2.close()
        async with db() as s:
            events = list(await s.scalars(select(OutboxEvent).where(OutboxEvent.topic == "result.acknowledged")))
    await engine.dispose()
    assert answer.acknowledged_by == first.user_id  # the second caller is told who acknowledged first
    stored = (await client.get(f"/api/v1/results/{rid}", headers=doc)).json()
    assert (len(events), stored["acknowledged_by"]) == (1, str(first.user_id)), (
        f"{len(events)} events; first caller {first.user_id} told it acknowledged, stored: {stored['acknowledged_by']}"
    )
