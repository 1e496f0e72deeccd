"""Tasks: templates, the status workflow (illegal moves 409), escalation, comments and work queues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import World, login
from tests.factories import patient_body


def _at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def _ids(client: AsyncTestClient[Any], headers: dict[str, str]) -> dict[str, str]:
    members = (await client.get("/api/v1/users", headers=headers)).json()["items"]
    return {m["email"].split("@")[0]: m["user_id"] for m in members}


async def test_task_workflow(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    users = await _ids(client, admin)
    patient = (await client.post("/api/v1/patients", json=patient_body("TK-1"), headers=admin)).json()

    templates = (await client.get("/api/v1/task-templates", headers=doc)).json()
    assert {"post-discharge-call", "medication-reconciliation", "follow-up-appointment-7d"} <= {
        t["code"] for t in templates
    }
    created = await client.post(
        "/api/v1/tasks",
        headers=admin,
        json={"patient_id": patient["id"], "template_code": "post-discharge-call", "assignee_id": users["doc.a"]},
    )
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["title"] == "Post-discharge follow-up call" and task["priority"] == "urgent"
    assert task["status"] == "requested" and task["owner_id"] == users["admin.a"]
    assert task["patient_name"] == "Ada Lovelace"
    due = datetime.fromisoformat(task["due_at"])
    assert timedelta(hours=47) < due - datetime.now(UTC) <= timedelta(hours=48)

    url = f"/api/v1/tasks/{task['id']}"
    skip = await client.post(f"{url}/transition", headers=doc, json={"status": "completed"})
    assert skip.status_code == 409, skip.text
    assert "requested task cannot become completed" in skip.json()["detail"]
    for status in ("accepted", "in_progress"):
        moved = await client.post(f"{url}/transition", headers=doc, json={"status": status})
        assert moved.status_code == 200 and moved.json()["status"] == status
    no_reason = await client.post(f"{url}/transition", headers=doc, json={"status": "failed"})
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"

    escalated = await client.post(f"{url}/escalate", headers=admin, json={"reason": "No answer after 2 tries"})
    assert escalated.json()["escalation_level"] == 1
    comment = await client.post(f"{url}/comments", headers=doc, json={"body": "Reached daughter, patient doing well."})
    assert comment.status_code == 201
    comments = (await client.get(f"{url}/comments", headers=admin)).json()
    assert [c["body"] for c in comments] == [
        "Escalated: No answer after 2 tries",
        "Reached daughter, patient doing well.",
    ]
    assert comments[1]["author_name"] == "doc_a"

    done = await client.post(f"{url}/transition", headers=doc, json={"status": "completed"})
    assert done.status_code == 200 and done.json()["completed_at"] is not None
    reopen = await client.post(f"{url}/transition", headers=doc, json={"status": "in_progress"})
    assert reopen.status_code == 409 and "closed" in reopen.json()["detail"]
    frozen = await client.patch(url, headers=doc, json={"priority": "stat"})
    assert frozen.status_code == 409

    history = (await client.get(f"{url}/history", headers=admin)).json()
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "requested"),
        ("requested", "accepted"),
        ("accepted", "in_progress"),
        ("in_progress", "completed"),
    ]


async def test_work_queues(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    users = await _ids(client, admin)
    p1 = (await client.post("/api/v1/patients", json=patient_body("TK-2"), headers=admin)).json()
    p2 = (await client.post("/api/v1/patients", json=patient_body("TK-3"), headers=admin)).json()
    team = await client.post(
        f"/api/v1/patients/{p1['id']}/care-team",
        headers=admin,
        json={"members": [{"user_id": users["chw.a"], "role": "chw"}]},
    )
    assert team.status_code == 201

    late = _at(-5)

    async def task(patient: dict[str, Any], title: str, due: str | None, priority: str, **extra: Any) -> str:
        body = {"patient_id": patient["id"], "title": title, "priority": priority, **extra}
        if due is not None:
            body["due_at"] = due
        response = await client.post("/api/v1/tasks", headers=admin, json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["title"])

    await task(p1, "late routine", late, "routine")
    await task(p1, "late stat", late, "stat")
    await task(p1, "soon", _at(2), "routine", assignee_id=users["chw.a"])
    await task(p1, "undated", None, "asap")
    await task(p2, "other patient", _at(1), "urgent")
    await task(p2, "chw owns", _at(30), "routine", owner_id=users["chw.a"])

    async def titles(headers: dict[str, str], query: str) -> list[str]:
        response = await client.get(f"/api/v1/tasks?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [t["title"] for t in response.json()["items"]]

    # Due first (same due time: stat before routine), undated last.
    assert await titles(admin, "queue=mine") == ["late stat", "late routine", "other patient", "soon", "undated"]
    assert await titles(chw, "queue=mine") == ["soon", "chw owns"]
    assert await titles(chw, "queue=team") == ["late stat", "late routine", "soon", "undated"]
    assert await titles(chw, "queue=overdue") == ["late stat", "late routine"]
    assert await titles(admin, f"queue=all&patient_id={p2['id']}") == ["other patient", "chw owns"]
    assert await titles(admin, "queue=all&priority=asap") == ["undated"]
    overdue = (await client.get("/api/v1/tasks?queue=overdue", headers=admin)).json()["items"]
    assert all(t["overdue"] and t["patient_name"] == "Ada Lovelace" for t in overdue)
    bad = await client.get("/api/v1/tasks?queue=everyone", headers=admin)
    assert bad.status_code == 400 and "queue" in bad.text


async def test_bad_task_input(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    b_admin = await login(client, "admin.b@test.example", world.slug_b)
    b_users = await _ids(client, b_admin)
    patient = (await client.post("/api/v1/patients", json=patient_body("TK-4"), headers=admin)).json()
    cases = [
        ({"title": "x", "assignee_id": b_users["doc.b"]}, 422, "assignee_id"),
        ({"template_code": "nope"}, 422, "template_code"),
        ({}, 422, "title"),
        ({"title": "x", "due_at": "2026-12-01T10:00:00"}, 400, "due_at"),
        ({"title": "x", "priority": "whenever"}, 400, "priority"),
    ]
    for extra, status, field in cases:
        response = await client.post("/api/v1/tasks", headers=admin, json={"patient_id": patient["id"], **extra})
        assert response.status_code == status, (extra, response.text)
        assert field in {e["field"] for e in response.json()["errors"]} or field in response.text
    assert (await client.get("/api/v1/tasks?queue=all", headers=admin)).json()["items"] == []
