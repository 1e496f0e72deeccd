"""The patient portal through the HTTP API: a patient sees their own record, and nothing of anyone else's.

Records are made through the staff API, as staff would; the patient signs in with a portal account.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import World, login, portal_login
from tests.factories import patient_body

Client = AsyncTestClient[Any]
PORTAL = "/api/v1/portal"


def _at(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def _patient(client: Client, staff: dict[str, str], mrn: str, **fields: Any) -> str:
    created = await client.post("/api/v1/patients", json=patient_body(mrn, **fields), headers=staff)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _plan(client: Client, staff: dict[str, str], patient_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "patient_id": patient_id,
        "title": "Diabetes care",
        "status": "active",
        "staff_note": "Patient finds insulin frightening; go slowly.",
        "goals": [{"description": "HbA1c below 7%", "measure": "HbA1c", "target_value": "<7%"}],
        "activities": [{"kind": "education", "description": "Diet class"}],
        **fields,
    }
    created = await client.post("/api/v1/care-plans", json=body, headers=staff)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _user_id(client: Client, admin: dict[str, str], email: str) -> str:
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    return str(next(m["user_id"] for m in members if m["email"] == email))


async def _hidden(client: Client, headers: dict[str, str], method: str, path: str, foreign_id: str) -> None:
    """``path`` with ``foreign_id`` answers exactly as with an id that does not exist: 404, same detail."""
    foreign = await client.request(method, path, headers=headers)
    missing = await client.request(method, path.replace(foreign_id, str(uuid.uuid4())), headers=headers)
    assert foreign.status_code == 404, (method, path, foreign.text)
    assert (foreign.status_code, foreign.json()["detail"]) == (missing.status_code, missing.json()["detail"])


async def test_patient_sees_own_details_and_plans(client: Client, world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    ada = await _patient(client, admin, "P-1", email="ada@patients.example")
    grace = await _patient(client, admin, "P-2", given_name="Grace", family_name="Hopper")
    doc_id = await _user_id(client, admin, "doc.a@test.example")
    team = await client.post(
        f"/api/v1/patients/{ada}/care-team",
        json={
            "members": [
                {"user_id": doc_id, "role": "primary_care", "is_lead": True},
                {"name": "Mary Shelley", "role": "caregiver", "phone": "+1 555 0199"},
            ]
        },
        headers=admin,
    )
    assert team.status_code == 201, team.text
    active = await _plan(client, admin, ada)
    draft = await _plan(client, admin, ada, title="Next year", status="draft")
    revoked = await _plan(client, admin, ada, title="Withdrawn")
    withdraw = await client.patch(f"/api/v1/care-plans/{revoked['id']}", json={"status": "revoked"}, headers=admin)
    assert withdraw.status_code == 200, withdraw.text
    graces = await _plan(client, admin, grace, title="Grace's plan")
    portal = await portal_login(client, admin, ada, "ada@portal.example", world.slug_a)

    me = await client.get(f"{PORTAL}/me", headers=portal)
    assert me.status_code == 200, me.text
    assert me.json() == {
        "given_name": "Ada",
        "family_name": "Lovelace",
        "birth_date": "1961-12-10",
        "phone": "+1 555 0100",
        "email": "ada@patients.example",
        "address": {"line": ["1 Elm St"], "city": "Riverside", "country": "US"},
        "language": "en",
        "care_team": [
            {"name": "doc_a", "role": "primary_care", "is_lead": True},
            {"name": "Mary Shelley", "role": "caregiver", "is_lead": False},
        ],
    }

    plans = await client.get(f"{PORTAL}/care-plans", headers=portal)
    assert plans.status_code == 200, plans.text
    assert [p["id"] for p in plans.json()["items"]] == [active["id"]], "no drafts, no revoked plans, no one else's"
    plan = (await client.get(f"{PORTAL}/care-plans/{active['id']}", headers=portal)).json()
    assert plan["title"] == "Diabetes care" and plan["status"] == "active"
    assert "staff_note" not in plan and "author_id" not in plan and "patient_id" not in plan
    assert "Patient finds insulin frightening" not in str(plans.json()) + str(plan)
    assert [g["description"] for g in plan["goals"]] == ["HbA1c below 7%"]
    assert plan["goals"][0]["target_value"] == "<7%"
    assert [(a["kind"], a["description"]) for a in plan["activities"]] == [("education", "Diet class")]

    # A draft, a revoked plan and another patient's plan answer exactly like a plan that does not exist.
    for hidden in (draft["id"], revoked["id"], graces["id"]):
        await _hidden(client, portal, "GET", f"{PORTAL}/care-plans/{hidden}", hidden)
    # A plan made active shows up.
    published = await client.patch(f"/api/v1/care-plans/{draft['id']}", json={"status": "active"}, headers=admin)
    assert published.status_code == 200, published.text
    assert (await client.get(f"{PORTAL}/care-plans/{draft['id']}", headers=portal)).status_code == 200

    # Every portal read is in the patient's audit trail, with the patient as actor.
    trail = (await client.get(f"/api/v1/audit-events?patient_id={ada}&limit=100", headers=admin)).json()["items"]
    portal_reads = {e["action"] for e in trail if e["actor_roles"] == ["patient"]}
    assert {"portal.me.read", "portal.care_plans.read", "portal.care_plan.read"} <= portal_reads


async def test_portal_token_cannot_use_staff_routes(client: Client, world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    ada = await _patient(client, admin, "P-1")
    grace = await _patient(client, admin, "P-2")
    plan = await _plan(client, admin, ada)
    portal = await portal_login(client, admin, ada, "ada@portal.example", world.slug_a)

    for method, path, body in (
        ("GET", f"/api/v1/patients/{ada}", None),
        ("GET", f"/api/v1/patients/{grace}", None),
        ("GET", "/api/v1/patients", None),
        ("PATCH", f"/api/v1/patients/{ada}", {"given_name": "Eve"}),
        ("GET", f"/api/v1/care-plans/{plan['id']}", None),
        ("GET", f"/api/v1/patients/{ada}/results", None),
        ("GET", f"/api/v1/patients/{ada}/education", None),
        ("POST", f"/api/v1/patients/{ada}/education", {"title": "x"}),
    ):
        refused = await client.request(method, path, json=body, headers=portal)
        assert refused.status_code == 403, (method, path, refused.text)
    # ... and a staff token cannot use the portal.
    assert (await client.get(f"{PORTAL}/me", headers=admin)).status_code == 403
    assert (await client.get(f"{PORTAL}/care-plans", headers=admin)).status_code == 403


async def test_tasks_and_appointments(client: Client, world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    ada = await _patient(client, admin, "P-1")
    grace = await _patient(client, admin, "P-2")
    doc_id = await _user_id(client, admin, "doc.a@test.example")

    async def task(patient_id: str, title: str, **fields: Any) -> str:
        body = {"patient_id": patient_id, "title": title, **fields}
        created = await client.post("/api/v1/tasks", json=body, headers=admin)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    later = await task(ada, "Walk 30 minutes a day", for_patient=True, due_at=_at(days=3))
    soon = await task(ada, "Check your blood sugar", for_patient=True, due_at=_at(days=1))
    dropped = await task(ada, "Fill in the diary", for_patient=True)
    cancel = await client.post(
        f"/api/v1/tasks/{dropped}/transition",
        json={"status": "cancelled", "reason": "Patient refused: too much paperwork"},
        headers=admin,
    )
    assert cancel.status_code == 200, cancel.text
    await task(ada, "Call the insurer about prior authorisation")  # staff work, not for the patient
    await task(grace, "Grace's exercise", for_patient=True)

    async def appointment(patient_id: str, days: float, **fields: Any) -> str:
        body = {
            "patient_id": patient_id,
            "participant_id": doc_id,
            "kind": "in_person",
            "start_at": _at(days=days),
            "end_at": _at(days=days, minutes=30),
            "location": "Clinic room 4",
            "reason": "Diabetes review",
            "staff_note": "Bring up the missed appointments.",
            **fields,
        }
        created = await client.post("/api/v1/appointments", json=body, headers=admin)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    in_three = await appointment(ada, 3)
    tomorrow = await appointment(ada, 1, kind="video", video_link="https://video.example/room/1")
    called_off = await appointment(ada, 2)
    cancelled = await client.post(
        f"/api/v1/appointments/{called_off}/status",
        json={"status": "cancelled", "reason": "Doctor away"},
        headers=admin,
    )
    assert cancelled.status_code == 200, cancelled.text
    await appointment(grace, 1)

    portal = await portal_login(client, admin, ada, "ada@portal.example", world.slug_a)
    tasks = await client.get(f"{PORTAL}/tasks", headers=portal)
    assert tasks.status_code == 200, tasks.text
    items = tasks.json()["items"]
    assert [t["id"] for t in items] == [soon, later, dropped], "only the patient's own tasks, open ones first"
    assert items[0]["title"] == "Check your blood sugar" and items[0]["overdue"] is False
    assert items[2]["status"] == "cancelled"
    for item in items:
        assert not {"owner_id", "assignee_id", "escalation_level", "patient_id", "care_plan_id"} & item.keys()

    visits = await client.get(f"{PORTAL}/appointments", headers=portal)
    assert visits.status_code == 200, visits.text
    items = visits.json()["items"]
    assert [a["id"] for a in items] == [tomorrow, in_three, called_off], "upcoming first, soonest first"
    assert items[0]["participant_name"] == "doc_a" and items[0]["video_link"] == "https://video.example/room/1"
    assert items[2]["status"] == "cancelled"
    for item in items:
        assert "staff_note" not in item and "participant_id" not in item and "reminder" not in item
    assert "missed appointments" not in visits.text
    assert "paperwork" not in tasks.text, "the staff's reason for cancelling stays with staff"


async def test_results_and_education(client: Client, world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    ada = await _patient(client, admin, "P-1")
    grace = await _patient(client, admin, "P-2")

    async def result(patient_id: str, display: str, hours_ago: float, **fields: Any) -> str:
        body = {
            "code": "2345-7",
            "display": display,
            "value": "98",
            "unit": "mg/dL",
            "interpretation": "normal",
            "status": "final",
            "effective_at": _at(hours=-hours_ago),
            **fields,
        }
        created = await client.post(f"/api/v1/patients/{patient_id}/results", json=body, headers=admin)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    older = await result(ada, "Glucose (March)", 48, released_to_patient=True)
    newer = await result(ada, "Glucose (April)", 2)
    await result(ada, "Potassium", 1, interpretation="critical")  # not released: the doctor calls first
    await result(ada, "Cancelled draw", 3, status="cancelled")
    await result(grace, "Grace's glucose", 1, released_to_patient=True)
    portal = await portal_login(client, admin, ada, "ada@portal.example", world.slug_a)

    seen = (await client.get(f"{PORTAL}/results", headers=portal)).json()["items"]
    assert [r["display"] for r in seen] == ["Glucose (March)"], "only results released to the patient"
    assert (await client.post(f"/api/v1/results/{newer}/release", headers=admin)).status_code == 200
    seen = (await client.get(f"{PORTAL}/results", headers=portal)).json()["items"]
    assert [r["id"] for r in seen] == [newer, older], "newest first"
    assert not {"acknowledged_by", "ordered_by", "released_to_patient", "patient_id"} & seen[0].keys()

    async def teach(patient_id: str, title: str) -> str:
        created = await client.post(
            f"/api/v1/patients/{patient_id}/education",
            json={"title": title, "url": "https://example.org/leaflet"},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    leaflet = await teach(ada, "Living with diabetes")
    graces = await teach(grace, "Grace's leaflet")
    items = (await client.get(f"{PORTAL}/education", headers=portal)).json()["items"]
    assert [(i["id"], i["read_at"]) for i in items] == [(leaflet, None)]
    marked = await client.post(f"{PORTAL}/education/{leaflet}/read", headers=portal)
    assert marked.status_code == 200, marked.text
    read_at = marked.json()["read_at"]
    assert read_at is not None
    again = await client.post(f"{PORTAL}/education/{leaflet}/read", headers=portal)
    assert again.json()["read_at"] == read_at, "the first reading time stands"
    staff_view = (await client.get(f"/api/v1/patients/{ada}/education", headers=admin)).json()["items"]
    assert staff_view[0]["read_at"] == read_at, "staff see that the patient read it"
    await _hidden(client, portal, "POST", f"{PORTAL}/education/{graces}/read", graces)
    untouched = (await client.get(f"/api/v1/patients/{grace}/education", headers=admin)).json()["items"]
    assert untouched[0]["read_at"] is None


async def test_another_tenants_records_are_missing(client: Client, world: World) -> None:
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    admin_b = await login(client, "admin.b@test.example", world.slug_b)
    ada = await _patient(client, admin_a, "P-1")
    # The same MRN and name in tenant B: another record, which Ada's portal account never reaches.
    b_patient = await _patient(client, admin_b, "P-1")
    b_plan = await _plan(client, admin_b, b_patient)
    b_item = await client.post(f"/api/v1/patients/{b_patient}/education", json={"title": "B"}, headers=admin_b)
    assert b_item.status_code == 201, b_item.text
    b_thread = await client.post(
        "/api/v1/threads",
        json={"patient_id": b_patient, "subject": "Hello", "body": "From B", "include_patient": True},
        headers=admin_b,
    )
    assert b_thread.status_code == 201, b_thread.text
    b_thread_id = b_thread.json()["id"]
    portal = await portal_login(client, admin_a, ada, "ada@portal.example", world.slug_a)

    await _hidden(client, portal, "GET", f"{PORTAL}/care-plans/{b_plan['id']}", b_plan["id"])
    await _hidden(client, portal, "POST", f"{PORTAL}/education/{b_item.json()['id']}/read", b_item.json()["id"])
    for method, suffix in (("GET", ""), ("GET", "/messages"), ("POST", "/read")):
        await _hidden(client, portal, method, f"{PORTAL}/threads/{b_thread_id}{suffix}", b_thread_id)
    reply = await client.post(f"{PORTAL}/threads/{b_thread_id}/messages", json={"body": "hi"}, headers=portal)
    assert reply.status_code == 404
    for listing in ("care-plans", "education", "threads", "results"):
        assert (await client.get(f"{PORTAL}/{listing}", headers=portal)).json()["items"] == [], listing
    # Signing in to tenant B with the portal account is refused: it belongs to tenant A only.
    refused = await client.post(
        "/api/v1/auth/token",
        json={"email": "ada@portal.example", "password": "correct-horse-battery", "tenant": world.slug_b},
    )
    assert refused.status_code in (401, 403), refused.text


async def test_threads_with_the_care_team(client: Client, world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    ada = await _patient(client, admin, "P-1")
    grace = await _patient(client, admin, "P-2")
    doc_id = await _user_id(client, admin, "doc.a@test.example")
    team = await client.post(
        f"/api/v1/patients/{ada}/care-team",
        json={"members": [{"user_id": doc_id, "role": "primary_care"}]},
        headers=admin,
    )
    assert team.status_code == 201, team.text
    letter = b"%PDF-1.4 your results"
    pdf = {"name": "results.pdf", "content_type": "application/pdf", "data": base64.b64encode(letter).decode()}

    async def staff_thread(patient_id: str, subject: str, include_patient: bool) -> str:
        body = {
            "patient_id": patient_id,
            "subject": subject,
            "body": f"About: {subject}",
            "include_patient": include_patient,
            "attachments": [pdf],
        }
        created = await client.post("/api/v1/threads", json=body, headers=doc)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    shared = await staff_thread(ada, "Your lab results", include_patient=True)
    staff_only = await staff_thread(ada, "Housing concerns", include_patient=False)
    graces = await staff_thread(grace, "Grace's results", include_patient=True)
    portal = await portal_login(client, admin, ada, "ada@portal.example", world.slug_a)

    listed = await client.get(f"{PORTAL}/threads", headers=portal)
    assert listed.status_code == 200, listed.text
    threads = listed.json()["items"]
    assert [t["id"] for t in threads] == [shared], "only threads about the patient that include the patient"
    assert threads[0]["unread_count"] == 1
    assert sorted((p["name"], p["is_patient"]) for p in threads[0]["participants"]) == [
        ("Ada Lovelace", True),
        ("doc_a", False),
    ]
    assert all("user_id" not in p for p in threads[0]["participants"]) and "created_by" not in threads[0]

    # A staff-only thread about the same patient, and another patient's thread, answer like missing ones.
    for hidden in (staff_only, graces):
        for method, suffix in (("GET", ""), ("GET", "/messages"), ("POST", "/read")):
            await _hidden(client, portal, method, f"{PORTAL}/threads/{hidden}{suffix}", hidden)
        reply = await client.post(f"{PORTAL}/threads/{hidden}/messages", json={"body": "me too"}, headers=portal)
        assert reply.status_code == 404
    hidden_messages = (await client.get(f"/api/v1/threads/{staff_only}/messages", headers=doc)).json()["items"]
    hidden_file = hidden_messages[0]["attachments"][0]["id"]
    await _hidden(client, portal, "GET", f"{PORTAL}/threads/{shared}/attachments/{hidden_file}", hidden_file)

    messages = (await client.get(f"{PORTAL}/threads/{shared}/messages", headers=portal)).json()["items"]
    assert [m["body"] for m in messages] == ["About: Your lab results"]
    assert messages[0]["author"]["name"] == "doc_a" and "user_id" not in messages[0]["author"]
    file = messages[0]["attachments"][0]
    assert file["sha256"] == hashlib.sha256(letter).hexdigest()
    download = await client.get(f"{PORTAL}/threads/{shared}/attachments/{file['id']}", headers=portal)
    assert download.status_code == 200, download.text
    assert download.content == letter
    assert download.headers["content-disposition"].startswith("attachment;")

    reply = await client.post(f"{PORTAL}/threads/{shared}/messages", json={"body": "Thank you!"}, headers=portal)
    assert reply.status_code == 201, reply.text
    assert reply.json()["author"]["is_patient"] is True
    read = await client.post(f"{PORTAL}/threads/{shared}/read", headers=portal)
    assert read.status_code == 200 and read.json()["unread_count"] == 0
    seen_by_staff = (await client.get(f"/api/v1/threads/{shared}/messages", headers=doc)).json()["items"]
    assert [(m["body"], m["author"]["is_patient"]) for m in seen_by_staff][-1] == ("Thank you!", True)

    # The patient starts a thread: it goes to their care team; they cannot pick the patient or the people.
    started = await client.post(
        f"{PORTAL}/threads", json={"subject": "Side effects", "body": "I feel dizzy."}, headers=portal
    )
    assert started.status_code == 201, started.text
    assert sorted((p["name"], p["is_patient"]) for p in started.json()["participants"]) == [
        ("Ada Lovelace", True),
        ("doc_a", False),
    ]
    inbox = (await client.get("/api/v1/threads", headers=doc)).json()["items"]
    assert started.json()["id"] in [t["id"] for t in inbox]
    for extra in ({"patient_id": grace}, {"participant_user_ids": [doc_id]}, {"include_patient": False}):
        refused = await client.post(f"{PORTAL}/threads", json={"subject": "x", "body": "y", **extra}, headers=portal)
        assert refused.status_code == 400, (extra, refused.text)
    assert len((await client.get(f"{PORTAL}/threads", headers=portal)).json()["items"]) == 2
