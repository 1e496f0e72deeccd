"""Plugins through the API: a tenant admin enables the FHIR connector for one tenant with a configuration its
schema checks (422 at the failing path), its secrets stored encrypted and never answered; the network admin can
forbid it everywhere; another tenant sees none of it."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import make_engine, make_sessionmaker
from core.plugins.models import PluginEnablement
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World, login

SECRET = "not-to-be-seen-bearer-token-1234"
BEARER = {"base_url": "https://ehr.example.org/fhir", "auth": "bearer", "bearer_token": SECRET}


async def test_enable_for_one_tenant_with_secrets_kept_encrypted(
    client: AsyncTestClient[Any], world: World, settings: Settings
) -> None:
    admin_a = await login(client, "admin.a@test.example", "hospital-a")
    listed = await client.get("/api/v1/plugins", headers=admin_a)
    assert listed.status_code == 200, listed.text
    names = {p["name"]: p for p in listed.json()}
    assert "ehr_fhir" in names and not names["ehr_fhir"]["enabled"]
    assert "email_smtp" not in names  # network-wide channels are the operator's, not a tenant's

    enabled = await client.put("/api/v1/plugins/ehr_fhir", json={"enabled": True, "config": BEARER}, headers=admin_a)
    assert enabled.status_code == 200, enabled.text
    body = enabled.json()
    assert body["enabled"] and body["secrets_set"] == ["bearer_token"]
    assert SECRET not in enabled.text and "bearer_token" not in body["config"]

    # Stored encrypted: not in the row's plain columns, and the audit event names the key, not the value.
    engine = make_engine(settings.database_url)
    with tenant_context(world.tenant_a):
        async with make_sessionmaker(engine)() as session:
            row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == "ehr_fhir"))
            assert row is not None and row.secrets and SECRET not in row.secrets and SECRET not in str(row.config)
            events = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "plugin.enable"))).all()
            assert len(events) == 1 and events[0].detail["secrets_changed"] == ["bearer_token"]
            assert SECRET not in str(events[0].detail)
    await engine.dispose()

    # Changing an ordinary key keeps the stored secret.
    again = await client.put(
        "/api/v1/plugins/ehr_fhir",
        json={"config": {"base_url": "https://ehr2.example.org/fhir", "auth": "bearer"}},
        headers=admin_a,
    )
    assert again.status_code == 200, again.text
    assert again.json()["secrets_set"] == ["bearer_token"]

    # Tenant B sees the plugin as not enabled, and nothing of A's configuration.
    admin_b = await login(client, "admin.b@test.example", "hospital-b")
    seen_b = await client.get("/api/v1/plugins/ehr_fhir", headers=admin_b)
    assert seen_b.status_code == 200 and not seen_b.json()["enabled"] and seen_b.json()["config"] == {}

    off = await client.delete("/api/v1/plugins/ehr_fhir", headers=admin_a)
    assert off.status_code == 200 and not off.json()["enabled"]


async def test_an_invalid_config_is_refused_at_its_path(client: AsyncTestClient[Any], world: World) -> None:
    admin_a = await login(client, "admin.a@test.example", "hospital-a")
    missing = {"base_url": "https://ehr.example.org/fhir", "auth": "smart_backend", "client_id": "c"}
    answer = await client.put("/api/v1/plugins/ehr_fhir", json={"config": missing}, headers=admin_a)
    assert answer.status_code == 422, answer.text
    assert "config.token_url" in answer.text
    wrong = await client.put(
        "/api/v1/plugins/ehr_fhir", json={"config": {**BEARER, "sync_interval_minutes": 0}}, headers=admin_a
    )
    assert wrong.status_code == 422 and "config.sync_interval_minutes" in wrong.text
    unknown = await client.put("/api/v1/plugins/no_such_plugin", json={"config": {}}, headers=admin_a)
    assert unknown.status_code == 404
    listed = await client.get("/api/v1/plugins/ehr_fhir", headers=admin_a)
    assert not listed.json()["enabled"]  # nothing was stored


async def test_only_tenant_admins_manage_plugins(client: AsyncTestClient[Any], world: World) -> None:
    doctor = await login(client, "doc.a@test.example", "hospital-a")
    answer = await client.put("/api/v1/plugins/ehr_fhir", json={"config": BEARER}, headers=doctor)
    assert answer.status_code == 403


async def test_the_network_admin_forbids_a_plugin_everywhere(client: AsyncTestClient[Any], world: World) -> None:
    net = await login(client, "net@test.example", None)
    admin_a = await login(client, "admin.a@test.example", "hospital-a")
    assert (await client.put("/api/v1/plugins/ehr_fhir", json={"config": BEARER}, headers=admin_a)).status_code == 200
    forbid = await client.put(
        "/api/v1/network/plugins/ehr_fhir", json={"allowed": False, "reason": "under review"}, headers=net
    )
    assert forbid.status_code == 200, forbid.text
    seen = (await client.get("/api/v1/plugins/ehr_fhir", headers=admin_a)).json()
    assert not seen["allowed"] and not seen["enabled"] and seen["secrets_set"] == ["bearer_token"]
    refused = await client.put("/api/v1/plugins/ehr_fhir", json={"config": BEARER}, headers=admin_a)
    assert refused.status_code == 409 and "network administrators" in refused.text
    policies = {p["plugin"]: p for p in (await client.get("/api/v1/network/plugins", headers=net)).json()}
    assert policies["ehr_fhir"]["allowed"] is False and policies["email_smtp"]["allowed"] is True
    assert (
        await client.put("/api/v1/network/plugins/ehr_fhir", json={"allowed": True}, headers=net)
    ).status_code == 200
    assert (await client.get("/api/v1/plugins/ehr_fhir", headers=admin_a)).json()["enabled"]
    # A tenant admin cannot change the network's policy.
    assert (
        await client.put("/api/v1/network/plugins/ehr_fhir", json={"allowed": False}, headers=admin_a)
    ).status_code == 403
