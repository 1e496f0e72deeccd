"""Appointments: booking, rescheduling, the status workflow, no-shows recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import World, login
from tests.factories import patient_body


def _at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def test_appointment_workflow(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    doc_id = next(m["user_id"] for m in members if m["email"] == "doc.a@test.example")
    patient = (await client.post("/api/v1/patients", json=patient_body("AP-1"), headers=admin)).json()
    body = {
        "patient_id": patient["id"],
        "participant_id": doc_id,
        "kind": "video",
        "start_at": _at(72),
        "end_at": _at(72.5),
        "video_link": "https://visit.example/room/42",
        "reason": "Heart failure follow-up",
        "reminder": {"channels": ["sms"], "offsets_hours": [48, 2]},
        "staff_note": "Needs interpreter",
    }
    created = await client.post("/api/v1/appointments", headers=admin, json=body)
    assert created.status_code == 201, created.text
    appt = created.json()
    assert appt["status"] == "booked" and appt["reminder"] == {"channels": ["sms"], "offsets_hours": [48, 2]}

    url = f"/api/v1/appointments/{appt['id']}"
    moved = await client.patch(url, headers=admin, json={"start_at": _at(96), "end_at": _at(96.5)})
    assert moved.status_code == 200 and moved.json()["start_at"] != appt["start_at"]
    # It has not started: it cannot be a no-show or arrived yet.
    early = await client.post(f"{url}/status", headers=admin, json={"status": "noshow"})
    assert early.status_code == 409
    fulfilled = await client.post(f"{url}/status", headers=admin, json={"status": "fulfilled"})
    assert fulfilled.status_code == 409 and "booked appointment cannot become fulfilled" in fulfilled.json()["detail"]
    cancel = await client.post(f"{url}/status", headers=admin, json={"status": "cancelled"})
    assert cancel.status_code == 422 and cancel.json()["errors"][0]["field"] == "reason"
    cancelled = await client.post(
        f"{url}/status", headers=admin, json={"status": "cancelled", "reason": "Patient admitted"}
    )
    assert cancelled.status_code == 200 and cancelled.json()["status_reason"] == "Patient admitted"
    assert (await client.patch(url, headers=admin, json={"location": "Room 2"})).status_code == 409

    # A no-show: booked for now, then recorded.
    today = await client.post(
        "/api/v1/appointments",
        headers=admin,
        json={
            **body,
            "kind": "in_person",
            "location": "Clinic B, room 4",
            "video_link": None,
            "start_at": _at(-0.5),
            "end_at": _at(0),
        },
    )
    assert today.status_code == 201, today.text
    noshow = await client.post(
        f"/api/v1/appointments/{today.json()['id']}/status", headers=admin, json={"status": "noshow"}
    )
    assert noshow.status_code == 200 and noshow.json()["noshow_recorded_at"] is not None

    listed = (await client.get(f"/api/v1/appointments?patient_id={patient['id']}&status=noshow", headers=admin)).json()
    assert [a["id"] for a in listed["items"]] == [today.json()["id"]]
    window = await client.get(
        "/api/v1/appointments", headers=admin, params={"from": _at(24), "to": _at(200), "patient_id": patient["id"]}
    )
    assert [a["id"] for a in window.json()["items"]] == [appt["id"]]
    naive = await client.get("/api/v1/appointments", headers=admin, params={"from": "2026-12-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "from"
    # A malformed parameter is named as the caller wrote it, not as the code calls it.
    garbled = await client.get("/api/v1/appointments", headers=admin, params={"to": "next week"})
    assert garbled.status_code == 400 and garbled.json()["errors"][0]["field"] == "to"


async def test_bad_appointments(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    doc_id = next(m["user_id"] for m in members if m["email"] == "doc.a@test.example")
    patient = (await client.post("/api/v1/patients", json=patient_body("AP-2"), headers=admin)).json()
    base = {
        "patient_id": patient["id"],
        "participant_id": doc_id,
        "kind": "phone",
        "start_at": _at(5),
        "end_at": _at(6),
    }
    cases = [
        ({"end_at": _at(4)}, 422, "end_at"),
        ({"kind": "video"}, 422, "video_link"),
        ({"kind": "in_person"}, 422, "location"),
        ({"video_link": "http://insecure.example"}, 400, "video_link"),
        ({"participant_id": patient["id"]}, 422, "participant_id"),
        ({"status": "fulfilled"}, 400, "status"),
        ({"reminder": {"channels": ["pigeon"]}}, 400, "reminder"),
    ]
    for extra, status, field in cases:
        response = await client.post("/api/v1/appointments", headers=admin, json={**base, **extra})
        assert response.status_code == status, (extra, response.text)
        assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.text
    assert (await client.get("/api/v1/appointments", headers=admin)).json()["items"] == []
