"""The tenancy suite: every endpoint that takes an id, tried with another tenant's token, answers 404,
exactly like a missing record; lists never show another tenant's rows."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import World, login
from tests.factories import patient_body


@pytest.fixture
async def b_patient(client: AsyncTestClient[Any], world: World) -> dict[str, Any]:
    headers = await login(client, "doc.b@test.example", world.slug_b)
    response = await client.post("/api/v1/patients", json=patient_body("B-1", given_name="Bea"), headers=headers)
    assert response.status_code == 201
    return dict(response.json())


async def test_other_tenants_patient_is_absent(
    client: AsyncTestClient[Any], world: World, b_patient: dict[str, Any]
) -> None:
    a_admin = await login(client, "admin.a@test.example", world.slug_a)
    pid = b_patient["id"]
    missing = str(uuid.uuid4())
    for method, path, body in (
        ("GET", f"/api/v1/patients/{pid}", None),
        ("PATCH", f"/api/v1/patients/{pid}", {"given_name": "Hijack"}),
        ("DELETE", f"/api/v1/patients/{pid}", None),
    ):
        other = await client.request(method, path, json=body, headers=a_admin)
        absent = await client.request(method, path.replace(pid, missing), json=body, headers=a_admin)
        assert other.status_code == 404, (method, other.text)
        assert absent.status_code == 404
        assert other.json()["detail"] == absent.json()["detail"], "other tenant's record must look missing"

    listed = await client.get("/api/v1/patients?include_inactive=true", headers=a_admin)
    assert listed.json()["items"] == []
    for query in ("name=Bea", "identifier=B-1", f"identifier=NET-{b_patient['mrn']}", "birth_date=1961-12-10"):
        found = await client.get(f"/api/v1/patients?{query}", headers=a_admin)
        assert found.json()["items"] == [], query

    b_doc = await login(client, "doc.b@test.example", world.slug_b)
    unchanged = await client.get(f"/api/v1/patients/{pid}", headers=b_doc)
    assert unchanged.json()["given_name"] == "Bea"
    assert unchanged.json()["active"] is True


async def test_other_tenants_users_are_absent(client: AsyncTestClient[Any], world: World) -> None:
    a_admin = await login(client, "admin.a@test.example", world.slug_a)
    b_admin = await login(client, "admin.b@test.example", world.slug_b)
    b_members = (await client.get("/api/v1/users", headers=b_admin)).json()["items"]
    b_doc = next(m for m in b_members if m["email"] == "doc.b@test.example")
    for method, path, body in (
        ("GET", f"/api/v1/users/{b_doc['user_id']}", None),
        ("PUT", f"/api/v1/users/{b_doc['user_id']}/roles", {"roles": ["tenant_admin"]}),
        ("DELETE", f"/api/v1/users/{b_doc['user_id']}", None),
    ):
        response = await client.request(method, path, json=body, headers=a_admin)
        assert response.status_code == 404, (method, response.text)
    a_members = (await client.get("/api/v1/users", headers=a_admin)).json()["items"]
    assert {m["email"] for m in a_members} == {"admin.a@test.example", "doc.a@test.example", "chw.a@test.example"}
    still = (await client.get(f"/api/v1/users/{b_doc['user_id']}", headers=b_admin)).json()
    assert still["roles"] == ["clinician"]


async def test_audit_log_shows_only_own_tenant(
    client: AsyncTestClient[Any], world: World, b_patient: dict[str, Any]
) -> None:
    a_admin = await login(client, "admin.a@test.example", world.slug_a)
    events = (await client.get("/api/v1/audit-events", headers=a_admin)).json()["items"]
    assert all(e["patient_id"] != b_patient["id"] for e in events)
    filtered = await client.get(f"/api/v1/audit-events?patient_id={b_patient['id']}", headers=a_admin)
    assert filtered.json()["items"] == []


async def test_token_for_one_tenant_cannot_name_another(client: AsyncTestClient[Any], world: World) -> None:
    response = await client.post(
        "/api/v1/auth/token",
        json={"email": "doc.a@test.example", "password": "correct-horse-battery", "tenant": world.slug_b},
    )
    assert response.status_code == 401
