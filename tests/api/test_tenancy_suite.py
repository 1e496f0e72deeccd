"""The tenancy suite: every route that takes an id, tried with another tenant's token, answers exactly as
for an id that does not exist (404, same detail). New routes are picked up from the route table: a route
whose id kind is unknown here fails the suite until it is added to ``OTHER_TENANT_IDS``."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from core.alerts.models import Alert
from core.db import make_engine, make_sessionmaker
from core.jobs.models import DeadLetter
from core.notify.models import Notification
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World, login, portal_login
from tests.factories import patient_body

# Bodies valid in shape, so that the request reaches the lookup (and would change the record if found).
BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/api/v1/patients/{patient_id:uuid}/notification-preferences"): {
        "channels": ["sms"],
        "phone": "+15550001111",
    },
    ("PATCH", "/api/v1/patients/{patient_id:uuid}"): {"given_name": "Hijacked"},
    ("PUT", "/api/v1/users/{user_id:uuid}/roles"): {"roles": ["tenant_admin"]},
    ("POST", "/api/v1/patients/{patient_id:uuid}/portal-invitation"): {"email": "intruder@a.example"},
    ("POST", "/api/v1/patients/{patient_id:uuid}/care-team"): {},
    ("POST", "/api/v1/care-teams/{care_team_id:uuid}/members"): {"name": "Intruder", "role": "other"},
    ("PATCH", "/api/v1/care-teams/{care_team_id:uuid}/members/{member_id:uuid}"): {"role": "other"},
    ("PATCH", "/api/v1/care-plans/{plan_id:uuid}"): {"title": "Hijacked"},
    ("PATCH", "/api/v1/care-plan-templates/{template_id:uuid}"): {"active": False},
    ("POST", "/api/v1/care-plans/{plan_id:uuid}/goals"): {"description": "Hijacked"},
    ("PATCH", "/api/v1/care-plans/{plan_id:uuid}/goals/{goal_id:uuid}"): {"description": "Hijacked"},
    ("POST", "/api/v1/care-plans/{plan_id:uuid}/activities"): {"kind": "other", "description": "Hijacked"},
    ("PATCH", "/api/v1/care-plans/{plan_id:uuid}/activities/{activity_id:uuid}"): {"description": "Hijacked"},
    ("PATCH", "/api/v1/tasks/{task_id:uuid}"): {"title": "Hijacked"},
    ("POST", "/api/v1/tasks/{task_id:uuid}/transition"): {"status": "accepted"},
    ("POST", "/api/v1/tasks/{task_id:uuid}/escalate"): {"reason": "Hijacked"},
    ("POST", "/api/v1/tasks/{task_id:uuid}/comments"): {"body": "Hijacked"},
    ("PATCH", "/api/v1/appointments/{appointment_id:uuid}"): {"reason": "Hijacked"},
    ("POST", "/api/v1/appointments/{appointment_id:uuid}/status"): {"status": "cancelled", "reason": "Hijacked"},
    ("POST", "/api/v1/threads/{thread_id:uuid}/participants"): {"user_id": str(uuid.uuid4())},
    ("POST", "/api/v1/threads/{thread_id:uuid}/messages"): {"body": "Hijacked"},
    ("PATCH", "/api/v1/threads/{thread_id:uuid}/messages/{message_id:uuid}"): {"body": "Hijacked"},
    ("POST", "/api/v1/patients/{patient_id:uuid}/results"): {
        "code": "2345-7",
        "display": "Glucose",
        "value": "99",
        "interpretation": "normal",
        "status": "final",
        "effective_at": "2026-01-01T08:00:00Z",
    },
    ("POST", "/api/v1/patients/{patient_id:uuid}/education"): {"title": "Hijacked"},
    ("POST", "/api/v1/portal/threads/{thread_id:uuid}/messages"): {"body": "Hijacked"},
    ("POST", "/api/v1/patients/{patient_id:uuid}/consents"): {
        "grantee": {"kind": "treating"},
        "categories": ["care_plan"],
        "purposes": ["treatment"],
        "period_start": "2026-01-01T00:00:00Z",
        "source_kind": "scanned_form",
    },
    ("POST", "/api/v1/consents/{consent_id:uuid}/revoke"): {"reason": "Hijacked"},
    ("POST", "/api/v1/portal/consents/{consent_id:uuid}/revoke"): {"reason": "Hijacked"},
    ("POST", "/api/v1/patients/{patient_id:uuid}/break-glass"): {"reason": "Hijacked emergency access"},
    ("PUT", "/api/v1/patients/{patient_id:uuid}/primary-care"): {"primary_care": False},
    ("POST", "/api/v1/patients/{patient_id:uuid}/discharges"): {
        "admitted_at": "2026-01-01T08:00:00Z",
        "discharged_at": "2026-01-02T08:00:00Z",
    },
    ("POST", "/api/v1/patients/{patient_id:uuid}/link"): {"person_id": str(uuid.uuid4())},
}
# Portal routes are walked with a tenant-A patient's token (staff have no portal permission).
PORTAL_ROUTES = re.compile(r"^/api/v1/portal/")
# Routes that address the network, not a tenant: network administrators only (403 for tenant tokens).
NETWORK_ROUTES = re.compile(r"^/api/v1/network/")


async def _other_tenant_ids(client: AsyncTestClient[Any], world: World, settings: Settings) -> dict[str, str]:
    """One record of each kind in tenant B."""
    b_admin = await login(client, "admin.b@test.example", world.slug_b)
    patient = (await client.post("/api/v1/patients", json=patient_body("B-9"), headers=b_admin)).json()
    members = (await client.get("/api/v1/users", headers=b_admin)).json()["items"]
    invitation = (
        await client.post("/api/v1/invitations", headers=b_admin, json={"email": "someone@b.example", "roles": ["chw"]})
    ).json()
    doc_b = next(m["user_id"] for m in members if m["email"] == "doc.b@test.example")
    team = (
        await client.post(
            f"/api/v1/patients/{patient['id']}/care-team",
            headers=b_admin,
            json={"members": [{"user_id": doc_b, "role": "primary_care", "is_lead": True}]},
        )
    ).json()
    consent = (
        await client.post(
            f"/api/v1/patients/{patient['id']}/consents",
            headers=b_admin,
            json={
                "grantee": {"kind": "treating"},
                "categories": ["care_plan"],
                "purposes": ["treatment"],
                "period_start": "2026-01-01T00:00:00Z",
                "source_kind": "scanned_form",
            },
        )
    ).json()
    template = (
        await client.post(
            "/api/v1/care-plan-templates",
            headers=b_admin,
            json={"code": "b-only", "name": "B only", "structured_schema": {"type": "object"}},
        )
    ).json()
    task = (
        await client.post("/api/v1/tasks", headers=b_admin, json={"patient_id": patient["id"], "title": "B"})
    ).json()
    plan = (
        await client.post(
            "/api/v1/care-plans",
            headers=b_admin,
            json={
                "patient_id": patient["id"],
                "template_id": template["id"],
                "goals": [{"description": "B goal"}],
                "activities": [{"kind": "task", "description": "B activity", "task_id": task["id"]}],
            },
        )
    ).json()
    start = datetime.now(UTC) + timedelta(days=2)
    appointment = (
        await client.post(
            "/api/v1/appointments",
            headers=b_admin,
            json={
                "patient_id": patient["id"],
                "participant_id": doc_b,
                "kind": "phone",
                "start_at": start.isoformat(),
                "end_at": (start + timedelta(minutes=30)).isoformat(),
                "reason": "B visit",
            },
        )
    ).json()
    thread = (
        await client.post(
            "/api/v1/threads",
            headers=b_admin,
            json={
                "patient_id": patient["id"],
                "subject": "B thread",
                "body": "B message",
                "participant_user_ids": [doc_b],
                "attachments": [{"name": "b.txt", "content_type": "text/plain", "data": "Qg=="}],
            },
        )
    ).json()
    message = (await client.get(f"/api/v1/threads/{thread['id']}/messages", headers=b_admin)).json()["items"][0]
    result = (
        await client.post(
            f"/api/v1/patients/{patient['id']}/results",
            headers=b_admin,
            json={
                "code": "4548-4",
                "display": "Hemoglobin A1c",
                "value": "8.1",
                "unit": "%",
                "interpretation": "abnormal",
                "status": "final",
                "effective_at": "2026-11-01T08:00:00Z",
                "released_to_patient": True,
            },
        )
    ).json()
    item = (
        await client.post(
            f"/api/v1/patients/{patient['id']}/education", headers=b_admin, json={"title": "Living with diabetes"}
        )
    ).json()
    # A failed job of tenant B (written as the worker writes it).
    engine = make_engine(settings.database_url)
    with tenant_context(world.tenant_b):
        async with make_sessionmaker(engine)() as session, session.begin():
            letter = DeadLetter(
                id=uuid.uuid4(),
                event_id=uuid.uuid4(),
                topic="appointment.noshow",
                handler="noshow-follow-up-task",
                message={"tenant_id": str(world.tenant_b)},
                error="RuntimeError: B",
            )
            session.add(letter)
            alert = Alert(
                id=uuid.uuid4(),
                user_id=uuid.UUID(doc_b),
                patient_id=uuid.UUID(patient["id"]),
                kind="lab.critical",
                severity="critical",
                title="B alert",
                source_event_id=uuid.uuid4(),
            )
            session.add(alert)
            notification = Notification(
                id=uuid.uuid4(),
                patient_id=uuid.UUID(patient["id"]),
                channel="in_app",
                kind="appointment.reminder",
                subject="B reminder",
                text="B reminder",
                dedupe_key="b",
                status="sent",
            )
            session.add(notification)
    await engine.dispose()
    return {
        "dead_letter_id": str(letter.id),
        "alert_id": str(alert.id),
        "notification_id": str(notification.id),
        "result_id": result["id"],
        "item_id": item["id"],
        "thread_id": thread["id"],
        "message_id": message["id"],
        "attachment_id": message["attachments"][0]["id"],
        "patient_id": patient["id"],
        "user_id": doc_b,
        "invitation_id": invitation["id"],
        "care_team_id": team["id"],
        "member_id": team["members"][0]["id"],
        "template_id": template["id"],
        "plan_id": plan["id"],
        "goal_id": plan["goals"][0]["id"],
        "activity_id": plan["activities"][0]["id"],
        "task_id": task["id"],
        "appointment_id": appointment["id"],
        "consent_id": consent["id"],
    }


async def test_every_id_route_hides_other_tenants(
    client: AsyncTestClient[Any], world: World, settings: Settings
) -> None:
    other = await _other_tenant_ids(client, world, settings)
    a_admin = await login(client, "admin.a@test.example", world.slug_a)
    a_patient = (await client.post("/api/v1/patients", json=patient_body("A-1"), headers=a_admin)).json()
    a_portal = await portal_login(client, a_admin, a_patient["id"], "a.patient@test.example", world.slug_a)
    tried = 0
    for route in client.app.routes:
        params = re.findall(r"\{(\w+):uuid\}", route.path)
        if not params or NETWORK_ROUTES.match(route.path):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                unknown = [p for p in params if p not in other]
                assert not unknown, f"{method} {route.path}: add a tenant-B {unknown} to _other_tenant_ids"
                body = BODIES.get((method, route.path))
                path = route.path
                for param in params:
                    path = path.replace(f"{{{param}:uuid}}", "{" + param + "}")
                path = re.sub(r"\{\w+:int\}", "1", path)
                foreign = path.format(**other)
                missing = path.format(**{p: str(uuid.uuid4()) for p in params})
                caller = a_portal if PORTAL_ROUTES.match(route.path) else a_admin
                answer = await client.request(method, foreign, json=body, headers=caller)
                absent = await client.request(method, missing, json=body, headers=caller)
                assert answer.status_code == 404, (method, foreign, answer.text)
                assert (answer.status_code, answer.json()["detail"]) == (absent.status_code, absent.json()["detail"])
                tried += 1
    assert tried >= 7

    # And nothing of tenant B changed.
    b_admin = await login(client, "admin.b@test.example", world.slug_b)
    patient = (await client.get(f"/api/v1/patients/{other['patient_id']}", headers=b_admin)).json()
    assert patient["given_name"] == "Ada" and patient["active"] is True
    member = (await client.get(f"/api/v1/users/{other['user_id']}", headers=b_admin)).json()
    assert member["roles"] == ["clinician"] and member["active"] is True
    invitations = (await client.get("/api/v1/invitations", headers=b_admin)).json()["items"]
    assert [i["id"] for i in invitations] == [other["invitation_id"]]
    team = (await client.get(f"/api/v1/care-teams/{other['care_team_id']}", headers=b_admin)).json()
    assert [(m["role"], m["is_lead"]) for m in team["members"]] == [("primary_care", True)]
    template = (await client.get(f"/api/v1/care-plan-templates/{other['template_id']}", headers=b_admin)).json()
    assert template["active"] is True
    plan = (await client.get(f"/api/v1/care-plans/{other['plan_id']}", headers=b_admin)).json()
    assert (plan["title"], plan["version"], len(plan["goals"]), len(plan["activities"])) == ("B only", 1, 1, 1)
    task = (await client.get(f"/api/v1/tasks/{other['task_id']}", headers=b_admin)).json()
    assert (task["title"], task["status"], task["escalation_level"]) == ("B", "requested", 0)
    assert (await client.get(f"/api/v1/tasks/{other['task_id']}/comments", headers=b_admin)).json() == []
    appointment = (await client.get(f"/api/v1/appointments/{other['appointment_id']}", headers=b_admin)).json()
    assert (appointment["reason"], appointment["status"]) == ("B visit", "booked")
    messages = (await client.get(f"/api/v1/threads/{other['thread_id']}/messages", headers=b_admin)).json()["items"]
    assert [(m["body"], m["version"], m["deleted"]) for m in messages] == [("B message", 1, False)]
    thread = (await client.get(f"/api/v1/threads/{other['thread_id']}", headers=b_admin)).json()
    assert len(thread["participants"]) == 2
    letter = (await client.get(f"/api/v1/jobs/dead-letters/{other['dead_letter_id']}", headers=b_admin)).json()
    assert letter["replay_requested_at"] is None
    result = (await client.get(f"/api/v1/results/{other['result_id']}", headers=b_admin)).json()
    assert result["acknowledged_at"] is None
    items = (await client.get(f"/api/v1/patients/{other['patient_id']}/education", headers=b_admin)).json()
    assert [i["read_at"] for i in items["items"]] == [None]


async def test_network_routes_refuse_tenant_tokens(client: AsyncTestClient[Any], world: World) -> None:
    a_admin = await login(client, "admin.a@test.example", world.slug_a)
    tried = 0
    for route in client.app.routes:
        if not NETWORK_ROUTES.match(route.path):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(handler.http_methods - {"OPTIONS", "HEAD"}):
                path = route.path.replace("{tenant_id:uuid}", str(world.tenant_b))
                response = await client.request(method, path, json={}, headers=a_admin)
                assert response.status_code in (400, 403), (method, path, response.text)
                tried += 1
    assert tried >= 5
