"""Edge cases found in review: unsafe template schemas, calendar edges, silent reads, sizes, dates in the past."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import World, login
from tests.factories import patient_body

Client = AsyncTestClient[Any]


def _at(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def _setup(client: Client, world: World) -> tuple[dict[str, str], str, str]:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body("EC-1"), headers=admin)).json()
    me = (await client.get("/api/v1/auth/me", headers=admin)).json()
    return admin, patient["id"], me["user_id"]


async def test_unsafe_template_schemas_are_refused_up_front(client: Client, world: World) -> None:
    admin, _patient, _me = await _setup(client, world)
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(300):
        deep = {"type": "object", "properties": {"a": deep}}
    cases = {
        "missing-ref": ({"type": "object", "properties": {"a": {"$ref": "#/$defs/nope"}}}, ".properties.a.$ref"),
        "self-ref": ({"type": "object", "$ref": "#"}, ".$ref"),
        "cycle": (
            {"type": "object", "$defs": {"x": {"$ref": "#/$defs/x"}}, "properties": {"a": {"$ref": "#/$defs/x"}}},
            ".$defs.x.$ref",
        ),
        "dynamic-ref": (
            {"type": "object", "properties": {"a": {"$dynamicRef": "https://x.example/s"}}},
            ".$dynamicRef",
        ),
        # A backtracking pattern would stall the server for every tenant: regular expressions are refused.
        "redos": ({"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}, ".pattern"),
        "deep": (deep, ""),
    }
    for code, (schema, suffix) in cases.items():
        made = await client.post(
            "/api/v1/care-plan-templates", json={"code": code, "name": code, "structured_schema": schema}, headers=admin
        )
        assert made.status_code == 422, (code, made.text)
        field = made.json()["errors"][0]["field"]
        assert field.startswith("structured_schema") and field.endswith(suffix), (code, field)
    # Names that look like keywords are fine as property names; local $defs references work.
    fine = {
        "type": "object",
        "$defs": {"med": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
        "properties": {"pattern": {"type": "string"}, "meds": {"type": "array", "items": {"$ref": "#/$defs/med"}}},
    }
    made = await client.post(
        "/api/v1/care-plan-templates", json={"code": "fine", "name": "Fine", "structured_schema": fine}, headers=admin
    )
    assert made.status_code == 201, made.text
    plan = await client.post(
        "/api/v1/care-plans",
        json={"patient_id": _patient, "template_id": made.json()["id"], "structured": {"meds": [{}]}},
        headers=admin,
    )
    assert plan.status_code == 422 and plan.json()["errors"][0]["field"] == "structured.meds[0].name"


async def test_times_at_the_calendar_edges_are_refused(client: Client, world: World) -> None:
    admin, patient, me = await _setup(client, world)
    appointment = {"patient_id": patient, "participant_id": me, "kind": "phone"}
    answers = [
        (await client.post("/api/v1/tasks", json={"patient_id": patient, "title": "t", "due_at": when}, headers=admin))
        for when in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00", "2500-01-01T00:00:00Z")
    ]
    answers.append(
        await client.post(
            "/api/v1/appointments",
            json={**appointment, "start_at": "9999-12-31T20:00:00-05:00", "end_at": "9999-12-31T21:00:00-05:00"},
            headers=admin,
        )
    )
    answers.append(await client.get("/api/v1/appointments?from=9999-12-31T23:00:00-05:00", headers=admin))
    assert [(a.status_code, a.json()["errors"][0]["field"]) for a in answers] == [
        (422, "due_at"),
        (422, "due_at"),
        (422, "due_at"),
        (422, "start_at"),
        (422, "from"),
    ]
    # Stored times are UTC whatever offset they came with.
    task = await client.post(
        "/api/v1/tasks",
        json={"patient_id": patient, "title": "t", "due_at": "2026-12-01T09:00:00+02:00"},
        headers=admin,
    )
    assert task.json()["due_at"].startswith("2026-12-01T07:00:00")


async def test_appointments_cannot_move_into_the_past(client: Client, world: World) -> None:
    admin, patient, me = await _setup(client, world)
    made = await client.post(
        "/api/v1/appointments",
        json={
            "patient_id": patient,
            "participant_id": me,
            "kind": "phone",
            "start_at": _at(days=1),
            "end_at": _at(days=1, minutes=30),
        },
        headers=admin,
    )
    moved = await client.patch(
        f"/api/v1/appointments/{made.json()['id']}",
        json={"start_at": "2001-01-01T09:00:00Z", "end_at": "2001-01-01T09:30:00Z"},
        headers=admin,
    )
    assert moved.status_code == 422 and moved.json()["errors"][0]["field"] == "start_at"


async def test_an_update_that_changes_nothing_is_still_an_audited_read(client: Client, world: World) -> None:
    admin, patient, _me = await _setup(client, world)
    plan = (
        await client.post(
            "/api/v1/care-plans",
            json={"patient_id": patient, "title": "P", "staff_note": "note", "goals": [{"description": "g"}]},
            headers=admin,
        )
    ).json()

    async def trail() -> int:
        events = (await client.get(f"/api/v1/audit-events?patient_id={patient}&limit=100", headers=admin)).json()
        return sum(1 for e in events["items"] if e["resource_id"] == plan["id"])

    before = await trail()
    assert (await client.patch(f"/api/v1/care-plans/{plan['id']}", json={"title": "P"}, headers=admin)).json()[
        "version"
    ] == 1
    await client.patch(f"/api/v1/care-plans/{plan['id']}/goals/{plan['goals'][0]['id']}", json={}, headers=admin)
    assert await trail() == before + 2


async def test_attachment_sizes(client: Client, world: World) -> None:
    admin, patient, _me = await _setup(client, world)

    def attachment(size: int) -> dict[str, str]:
        return {"name": "scan.pdf", "content_type": "application/pdf", "data": base64.b64encode(b"x" * size).decode()}

    body = {"patient_id": patient, "subject": "Scans", "body": "Discharge letter attached"}
    # Larger than the general request cap, within the per-attachment limit: accepted.
    one = await client.post("/api/v1/threads", json={**body, "attachments": [attachment(3_000_000)]}, headers=admin)
    assert one.status_code == 201, one.text
    # Each one allowed, together too much: refused naming the attachment that tipped it over.
    three = await client.post(
        "/api/v1/threads",
        json={**body, "attachments": [attachment(5_000_000), attachment(5_000_000), attachment(600_000)]},
        headers=admin,
    )
    assert three.status_code == 422 and three.json()["errors"][0]["field"] == "attachments[2].data"
    listed = (await client.get(f"/api/v1/threads?patient_id={patient}", headers=admin)).json()["items"]
    assert len(listed) == 1
