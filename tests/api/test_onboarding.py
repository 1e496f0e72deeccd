"""Onboarding: a network administrator brings a facility on; its admin adds staff within the tenant only."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import PASSWORD, World, login
from tests.factories import patient_body


async def _token(client: AsyncTestClient[Any], email: str, password: str, tenant: str) -> dict[str, str]:
    response = await client.post("/api/v1/auth/token", json={"email": email, "password": password, "tenant": tenant})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_network_admin_onboards_a_clinic(client: AsyncTestClient[Any], world: World) -> None:
    network = await login(client, "net@test.example", None)
    created = await client.post(
        "/api/v1/network/tenants",
        headers=network,
        json={"slug": "eastside-clinic", "name": "Eastside Clinic", "kind": "clinic"},
    )
    assert created.status_code == 201, created.text
    tenant = created.json()
    assert tenant["status"] == "pending"
    duplicate = await client.post(
        "/api/v1/network/tenants", headers=network, json={"slug": "eastside-clinic", "name": "Again", "kind": "clinic"}
    )
    assert duplicate.status_code == 409 and duplicate.json()["errors"][0]["field"] == "slug"

    invited = await client.post(
        f"/api/v1/network/tenants/{tenant['id']}/invitations",
        headers=network,
        json={"email": "Director@Eastside.example"},
    )
    assert invited.status_code == 201
    invitation = invited.json()
    assert invitation["roles"] == ["tenant_admin"] and invitation["email"] == "director@eastside.example"

    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": invitation["token"], "full_name": "Dana Director", "password": "eastside-secret-1"},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["tenant"] == "eastside-clinic"
    reused = await client.post(
        "/api/v1/invitations/accept",
        json={"token": invitation["token"], "full_name": "Mallory", "password": "eastside-secret-2"},
    )
    assert reused.status_code == 404, "an invitation works once"

    # A pending tenant can be set up by its admin before go-live.
    director = await _token(client, "director@eastside.example", "eastside-secret-1", "eastside-clinic")
    added = await client.post(
        "/api/v1/users",
        headers=director,
        json={
            "email": "nurse@eastside.example",
            "full_name": "Nico Nurse",
            "roles": ["clinician", "care_manager"],
            "password": "nurse-password-1",
        },
    )
    assert added.status_code == 201, added.text
    assert added.json()["roles"] == ["care_manager", "clinician"]

    activated = await client.post(f"/api/v1/network/tenants/{tenant['id']}/activate", headers=network)
    assert activated.json()["status"] == "active" and activated.json()["activated_at"]
    assert activated.json()["member_count"] == 2
    one = (await client.get(f"/api/v1/network/tenants/{tenant['id']}", headers=network)).json()
    assert one["member_count"] == 2 and one["slug"] == "eastside-clinic"
    listing = (await client.get("/api/v1/network/tenants?status=active", headers=network)).json()["items"]
    east = next(t for t in listing if t["slug"] == "eastside-clinic")
    assert east["member_count"] == 2

    nurse = await _token(client, "nurse@eastside.example", "nurse-password-1", "eastside-clinic")
    assert (await client.post("/api/v1/patients", json=patient_body(), headers=nurse)).status_code == 201
    # The new clinic sees none of hospital A's patients and vice versa.
    a_doc = await login(client, "doc.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/patients", headers=a_doc)).json()["items"] == []

    audit = (await client.get("/api/v1/audit-events?limit=100", headers=director)).json()["items"]
    actions = {e["action"] for e in audit}
    assert {"tenant.create", "invitation.create", "invitation.accept", "user.add", "tenant.activate"} <= actions


async def test_tenant_status_transitions(client: AsyncTestClient[Any], world: World) -> None:
    network = await login(client, "net@test.example", None)
    tenant = (
        await client.post(
            "/api/v1/network/tenants", headers=network, json={"slug": "t1", "name": "T1", "kind": "partner"}
        )
    ).json()
    suspended = await client.post(f"/api/v1/network/tenants/{tenant['id']}/suspend", headers=network)
    assert suspended.json()["status"] == "suspended"
    invite = await client.post(
        f"/api/v1/network/tenants/{tenant['id']}/invitations", headers=network, json={"email": "x@t1.example"}
    )
    assert invite.status_code == 409
    missing = await client.post(
        "/api/v1/network/tenants/00000000-0000-0000-0000-000000000000/activate", headers=network
    )
    assert missing.status_code == 404


async def test_only_network_admins_manage_tenants(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    for method, path in (
        ("GET", "/api/v1/network/tenants"),
        ("POST", f"/api/v1/network/tenants/{world.tenant_b}/suspend"),
    ):
        response = await client.request(method, path, headers=admin)
        assert response.status_code == 403, (path, response.text)
    network = await login(client, "net@test.example", None)
    # A network token reads no patient data.
    assert (await client.get("/api/v1/patients", headers=network)).status_code == 403


async def test_tenant_admin_manages_roles_in_own_tenant(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    me = (await client.get("/api/v1/auth/me", headers=doc)).json()
    assert (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).status_code == 201
    demoted = await client.put(f"/api/v1/users/{me['user_id']}/roles", json={"roles": ["chw"]}, headers=admin)
    assert demoted.status_code == 200 and demoted.json()["roles"] == ["chw"]
    # The same token now carries the new role on the very next request.
    assert (await client.post("/api/v1/patients", json=patient_body("M2"), headers=doc)).status_code == 403
    assert (await client.get("/api/v1/patients", headers=doc)).status_code == 200
    # Staff cannot manage users.
    assert (await client.get("/api/v1/users", headers=doc)).status_code == 403
    admin_me = (await client.get("/api/v1/auth/me", headers=admin)).json()
    self_demote = await client.put(f"/api/v1/users/{admin_me['user_id']}/roles", json={"roles": ["chw"]}, headers=admin)
    assert self_demote.status_code == 409


async def test_existing_user_joins_a_second_tenant(client: AsyncTestClient[Any], world: World) -> None:
    """A clinician who works at both hospitals has one account and a membership in each; the account joins
    the second tenant by invitation, with its own password, and is never disclosed to the other admin."""
    b_admin = await login(client, "admin.b@test.example", world.slug_b)
    direct = await client.post(
        "/api/v1/users",
        headers=b_admin,
        json={
            "email": "doc.a@test.example",
            "full_name": "x",
            "roles": ["care_manager"],
            "password": "takeover-attempt",
        },
    )
    assert direct.status_code == 409
    assert direct.json()["errors"][0]["field"] == "email"
    assert "doc_a" not in direct.text, "the existing account's name is not shown"
    invitation = (
        await client.post(
            "/api/v1/invitations", headers=b_admin, json={"email": "doc.a@test.example", "roles": ["care_manager"]}
        )
    ).json()
    wrong = await client.post(
        "/api/v1/invitations/accept",
        json={"token": invitation["token"], "full_name": "x", "password": "not-their-password"},
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "password"
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": invitation["token"], "full_name": "ignored", "password": PASSWORD}
    )
    assert accepted.status_code == 200, accepted.text
    in_b = await _token(client, "doc.a@test.example", PASSWORD, world.slug_b)
    assert (await client.get("/api/v1/auth/me", headers=in_b)).json()["roles"] == ["care_manager"]
    in_a = await _token(client, "doc.a@test.example", PASSWORD, world.slug_a)
    assert (await client.get("/api/v1/auth/me", headers=in_a)).json()["roles"] == ["clinician"]


async def test_tenant_admin_invites_into_own_tenant_only(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    invited = await client.post(
        "/api/v1/invitations", headers=admin, json={"email": "chw2@test.example", "roles": ["chw"]}
    )
    assert invited.status_code == 201
    assert invited.json()["tenant_id"] == str(world.tenant_a)
    other = await client.post(
        f"/api/v1/network/tenants/{world.tenant_b}/invitations", headers=admin, json={"email": "spy@test.example"}
    )
    assert other.status_code == 403
    bad_token = await client.post(
        "/api/v1/invitations/accept", json={"token": "x" * 43, "full_name": "Nobody", "password": "long-enough-pass"}
    )
    assert bad_token.status_code == 404
