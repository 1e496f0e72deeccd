"""Regressions found in review, through the HTTP API: blank address parts in FHIR, Bundle links at the edges,
removed staff and the portal's care team, paged thread messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from core.db import make_engine, make_sessionmaker
from core.outbox import OutboxEvent
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World, login, portal_login
from tests.factories import patient_body
from tests.fhir_validate import valid


async def _events(settings: Settings, tenant_id: uuid.UUID, topic: str) -> list[dict[str, Any]]:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(tenant_id):
            async with make_sessionmaker(engine)() as session:
                rows = await session.scalars(
                    select(OutboxEvent).where(OutboxEvent.topic == topic).order_by(OutboxEvent.created_at)
                )
                return [dict(r.payload) for r in rows]
    finally:
        await engine.dispose()


async def _users(client: Any, admin: dict[str, str]) -> dict[str, str]:
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    return {m["email"].split("@")[0]: m["user_id"] for m in members}


def _result() -> dict[str, Any]:
    return {
        "code": "2823-3",
        "display": "Potassium",
        "value": "6.9",
        "unit": "mmol/L",
        "interpretation": "critical",
        "status": "final",
        "effective_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
    }


@pytest.mark.parametrize("address", [{"city": ""}, {"line": [""], "city": "Riverside"}])
async def test_fhir_patient_with_a_blank_address_part_is_valid(client: Any, world: World, address: Any) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    created = await client.post("/api/v1/patients", json=patient_body("B-1", address=address), headers=doc)
    assert created.status_code == 201, created.text
    resource = (await client.get(f"/fhir/Patient/{created.json()['id']}", headers=doc)).json()
    valid(resource)


async def test_fhir_bundle_previous_link_at_the_edges(client: Any, world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    p = (await client.post("/api/v1/patients", json=patient_body("L-1"), headers=doc)).json()
    for i in range(3):
        await client.post("/api/v1/tasks", json={"patient_id": p["id"], "title": f"t{i}"}, headers=doc)

    def links(bundle: dict[str, Any]) -> dict[str, str]:
        return {link["relation"]: link["url"].split("?", 1)[1] for link in bundle["link"]}

    zero = links((await client.get(f"/fhir/Task?patient={p['id']}&_count=0&_offset=5", headers=doc)).json())
    assert zero.get("previous") != zero["self"], "previous points at the page itself: a client following it loops"
    beyond = links((await client.get(f"/fhir/Task?patient={p['id']}&_count=2&_offset=1000", headers=doc)).json())
    assert beyond.get("previous", "").endswith("_offset=1"), f"previous of an empty page past the end: {beyond}"


async def test_removed_staff_are_neither_notified_nor_listed_in_the_portal(
    client: Any, world: World, settings: Settings
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    users = await _users(client, admin)
    p = (await client.post("/api/v1/patients", json=patient_body("R-1"), headers=admin)).json()
    team = await client.post(
        f"/api/v1/patients/{p['id']}/care-team",
        json={"members": [{"user_id": users["chw.a"], "role": "chw"}]},
        headers=admin,
    )
    assert team.status_code == 201, team.text
    portal = await portal_login(client, admin, p["id"], "r1@portal.example", world.slug_a)
    thread = await client.post("/api/v1/portal/threads", json={"subject": "Hi", "body": "Hello"}, headers=portal)
    assert thread.status_code == 201, thread.text
    removed = await client.delete(f"/api/v1/users/{users['chw.a']}", headers=admin)
    assert removed.status_code in (200, 204), removed.text

    reply = await client.post(
        f"/api/v1/portal/threads/{thread.json()['id']}/messages", json={"body": "Still there?"}, headers=portal
    )
    assert reply.status_code == 201, reply.text
    sent = (await _events(settings, world.tenant_a, "message.sent"))[-1]
    me = (await client.get("/api/v1/portal/me", headers=portal)).json()
    again = await client.post("/api/v1/portal/threads", json={"subject": "x", "body": "y"}, headers=portal)
    problems = []
    if users["chw.a"] in sent["recipient_user_ids"]:
        problems.append("a removed staff member is still a recipient of the patient's new message")
    if me["care_team"] and again.status_code == 409:
        problems.append(
            f"portal shows care team {me['care_team']} but writing to it answers {again.json()['detail']!r}"
        )
    assert not problems, problems


async def test_messages_of_a_thread_are_paged(client: Any, world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    p = (await client.post("/api/v1/patients", json=patient_body("M-1"), headers=doc)).json()
    t = (
        await client.post("/api/v1/threads", json={"patient_id": p["id"], "subject": "s", "body": "1"}, headers=doc)
    ).json()
    for i in range(4):
        await client.post(f"/api/v1/threads/{t['id']}/messages", json={"body": str(i)}, headers=doc)
    first = (await client.get(f"/api/v1/threads/{t['id']}/messages?limit=2", headers=doc)).json()
    assert [m["body"] for m in first["items"]] == ["1", "0"] and first["page"]["next_offset"] == 2
    rest = (await client.get(f"/api/v1/threads/{t['id']}/messages?limit=2&offset=4", headers=doc)).json()
    assert [m["body"] for m in rest["items"]] == ["3"] and rest["page"]["next_offset"] is None
