"""Probes and the OpenAPI document."""

from __future__ import annotations

import uuid
from typing import Any

from litestar.testing import AsyncTestClient

from api.app import create_app
from core.settings import Settings
from tests.conftest import base_settings


async def test_healthz_and_readyz(client: AsyncTestClient[Any], settings: Settings) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"] == ("ok (redis)" if settings.redis_url else "ok (in-process)")


async def test_readyz_reports_an_unreachable_broker_and_database(settings: Settings) -> None:
    # Without the broker the instance still serves (writes wait in the outbox): ready, and degraded.
    broken = base_settings(database_url=settings.database_url, redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(broken)) as client:
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["broker"].startswith("unreachable")
        assert response.json()["degraded"] == ["broker"]
        scrape = await client.get("/metrics")
        assert scrape.status_code == 200, scrape.text
        assert "carehub_broker_up 0" in scrape.text and "carehub_database_up 1" in scrape.text
        assert "carehub_outbox_unpublished " in scrape.text
    no_db = base_settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    app = create_app(no_db)
    app.on_startup.clear()  # the role decision point cannot load without a database; readyz must still answer
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["database"].startswith("unreachable")
        scrape = await client.get("/metrics")
        assert scrape.status_code == 200, scrape.text
        samples = [line for line in scrape.text.splitlines() if not line.startswith("#")]
        assert "carehub_database_up 0" in samples
        assert not any(line.startswith("carehub_outbox_unpublished ") for line in samples)  # not read: left out


async def test_openapi_documents_every_route(client: AsyncTestClient[Any]) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/v1/auth/token",
        "/api/v1/patients",
        "/api/v1/patients/{patient_id}",
        "/api/v1/network/tenants",
        "/api/v1/users",
        "/api/v1/audit-events",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    create = paths["/api/v1/patients"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create["$ref"].endswith("PatientCreate")
    page = await client.get("/schema/swagger")
    assert page.status_code == 200 and "swagger" in page.text.lower()


async def test_an_unreachable_database_answers_503(settings: Settings) -> None:
    from api.tokens import TokenService
    from core.authz import DEFAULT_POLICIES, Authorizer

    broken = base_settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    app = create_app(broken)
    # As if the database went away after start-up (start-up itself needs it to load the permission rules).
    app.on_startup.clear()
    app.state.hub.authorizer = Authorizer([("p", *rule) for rule in DEFAULT_POLICIES])
    token, _ = TokenService(broken).issue(uuid.uuid4(), uuid.uuid4(), 1)
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/api/v1/patients", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2"
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_requests_go_through_while_the_rate_limit_store_is_down(settings: Settings, world: Any) -> None:
    """Redis only keeps rate-limit counters for the API: while it is unreachable the API keeps answering."""
    from tests.conftest import sign_in

    down = base_settings(
        database_url=settings.database_url,
        migration_database_url=settings.migration_database_url,
        redis_url="redis://127.0.0.1:1/0",
        rate_limit_api_per_minute=5,
    )
    async with AsyncTestClient(app=create_app(down)) as client:
        headers = await sign_in(client, "doc.a@test.example", world.slug_a)
        codes = [(await client.get("/api/v1/patients", headers=headers)).status_code for _ in range(3)]
        assert codes == [200, 200, 200]
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["degraded"] == ["broker"]


async def test_every_answer_carries_a_request_id(client: AsyncTestClient[Any]) -> None:
    ok = await client.get("/healthz")
    assert len(ok.headers["x-request-id"]) == 32
    assert ok.headers["x-request-id"] != (await client.get("/healthz")).headers["x-request-id"]
    kept = await client.get("/healthz", headers={"X-Request-ID": "gateway-42.a"})
    assert kept.headers["x-request-id"] == "gateway-42.a"
    replaced = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert replaced.headers["x-request-id"] != "bad id with spaces"
    refused = await client.get("/api/v1/patients", headers={"X-Request-ID": "trace-1"})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"] == "trace-1"
    assert refused.json()["request_id"] == "trace-1"
