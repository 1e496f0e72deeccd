"""Abuse cases found in review: each is a request an attacker or a careless client could send."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import PASSWORD, World, login
from tests.factories import patient_body


async def _me(client: AsyncTestClient[Any], headers: dict[str, str]) -> dict[str, Any]:
    return dict((await client.get("/api/v1/auth/me", headers=headers)).json())


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/patients", patient_body(given_name="a\x00b"), "given_name"),
        ("POST", "/api/v1/patients", patient_body(address={"line": ["x\x00"]}), "address.line[0]"),
        ("GET", "/api/v1/patients?name=a%00", None, "name"),
        ("GET", "/api/v1/audit-events?action=a%00", None, "action"),
        ("GET", "/api/v1/audit-events?since=0001-01-01T00:00:00%2B01:00", None, "since"),
        ("GET", "/api/v1/audit-events?until=9999-12-31T23:59:59-01:00", None, "until"),
        ("POST", "/api/v1/invitations", {"email": "\u0130" * 240 + "@a.bc", "roles": ["chw"]}, "email"),
        (
            "POST",
            "/api/v1/users",
            {"email": "\u0130" * 240 + "@a.bc", "full_name": "x", "roles": ["chw"], "password": "long-enough-password"},
            "email",
        ),
    ],
)
async def test_hostile_values_get_4xx_naming_the_field(
    client: AsyncTestClient[Any], world: World, method: str, path: str, body: Any, field: str
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    response = await client.request(method, path, json=body, headers=admin)
    assert 400 <= response.status_code < 500, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_nul_in_sign_in_is_refused(client: AsyncTestClient[Any], world: World) -> None:
    response = await client.post(
        "/api/v1/auth/token", json={"email": "x\x00@a.bc", "password": "x", "tenant": world.slug_a}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "email"


async def test_removed_member_comes_back_with_the_new_roles_only(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    doc_id = (await _me(client, doc))["user_id"]
    await client.put(f"/api/v1/users/{doc_id}/roles", json={"roles": ["tenant_admin"]}, headers=admin)
    assert (await client.delete(f"/api/v1/users/{doc_id}", headers=admin)).status_code == 204
    invitation = (
        await client.post("/api/v1/invitations", headers=admin, json={"email": "doc.a@test.example", "roles": ["chw"]})
    ).json()
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": invitation["token"], "full_name": "x", "password": PASSWORD}
    )
    assert accepted.status_code == 200
    member = (await client.get(f"/api/v1/users/{doc_id}", headers=admin)).json()
    assert member["roles"] == ["chw"] and member["active"] is True
    # A token from before the removal stays dead although the person is a member again.
    assert (await client.get("/api/v1/auth/me", headers=doc)).status_code == 401


async def test_invitation_password_guessing_is_bounded_and_audited(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    invitation = (
        await client.post("/api/v1/invitations", headers=admin, json={"email": "doc.b@test.example", "roles": ["chw"]})
    ).json()
    guesses = [
        (
            await client.post(
                "/api/v1/invitations/accept",
                json={"token": invitation["token"], "full_name": "x", "password": f"guess-number-{n:04d}"},
            )
        ).status_code
        for n in range(6)
    ]
    assert guesses == [422] * 5 + [404], "the invitation is revoked after five wrong passwords"
    right = await client.post(
        "/api/v1/invitations/accept", json={"token": invitation["token"], "full_name": "x", "password": PASSWORD}
    )
    assert right.status_code == 404
    events = (await client.get("/api/v1/audit-events?action=invitation.accept", headers=admin)).json()["items"]
    assert [e["outcome"] for e in events] == ["denied"] * 5
    # The guesses also count against the account's own lock: five more wrong sign-ins lock it.
    wrong = {"email": "doc.b@test.example", "password": "wrong-password-9", "tenant": world.slug_b}
    for _ in range(5):
        assert (await client.post("/api/v1/auth/token", json=wrong)).status_code == 401
    locked = await client.post(
        "/api/v1/auth/token", json={"email": "doc.b@test.example", "password": PASSWORD, "tenant": world.slug_b}
    )
    assert locked.status_code == 401


async def test_invitations_are_listed_revoked_and_die_with_their_sender(
    client: AsyncTestClient[Any], world: World
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    second = (
        await client.post(
            "/api/v1/users",
            headers=admin,
            json={
                "email": "admin2@test.example",
                "full_name": "Second Admin",
                "roles": ["tenant_admin"],
                "password": "second-admin-password",
            },
        )
    ).json()
    admin2 = {
        "Authorization": "Bearer "
        + (
            await client.post(
                "/api/v1/auth/token",
                json={"email": "admin2@test.example", "password": "second-admin-password", "tenant": world.slug_a},
            )
        ).json()["access_token"]
    }
    rogue = (
        await client.post(
            "/api/v1/invitations", headers=admin2, json={"email": "evil@test.example", "roles": ["tenant_admin"]}
        )
    ).json()
    honest = (
        await client.post(
            "/api/v1/invitations", headers=admin, json={"email": "nurse@test.example", "roles": ["clinician"]}
        )
    ).json()
    listed = (await client.get("/api/v1/invitations", headers=admin)).json()["items"]
    assert {i["email"] for i in listed} == {"evil@test.example", "nurse@test.example"}
    assert "token" not in listed[0]
    assert (await client.delete(f"/api/v1/users/{second['user_id']}", headers=admin)).status_code == 204
    evil = await client.post(
        "/api/v1/invitations/accept", json={"token": rogue["token"], "full_name": "Evil", "password": "evil-password-1"}
    )
    assert evil.status_code == 404, "a removed admin's invitations are revoked with them"
    revocations = (await client.get("/api/v1/audit-events?action=invitation.revoke", headers=admin)).json()["items"]
    assert [e["detail"]["email"] for e in revocations] == ["evil@test.example"]
    assert (await client.delete(f"/api/v1/invitations/{honest['id']}", headers=admin)).status_code == 204
    nurse = await client.post(
        "/api/v1/invitations/accept", json={"token": honest["token"], "full_name": "N", "password": "nurse-password-1"}
    )
    assert nurse.status_code == 404
    assert (await client.get("/api/v1/invitations", headers=admin)).json()["items"] == []
    b_admin = await login(client, "admin.b@test.example", world.slug_b)
    assert (await client.delete(f"/api/v1/invitations/{honest['id']}", headers=b_admin)).status_code == 404


async def test_tenant_invitations_name_their_roles(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    response = await client.post("/api/v1/invitations", headers=admin, json={"email": "x@test.example"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "roles"


async def test_pending_tenant_is_open_for_set_up_only(client: AsyncTestClient[Any], world: World) -> None:
    network = await login(client, "net@test.example", None)
    tenant = (
        await client.post(
            "/api/v1/network/tenants",
            headers=network,
            json={"slug": "pend", "name": "Pending Clinic", "kind": "clinic"},
        )
    ).json()
    invitation = (
        await client.post(
            f"/api/v1/network/tenants/{tenant['id']}/invitations", headers=network, json={"email": "boss@pend.example"}
        )
    ).json()
    await client.post(
        "/api/v1/invitations/accept",
        json={"token": invitation["token"], "full_name": "Boss", "password": "pending-boss-pass"},
    )
    boss = {
        "Authorization": "Bearer "
        + (
            await client.post(
                "/api/v1/auth/token",
                json={"email": "boss@pend.example", "password": "pending-boss-pass", "tenant": "pend"},
            )
        ).json()["access_token"]
    }
    assert (await client.get("/api/v1/users", headers=boss)).status_code == 200
    refused = await client.post("/api/v1/patients", json=patient_body(), headers=boss)
    assert refused.status_code == 403 and "pending activation" in refused.json()["detail"]
    await client.post(f"/api/v1/network/tenants/{tenant['id']}/activate", headers=network)
    assert (await client.post("/api/v1/patients", json=patient_body(), headers=boss)).status_code == 201


async def test_refusals_are_audited(client: AsyncTestClient[Any], world: World) -> None:
    chw = await login(client, "chw.a@test.example", world.slug_a)
    chw_id = (await _me(client, chw))["user_id"]
    assert (await client.post("/api/v1/patients", json=patient_body(), headers=chw)).status_code == 403
    admin = await login(client, "admin.a@test.example", world.slug_a)
    events = (
        await client.get(f"/api/v1/audit-events?actor_user_id={chw_id}&action=patients.write", headers=admin)
    ).json()["items"]
    assert [(e["outcome"], e["resource_type"]) for e in events] == [("denied", "patients")]


async def test_wrong_current_password_is_audited(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    response = await client.post(
        "/api/v1/auth/password",
        headers=doc,
        json={"current_password": "not-it", "new_password": "another-long-password"},
    )
    assert response.status_code == 422
    admin = await login(client, "admin.a@test.example", world.slug_a)
    events = (await client.get("/api/v1/audit-events?action=auth.password_change", headers=admin)).json()["items"]
    assert [e["outcome"] for e in events] == ["denied"]


async def test_account_locks_after_repeated_wrong_passwords(client: AsyncTestClient[Any], world: World) -> None:
    wrong = {"email": "doc.a@test.example", "password": "wrong-password-0", "tenant": world.slug_a}
    for _ in range(10):
        assert (await client.post("/api/v1/auth/token", json=wrong)).status_code == 401
    right = await client.post(
        "/api/v1/auth/token", json={"email": "doc.a@test.example", "password": PASSWORD, "tenant": world.slug_a}
    )
    assert right.status_code == 401, "locked for a while, with the same answer as a wrong password"
    other = await client.post(
        "/api/v1/auth/token", json={"email": "admin.a@test.example", "password": PASSWORD, "tenant": world.slug_a}
    )
    assert other.status_code == 200, "other accounts are unaffected"


async def test_empty_address_is_no_address(client: AsyncTestClient[Any], world: World) -> None:
    doc = await login(client, "doc.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doc)).json()
    changed = await client.patch(f"/api/v1/patients/{patient['id']}", json={"address": {}}, headers=doc)
    assert changed.json()["address"] is None
    again = (await client.get(f"/api/v1/patients/{patient['id']}", headers=doc)).json()
    assert again["address"] is None


async def test_every_protected_route_re_reads_its_caller() -> None:
    """A route behind the token must take the ``principal`` dependency (the database re-check)."""
    from api.app import create_app
    from tests.conftest import base_settings

    app = create_app(base_settings(database_url="sqlite+aiosqlite://"))
    unchecked, checked = [], 0
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.opt.get("public") or route.path.startswith("/schema") or handler.http_methods == {"OPTIONS"}:
                continue
            checked += 1
            if "principal" not in handler.parsed_fn_signature.parameters:
                unchecked.append(f"{sorted(handler.http_methods)} {route.path}")
    assert unchecked == []
    assert checked >= 20
