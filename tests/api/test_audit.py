"""Every read and write of patient data leaves an audit event, in the same transaction."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import World, login, sign_in
from tests.factories import patient_body


async def test_patient_access_is_audited(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    me = (await client.get("/api/v1/auth/me", headers=doc)).json()
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).json()
    await client.get(f"/api/v1/patients/{patient['id']}", headers=doc)
    await client.patch(f"/api/v1/patients/{patient['id']}", json={"language": "es"}, headers=doc)
    await client.get("/api/v1/patients?name=ada", headers=doc)
    missing = str(uuid.uuid4())
    assert (await client.get(f"/api/v1/patients/{missing}", headers=doc)).status_code == 404

    admin = await login(client, "admin.a@test.example", world.slug_a)
    events = (await client.get(f"/api/v1/audit-events?actor_user_id={me['user_id']}", headers=admin)).json()
    by_action = {(e["action"], e["outcome"]): e for e in events["items"]}
    for action in ("patient.create", "patient.read", "patient.update", "patient.search"):
        event = by_action[(action, "success")]
        assert event["patient_id"] == patient["id"]
        assert event["actor_roles"] == ["clinician"]
    assert by_action[("patient.update", "success")]["detail"] == {"fields": ["language"]}
    not_found = by_action[("patient.read", "not_found")]
    assert not_found["resource_id"] == missing and not_found["patient_id"] is None

    for_patient = (await client.get(f"/api/v1/audit-events?patient_id={patient['id']}", headers=admin)).json()
    assert len(for_patient["items"]) == 4
    times = [e["at"] for e in for_patient["items"]]
    assert times == sorted(times, reverse=True)


async def test_only_tenant_admins_read_the_audit_log(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/audit-events", headers=doc)).status_code == 403


async def test_refused_write_leaves_no_audit_event(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    await client.post("/api/v1/patients", json=patient_body("DUP"), headers=admin)
    conflict = await client.post("/api/v1/patients", json=patient_body("DUP", identifiers=[]), headers=admin)
    assert conflict.status_code == 409
    creates = (await client.get("/api/v1/audit-events?action=patient.create", headers=admin)).json()["items"]
    assert len(creates) == 1


async def test_sign_in_attempts_are_audited_in_the_tenant(client: AsyncTestClient[Any], world: World) -> None:
    bad = {"email": "doc.a@test.example", "password": "wrong-password-123", "tenant": world.slug_a}
    assert (await client.post("/api/v1/auth/token", json=bad)).status_code == 401
    stranger = {"email": "forged-entry@evil.example", "password": "whatever-123", "tenant": world.slug_a}
    assert (await client.post("/api/v1/auth/token", json=stranger)).status_code == 401
    other_member = {"email": "doc.b@test.example", "password": "wrong-password-123", "tenant": world.slug_a}
    assert (await client.post("/api/v1/auth/token", json=other_member)).status_code == 401
    doc = await sign_in(client, "doc.a@test.example", world.slug_a)
    me = (await client.get("/api/v1/auth/me", headers=doc)).json()
    admin = await sign_in(client, "admin.a@test.example", world.slug_a)
    events = (await client.get("/api/v1/audit-events?action=auth.sign_in", headers=admin)).json()["items"]
    denied = [e for e in events if e["outcome"] == "denied"]
    assert [(e["actor_user_id"], e["reason"]) for e in denied] == [(me["user_id"], "wrong password or account locked")]
    assert "forged-entry" not in str(events) and "doc.b" not in str(events), "strangers leave no trace here"
    assert any(e["outcome"] == "success" and e["actor_user_id"] == me["user_id"] for e in events)


async def test_update_audit_names_only_the_fields_that_changed(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).json()
    body = {"given_name": "Ada", "language": "de", "identifiers": patient["identifiers"]}
    assert (await client.patch(f"/api/v1/patients/{patient['id']}", json=body, headers=doc)).status_code == 200
    admin = await login(client, "admin.a@test.example", world.slug_a)
    updates = (await client.get("/api/v1/audit-events?action=patient.update", headers=admin)).json()["items"]
    assert [u["detail"] for u in updates] == [{"fields": ["language"]}]
