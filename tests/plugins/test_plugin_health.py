"""POST /api/v1/plugins/{name}/health: the plugin's own health check with the tenant's configuration, always an
answer (healthy or not, never a 500), recorded on the plugin's status and audited; 404 outside the tenant's
enabled plugins, 409 for a plugin without a health check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World, login
from tests.plugins.fhir_server import FhirServer

TOKEN = "health-test-static-token"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"plugin_allow_networks": ["127.0.0.0/8"], "plugin_timeout_ms": 5000})


@pytest.fixture
def ehr() -> Iterator[FhirServer]:
    with FhirServer() as running:
        running.add_bearer(TOKEN)
        yield running


async def _enable(client: AsyncTestClient[Any], headers: dict[str, str], base_url: str) -> None:
    config = {"base_url": base_url, "auth": "bearer", "bearer_token": TOKEN}
    answer = await client.put("/api/v1/plugins/ehr_fhir", json={"config": config}, headers=headers)
    assert answer.status_code == 200, answer.text


async def test_healthy_then_unhealthy_when_the_ehr_is_down(
    client: AsyncTestClient[Any], world: World, settings: Settings, ehr: FhirServer
) -> None:
    admin = await login(client, "admin.a@test.example", "hospital-a")
    await _enable(client, admin, ehr.base_url)
    healthy = await client.post("/api/v1/plugins/ehr_fhir/health", headers=admin)
    assert healthy.status_code == 200, healthy.text
    assert healthy.json()["ok"] is True and healthy.json()["detail"].startswith("FHIR 4.0")
    status = (await client.get("/api/v1/plugins/ehr_fhir", headers=admin)).json()["status"]
    assert status["health_ok"] is True and status["health_at"] is not None

    ehr.__exit__(None, None, None)  # the EHR goes away
    down = await client.post("/api/v1/plugins/ehr_fhir/health", headers=admin)
    assert down.status_code == 200, down.text
    assert down.json()["ok"] is False and down.json()["detail"]
    status = (await client.get("/api/v1/plugins/ehr_fhir", headers=admin)).json()["status"]
    assert status["health_ok"] is False and status["health_detail"] == down.json()["detail"]

    engine = make_engine(settings.database_url)
    try:
        with tenant_context(world.tenant_a):
            async with make_sessionmaker(engine)() as session:
                checks = list(
                    await session.scalars(select(AuditEvent).where(AuditEvent.action == "plugin.health_check"))
                )
    finally:
        await engine.dispose()
    assert sorted(c.outcome for c in checks) == ["failure", "success"]


async def test_a_plugin_that_fails_its_check_is_contained(
    client: AsyncTestClient[Any], world: World, settings: Settings, ehr: FhirServer
) -> None:
    """The plugin raises (a bug of its own): an unhealthy answer with the error, counted by the breaker."""
    admin = await login(client, "admin.a@test.example", "hospital-a")
    await _enable(client, admin, ehr.base_url)
    from plugins import ehr_fhir

    original = ehr_fhir.FhirClient
    ehr_fhir.FhirClient = None  # type: ignore[assignment,misc]  # calling it raises TypeError inside the hook
    try:
        answer = await client.post("/api/v1/plugins/ehr_fhir/health", headers=admin)
    finally:
        ehr_fhir.FhirClient = original  # type: ignore[misc]
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is False and "TypeError" in answer.json()["detail"]
    status = (await client.get("/api/v1/plugins/ehr_fhir", headers=admin)).json()["status"]
    assert status["failures"] == 1 and "TypeError" in status["last_error"]


async def test_not_enabled_here_is_404_and_no_health_check_is_409(
    client: AsyncTestClient[Any], world: World, ehr: FhirServer
) -> None:
    admin_a = await login(client, "admin.a@test.example", "hospital-a")
    admin_b = await login(client, "admin.b@test.example", "hospital-b")
    await _enable(client, admin_a, ehr.base_url)
    other_tenant = await client.post("/api/v1/plugins/ehr_fhir/health", headers=admin_b)
    unknown = await client.post("/api/v1/plugins/no_such_plugin/health", headers=admin_b)
    assert other_tenant.status_code == unknown.status_code == 404
    assert (await client.post("/api/v1/plugins/ehr_fhir/health", headers=admin_a)).status_code == 200
    doc = await login(client, "doc.a@test.example", "hospital-a")
    assert (await client.post("/api/v1/plugins/ehr_fhir/health", headers=doc)).status_code == 403

    enabled = await client.put("/api/v1/plugins/ehr_hl7v2", json={"config": {}}, headers=admin_b)
    assert enabled.status_code == 200, enabled.text
    none = await client.post("/api/v1/plugins/ehr_hl7v2/health", headers=admin_b)
    assert none.status_code == 409 and "no health check" in none.text
