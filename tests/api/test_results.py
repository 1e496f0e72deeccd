"""Lab results and education items through the HTTP API: record, list, release, acknowledge, with audit and events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from core.db import make_engine, make_sessionmaker
from core.outbox import OutboxEvent
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World, login
from tests.factories import patient_body


def result_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": "2345-7",
        "display": "Glucose [Mass/volume] in Serum or Plasma",
        "value": "98",
        "unit": "mg/dL",
        "reference_range": "70-99",
        "interpretation": "normal",
        "status": "final",
        "effective_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
    }
    body.update(overrides)
    return body


async def _topics(settings: Settings, tenant_id: uuid.UUID) -> list[str]:
    """The outbox topics written in a tenant, oldest first (read as the relay would)."""
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(tenant_id):
            async with make_sessionmaker(engine)() as session:
                rows = await session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at))
                return [row.topic for row in rows]
    finally:
        await engine.dispose()


async def test_record_list_release_acknowledge(client: AsyncTestClient[Any], world: World, settings: Settings) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    admin = await login(client, "admin.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).json()
    doc_id = next(
        m["user_id"]
        for m in (await client.get("/api/v1/users", headers=admin)).json()["items"]
        if m["email"] == "doc.a@test.example"
    )
    base = f"/api/v1/patients/{patient['id']}/results"

    now = datetime.now(UTC)
    old = await client.post(
        base, json=result_body(effective_at=(now - timedelta(days=3)).isoformat(), ordered_by=doc_id), headers=doc
    )
    assert old.status_code == 201, old.text
    assert old.json()["ordered_by"] == doc_id
    assert old.json()["released_to_patient"] is False and old.json()["acknowledged_at"] is None
    critical = await client.post(
        base,
        json=result_body(code="2823-3", display="Potassium", value="6.9", unit="mmol/L", interpretation="critical"),
        headers=doc,
    )
    assert critical.status_code == 201, critical.text
    result_id = critical.json()["id"]

    listed = (await client.get(base, headers=doc)).json()
    assert [r["id"] for r in listed["items"]] == [result_id, old.json()["id"]], "newest first"
    assert listed["page"] == {"limit": 50, "offset": 0, "next_offset": None}
    only_critical = (await client.get(f"{base}?interpretation=critical", headers=doc)).json()["items"]
    assert [r["id"] for r in only_critical] == [result_id]
    assert (await client.get(f"{base}?interpretation=weird", headers=doc)).status_code == 400
    paged = (await client.get(f"{base}?limit=1", headers=doc)).json()
    assert len(paged["items"]) == 1 and paged["page"]["next_offset"] == 1

    one = await client.get(f"/api/v1/results/{result_id}", headers=doc)
    assert one.status_code == 200 and one.json()["value"] == "6.9"

    released = await client.post(f"/api/v1/results/{result_id}/release", headers=doc)
    assert released.status_code == 200 and released.json()["released_to_patient"] is True
    acked = await client.post(f"/api/v1/results/{result_id}/acknowledge", headers=doc)
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"] == doc_id and acked.json()["acknowledged_at"] is not None
    # A second acknowledgement keeps the first one.
    again = await client.post(f"/api/v1/results/{result_id}/acknowledge", headers=admin)
    assert again.status_code == 200
    assert (again.json()["acknowledged_by"], again.json()["acknowledged_at"]) == (
        doc_id,
        acked.json()["acknowledged_at"],
    )

    topics = await _topics(settings, world.tenant_a)
    assert topics.count("result.created") == 2
    assert topics.count("lab_result.critical_received") == 1
    assert topics.count("result.released") == 1
    assert topics.count("result.acknowledged") == 1

    trail = (await client.get(f"/api/v1/audit-events?patient_id={patient['id']}&limit=100", headers=admin)).json()[
        "items"
    ]
    actions = {e["action"] for e in trail}
    assert {"result.create", "result.list", "result.read", "result.release", "result.acknowledge"} <= actions


async def test_result_input_is_checked(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).json()
    base = f"/api/v1/patients/{patient['id']}/results"

    future = await client.post(
        base, json=result_body(effective_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat()), headers=doc
    )
    assert future.status_code == 422
    assert future.json()["errors"][0]["field"] == "effective_at"
    for ancient in ("1899-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00"):
        refused = await client.post(base, json=result_body(effective_at=ancient), headers=doc)
        assert refused.status_code == 422, (ancient, refused.text)
        assert refused.json()["errors"][0]["field"] == "effective_at"
    naive = await client.post(base, json=result_body(effective_at="2024-01-01T10:00:00"), headers=doc)
    assert naive.status_code == 400
    assert naive.json()["errors"][0]["field"] == "effective_at"
    for field, value in (
        ("code", "glucose"),
        ("interpretation", "high"),
        ("status", "amended"),
        ("display", ""),
        ("value", "x" * 101),
    ):
        bad = await client.post(base, json=result_body(**{field: value}), headers=doc)
        assert bad.status_code == 400, (field, bad.text)
        assert bad.json()["errors"][0]["field"] == field
    unknown = await client.post(base, json=result_body(colour="red"), headers=doc)
    assert unknown.status_code == 400
    stranger = await client.post(base, json=result_body(ordered_by=str(uuid.uuid4())), headers=doc)
    assert stranger.status_code == 422
    assert stranger.json()["errors"][0]["field"] == "ordered_by"
    cancelled_released = await client.post(
        base, json=result_body(status="cancelled", released_to_patient=True), headers=doc
    )
    assert cancelled_released.status_code == 422
    cancelled = (await client.post(base, json=result_body(status="cancelled"), headers=doc)).json()
    refused = await client.post(f"/api/v1/results/{cancelled['id']}/release", headers=doc)
    assert refused.status_code == 409


async def test_education_items(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).json()
    base = f"/api/v1/patients/{patient['id']}/education"

    first = await client.post(
        base, json={"title": "Living with diabetes", "url": "https://example.org/diabetes"}, headers=doc
    )
    assert first.status_code == 201, first.text
    assert first.json()["read_at"] is None and first.json()["assigned_by"] is not None
    by_chw = await client.post(base, json={"title": "Foot care", "body": "Check your feet every day."}, headers=chw)
    assert by_chw.status_code == 201, "a community health worker assigns education"
    listed = (await client.get(base, headers=chw)).json()
    assert [i["title"] for i in listed["items"]] == ["Foot care", "Living with diabetes"]

    for url in ("http://example.org/x", "javascript:alert(1)", "https://user@evil.example/", "ftp://example.org"):
        bad = await client.post(base, json={"title": "x", "url": url}, headers=doc)
        assert bad.status_code == 400, url
        assert bad.json()["errors"][0]["field"] == "url"
    assert (await client.post(base, json={"title": ""}, headers=doc)).status_code == 400


async def test_roles_and_tenants(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    doc_b = await login(client, "doc.b@test.example", world.slug_b)
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).json()
    base = f"/api/v1/patients/{patient['id']}/results"
    result = (await client.post(base, json=result_body(), headers=doc)).json()

    # A community health worker has no permission on results at all.
    assert (await client.get(base, headers=chw)).status_code == 403
    assert (await client.post(base, json=result_body(), headers=chw)).status_code == 403
    assert (await client.get(f"/api/v1/results/{result['id']}", headers=chw)).status_code == 403
    assert (await client.post(f"/api/v1/results/{result['id']}/acknowledge", headers=chw)).status_code == 403

    # Another tenant's patient and result answer exactly like missing ones.
    for method, path, body in (
        ("GET", base, None),
        ("POST", base, result_body()),
        ("GET", f"/api/v1/patients/{patient['id']}/education", None),
        ("POST", f"/api/v1/patients/{patient['id']}/education", {"title": "x"}),
    ):
        foreign = await client.request(method, path, json=body, headers=doc_b)
        missing = await client.request(method, path.replace(patient["id"], str(uuid.uuid4())), json=body, headers=doc_b)
        assert foreign.status_code == missing.status_code == 404, (method, path)
        assert foreign.json()["detail"] == missing.json()["detail"] == "patient not found"
    for suffix, method in (("", "GET"), ("/release", "POST"), ("/acknowledge", "POST")):
        foreign = await client.request(method, f"/api/v1/results/{result['id']}{suffix}", headers=doc_b)
        missing = await client.request(method, f"/api/v1/results/{uuid.uuid4()}{suffix}", headers=doc_b)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["detail"] == missing.json()["detail"] == "lab result not found"
    untouched = (await client.get(f"/api/v1/results/{result['id']}", headers=doc)).json()
    assert untouched["released_to_patient"] is False and untouched["acknowledged_at"] is None
