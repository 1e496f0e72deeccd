"""Tokens: what is accepted and what is refused (401), revocation, suspension, rate limits."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from core.settings import Settings
from tests.conftest import PASSWORD, World, base_settings, login, sign_in


def _claims(settings: Settings, user_id: str, tenant_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": user_id,
        "tid": str(tenant_id),
        "ver": 1,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(settings: Settings, claims: dict[str, Any], kid: str | None = None, key: str | None = None) -> str:
    kid = kid or settings.jwt_active_kid
    return jwt.encode(
        claims, key or settings.jwt_keys[settings.jwt_active_kid], algorithm="HS256", headers={"kid": kid}
    )


async def _me(client: AsyncTestClient[Any], token: str) -> Any:
    return await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


async def test_good_token_and_me(client: AsyncTestClient[Any], world: World, settings: Settings) -> None:
    headers = await sign_in(client, "doc.a@test.example", world.slug_a)
    me = await client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["tenant_id"] == str(world.tenant_a)
    assert me.json()["roles"] == ["clinician"]
    token = headers["Authorization"].split()[1]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256" and header["kid"] == settings.jwt_active_kid


@pytest.mark.parametrize(
    "defect",
    [
        "expired",
        "audience",
        "issuer",
        "unknown_kid",
        "wrong_key",
        "alg_none",
        "no_exp",
        "no_sub",
        "no_nbf",
        "not_yet_valid",
        "garbage",
        "no_bearer",
    ],
)
async def test_defective_tokens_get_401(
    client: AsyncTestClient[Any], world: World, settings: Settings, defect: str
) -> None:
    me = (await _me(client, (await sign_in(client, "doc.a@test.example", world.slug_a))["Authorization"][7:])).json()
    user_id = me["user_id"]
    now = datetime.now(UTC)
    claims = _claims(settings, user_id, world.tenant_a)
    if defect == "expired":
        token = _sign(
            settings,
            {
                **claims,
                "exp": now - timedelta(minutes=5),
                "iat": now - timedelta(minutes=10),
                "nbf": now - timedelta(minutes=10),
            },
        )
    elif defect == "audience":
        token = _sign(settings, {**claims, "aud": "someone-else"})
    elif defect == "issuer":
        token = _sign(settings, {**claims, "iss": "evil"})
    elif defect == "unknown_kid":
        token = _sign(settings, claims, kid="retired-2020", key="x" * 40)
    elif defect == "wrong_key":
        token = _sign(settings, claims, key="y" * 40)
    elif defect == "alg_none":

        def b64(part: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(part, default=str).encode()).rstrip(b"=").decode()

        body = {**claims, "iat": int(now.timestamp()), "nbf": int(now.timestamp()), "exp": int(now.timestamp()) + 300}
        token = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': settings.jwt_active_kid})}.{b64(body)}."
    elif defect == "no_exp":
        token = _sign(settings, _claims(settings, user_id, world.tenant_a, exp=None))
    elif defect == "no_sub":
        token = _sign(settings, _claims(settings, user_id, world.tenant_a, sub=None))
    elif defect == "no_nbf":
        token = _sign(settings, _claims(settings, user_id, world.tenant_a, nbf=None))
    elif defect == "not_yet_valid":
        token = _sign(settings, {**claims, "nbf": now + timedelta(hours=1)})
    elif defect == "garbage":
        token = "not.a.jwt"
    else:
        response = await client.get("/api/v1/auth/me", headers={"Authorization": "Basic abc"})
        assert response.status_code == 401
        return
    response = await _me(client, token)
    assert response.status_code == 401, (defect, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_rotated_keys_keep_verifying(settings: Settings, world: World) -> None:
    """A token signed by the previous key still works while that key is listed; a new key signs new tokens."""
    old = settings
    rotated = base_settings(
        database_url=old.database_url,
        migration_database_url=old.migration_database_url,
        jwt_keys={**old.jwt_keys, "2026-12": "z" * 48},
        jwt_active_kid="2026-12",
    )
    async with AsyncTestClient(app=create_app(old)) as client_old:
        old_headers = await sign_in(client_old, "doc.a@test.example", world.slug_a)
    async with AsyncTestClient(app=create_app(rotated)) as client_new:
        assert (await client_new.get("/api/v1/auth/me", headers=old_headers)).status_code == 200
        new_headers = await sign_in(client_new, "doc.a@test.example", world.slug_a)
        assert jwt.get_unverified_header(new_headers["Authorization"][7:])["kid"] == "2026-12"


async def test_logout_revokes_outstanding_tokens(client: AsyncTestClient[Any], world: World) -> None:
    first = await sign_in(client, "doc.a@test.example", world.slug_a)
    second = await sign_in(client, "doc.a@test.example", world.slug_a)
    assert (await client.post("/api/v1/auth/logout", headers=first)).status_code == 204
    for headers in (first, second):
        assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    fresh = await sign_in(client, "doc.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/auth/me", headers=fresh)).status_code == 200


async def test_fixture_tokens_are_the_tokens_sign_in_issues(client: AsyncTestClient[Any], world: World) -> None:
    """The fixtures mint tokens (``login``) instead of signing in; the two must not differ in any claim that
    matters, the token version included, or the tests that use minted tokens would test something else."""
    per_token = {"iat", "nbf", "exp", "jti"}

    def header_and_claims(headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        token = headers["Authorization"][7:]
        claims = jwt.decode(token, options={"verify_signature": False})
        return jwt.get_unverified_header(token), claims

    for email, tenant in (("doc.a@test.example", world.slug_a), ("net@test.example", None)):
        signed = await sign_in(client, email, tenant)
        assert (await client.post("/api/v1/auth/logout", headers=signed)).status_code == 204  # a new version
        minted_header, minted = header_and_claims(await login(client, email, tenant))
        signed_header, real = header_and_claims(await sign_in(client, email, tenant))
        assert minted_header == signed_header
        assert minted.keys() == real.keys()
        assert {k: v for k, v in minted.items() if k not in per_token} == {
            k: v for k, v in real.items() if k not in per_token
        }
        assert minted["ver"] == header_and_claims(signed)[1]["ver"] + 1
        assert minted["exp"] - minted["iat"] == pytest.approx(real["exp"] - real["iat"], abs=1)
        assert (await client.get("/api/v1/auth/me", headers=signed)).status_code == 401


async def test_password_change_revokes_tokens(client: AsyncTestClient[Any], world: World) -> None:
    headers = await sign_in(client, "doc.a@test.example", world.slug_a)
    wrong = await client.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"current_password": "nope", "new_password": "another-long-password"},
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "current_password"
    short = await client.post(
        "/api/v1/auth/password", headers=headers, json={"current_password": PASSWORD, "new_password": "short"}
    )
    assert short.status_code == 400
    assert short.json()["errors"][0]["field"] == "new_password"
    changed = await client.post(
        "/api/v1/auth/password",
        headers=headers,
        json={"current_password": PASSWORD, "new_password": "another-long-password"},
    )
    assert changed.status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    old = await client.post(
        "/api/v1/auth/token", json={"email": "doc.a@test.example", "password": PASSWORD, "tenant": world.slug_a}
    )
    assert old.status_code == 401
    new = await client.post(
        "/api/v1/auth/token",
        json={"email": "doc.a@test.example", "password": "another-long-password", "tenant": world.slug_a},
    )
    assert new.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"email": "doc.a@test.example", "password": "wrong-password", "tenant": "hospital-a"},
        {"email": "nobody@test.example", "password": PASSWORD, "tenant": "hospital-a"},
        {"email": "doc.a@test.example", "password": PASSWORD, "tenant": "no-such-tenant"},
    ],
)
async def test_bad_credentials_get_one_answer(client: AsyncTestClient[Any], world: World, body: dict[str, str]) -> None:
    response = await client.post("/api/v1/auth/token", json=body)
    assert response.status_code == 401
    assert response.json()["detail"] == "email, password or tenant is wrong"


async def test_tenant_is_required_except_for_network_admins(client: AsyncTestClient[Any], world: World) -> None:
    # Without a tenant only a network administrator can sign in; everyone else gets the one answer, so
    # that the endpoint never tells whether a password was right.
    response = await client.post("/api/v1/auth/token", json={"email": "doc.a@test.example", "password": PASSWORD})
    assert response.status_code == 401
    assert response.json()["detail"] == "email, password or tenant is wrong"
    network = await sign_in(client, "net@test.example", None)
    me = (await client.get("/api/v1/auth/me", headers=network)).json()
    assert me["tenant_id"] is None and me["roles"] == ["network_admin"]


async def test_suspended_tenant_tokens_stop_at_once(client: AsyncTestClient[Any], world: World) -> None:
    doc = await sign_in(client, "doc.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/patients", headers=doc)).status_code == 200
    network = await sign_in(client, "net@test.example", None)
    suspended = await client.post(
        f"/api/v1/network/tenants/{world.tenant_a}/suspend", headers=network, json={"reason": "contract ended"}
    )
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    refused = await client.get("/api/v1/patients", headers=doc)
    assert refused.status_code == 403
    assert "suspended" in refused.json()["detail"]
    relogin = await client.post(
        "/api/v1/auth/token", json={"email": "doc.a@test.example", "password": PASSWORD, "tenant": world.slug_a}
    )
    assert relogin.status_code == 403
    # Tenant B is untouched.
    assert (
        await client.get("/api/v1/patients", headers=await sign_in(client, "doc.b@test.example", world.slug_b))
    ).status_code == 200
    await client.post(f"/api/v1/network/tenants/{world.tenant_a}/activate", headers=network)
    # Reactivation revives no token issued before the suspension; signing in again works.
    assert (await client.get("/api/v1/patients", headers=doc)).status_code == 401
    fresh = await sign_in(client, "doc.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/patients", headers=fresh)).status_code == 200


async def test_removed_membership_stops_tokens(client: AsyncTestClient[Any], world: World) -> None:
    doc = await sign_in(client, "doc.a@test.example", world.slug_a)
    admin = await sign_in(client, "admin.a@test.example", world.slug_a)
    me = (await client.get("/api/v1/auth/me", headers=doc)).json()
    assert (await client.delete(f"/api/v1/users/{me['user_id']}", headers=admin)).status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=doc)).status_code == 401


async def test_token_endpoint_is_rate_limited(settings: Settings, world: World) -> None:
    limited = base_settings(
        database_url=settings.database_url,
        migration_database_url=settings.migration_database_url,
        redis_url=settings.redis_url,
        rate_limit_token_per_minute=3,
    )
    async with AsyncTestClient(app=create_app(limited)) as client:
        body = {"email": "doc.a@test.example", "password": "wrong-password", "tenant": world.slug_a}
        codes = [(await client.post("/api/v1/auth/token", json=body)).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        blocked = await client.post("/api/v1/auth/token", json=body)
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        assert blocked.headers["content-type"].startswith("application/problem+json")
        # The rest of the API has its own budget.
        assert (await client.get("/healthz")).status_code == 200


async def test_api_is_rate_limited_per_client(settings: Settings, world: World) -> None:
    async with AsyncTestClient(app=create_app(settings)) as client:
        headers = await sign_in(client, "doc.a@test.example", world.slug_a)
    limited = base_settings(
        database_url=settings.database_url,
        migration_database_url=settings.migration_database_url,
        redis_url=settings.redis_url,
        rate_limit_api_per_minute=5,
    )
    async with AsyncTestClient(app=create_app(limited)) as client:
        codes = [(await client.get("/api/v1/patients", headers=headers)).status_code for _ in range(6)]
        assert codes[:5] == [200] * 5
        assert codes[5] == 429
