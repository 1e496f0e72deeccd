"""Portal accounts: staff invite a patient; the account acts as that patient only, never as staff."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import PASSWORD, World, login, portal_login
from tests.factories import patient_body


async def test_portal_invitation_makes_a_patient_account(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body("PA-1"), headers=admin)).json()
    headers = await portal_login(client, admin, patient["id"], "Ada@Patient.example", world.slug_a)
    me = (await client.get("/api/v1/auth/me", headers=headers)).json()
    assert me["roles"] == ["patient"] and me["patient_id"] == patient["id"] and me["email"] == "ada@patient.example"
    # Staff routes are closed to a portal account, whatever the id.
    assert (await client.get(f"/api/v1/patients/{patient['id']}", headers=headers)).status_code == 403
    assert (await client.get("/api/v1/tasks", headers=headers)).status_code == 403

    # Giving the account staff roles does not make it staff: it stays its patient.
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    account = next(m for m in members if m["email"] == "ada@patient.example")
    promoted = await client.put(
        f"/api/v1/users/{account['user_id']}/roles", headers=admin, json={"roles": ["tenant_admin"]}
    )
    assert promoted.status_code == 409 and promoted.json()["errors"][0]["field"] == "roles"
    token = await client.post(
        "/api/v1/auth/token", json={"email": "ada@patient.example", "password": PASSWORD, "tenant": world.slug_a}
    )
    assert token.json()["roles"] == ["patient"]
    again = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert (await client.get("/api/v1/auth/me", headers=again)).json()["roles"] == ["patient"]
    assert (await client.get("/api/v1/users", headers=again)).status_code == 403


async def test_portal_invitation_refusals(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body("PA-2"), headers=admin)).json()
    url = f"/api/v1/patients/{patient['id']}/portal-invitation"
    # A staff member's email cannot become a patient account of the same tenant.
    staff = await client.post(url, headers=admin, json={"email": "doc.a@test.example"})
    assert staff.status_code == 409 and staff.json()["errors"][0]["field"] == "email"
    assert (await client.post(url, headers=admin, json={"email": "not-an-email"})).status_code == 400
    # Inviting a patient is a write on the patient's record (a CHW only reads records).
    assert (await client.post(url, headers=chw, json={"email": "x@patient.example"})).status_code == 403

    # A patient's account cannot later be turned into staff by a staff invitation.
    await portal_login(client, admin, patient["id"], "bo@patient.example", world.slug_a)
    invited = await client.post(
        "/api/v1/invitations", headers=admin, json={"email": "bo@patient.example", "roles": ["clinician"]}
    )
    assert invited.status_code == 201
    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": invited.json()["token"], "full_name": "Bo", "password": PASSWORD},
    )
    assert accepted.status_code == 409
    bo = await login(client, "bo@patient.example", world.slug_a)
    assert (await client.get("/api/v1/auth/me", headers=bo)).json()["roles"] == ["patient"]


async def test_a_deactivated_record_closes_its_portal_and_new_care(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body("PA-3"), headers=admin)).json()
    portal = await portal_login(client, admin, patient["id"], "cy@patient.example", world.slug_a)
    assert (await client.get("/api/v1/portal/me", headers=portal)).status_code == 200
    assert (await client.delete(f"/api/v1/patients/{patient['id']}", headers=admin)).status_code == 200
    assert (await client.get("/api/v1/portal/me", headers=portal)).status_code == 401
    for path, body in (
        ("/api/v1/tasks", {"patient_id": patient["id"], "title": "Call"}),
        ("/api/v1/care-plans", {"patient_id": patient["id"], "title": "Plan"}),
        (f"/api/v1/patients/{patient['id']}/care-team", {}),
    ):
        refused = await client.post(path, headers=admin, json=body)
        assert refused.status_code == 409 and "deactivated" in refused.json()["detail"], path
