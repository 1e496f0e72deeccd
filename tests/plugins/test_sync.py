"""The per-tenant EHR sync, end to end: a tenant admin enables the FHIR connector through the API; the sync job
pulls every page from a local FHIR server into that tenant only, stores the watermarks, and a failing EHR opens
the tenant's breaker for the plugin without failing the job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from core.db import make_engine, make_sessionmaker
from core.encounters.models import Encounter
from core.jobs.events import Event
from core.patients.models import Patient
from core.plugins import sync
from core.plugins.models import PluginEnablement
from core.results.models import LabResult
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World, login
from tests.plugins.fhir_server import FhirServer

TOKEN = "sync-test-static-token"


@pytest.fixture
def ehr() -> Iterator[FhirServer]:
    with FhirServer() as running:
        running.add_bearer(TOKEN)
        yield running


@pytest.fixture
def loopback(settings: Settings) -> Iterator[Settings]:
    allowed = settings.model_copy(update={"plugin_allow_networks": ["127.0.0.0/8"]})
    sync.configure(allowed)
    yield allowed
    sync.configure(settings)


async def _run_sync(settings: Settings, tenant_id: uuid.UUID) -> None:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(tenant_id):
            async with make_sessionmaker(engine)() as session, session.begin():
                event = Event(
                    id=uuid.uuid4(), tenant_id=tenant_id, topic="schedule.plugin_sync", payload={}, aggregate_id=None
                )
                await sync.sync_tenant(session, event)
    finally:
        await engine.dispose()


async def _count(settings: Settings, tenant_id: uuid.UUID, model: Any) -> int:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(tenant_id):
            async with make_sessionmaker(engine)() as session:
                return int(await session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        await engine.dispose()


async def _row(settings: Settings, tenant_id: uuid.UUID) -> PluginEnablement:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(tenant_id):
            async with make_sessionmaker(engine)() as session:
                row = await session.scalar(select(PluginEnablement))
                assert row is not None
                return row
    finally:
        await engine.dispose()


async def test_the_sync_imports_every_page_into_the_enabling_tenant_only(
    client: AsyncTestClient[Any], world: World, loopback: Settings, ehr: FhirServer
) -> None:
    admin = await login(client, "admin.a@test.example", "hospital-a")
    config = {"base_url": ehr.base_url, "auth": "bearer", "bearer_token": TOKEN, "page_size": 7}
    enabled = await client.put("/api/v1/plugins/ehr_fhir", json={"config": config}, headers=admin)
    assert enabled.status_code == 200, enabled.text

    await _run_sync(loopback, world.tenant_a)
    patients = await _count(loopback, world.tenant_a, Patient)
    assert patients >= 20  # the server's patients, over several pages of 7
    assert await _count(loopback, world.tenant_a, Encounter) >= 3
    assert await _count(loopback, world.tenant_a, LabResult) >= 3
    assert await _count(loopback, world.tenant_b, Patient) == 0  # tenant B enabled nothing
    row = await _row(loopback, world.tenant_a)
    assert row.synced_at is not None and set(row.watermarks) >= {"carehub_ehr_pull_patients"}
    assert row.failures == 0 and row.last_success_at is not None

    # Run again: due only after the interval, and nothing is duplicated when it runs.
    await _run_sync(loopback, world.tenant_a)
    assert await _count(loopback, world.tenant_a, Patient) == patients


async def test_a_failing_ehr_opens_the_breaker_and_the_job_goes_on(
    client: AsyncTestClient[Any], world: World, loopback: Settings, ehr: FhirServer
) -> None:
    admin = await login(client, "admin.a@test.example", "hospital-a")
    config = {"base_url": ehr.base_url, "auth": "bearer", "bearer_token": "a-token-the-ehr-does-not-know"}
    assert (await client.put("/api/v1/plugins/ehr_fhir", json={"config": config}, headers=admin)).status_code == 200
    quick = loopback.model_copy(update={"plugin_breaker_failures": 2})
    sync.configure(quick)
    for _ in range(2):
        await _run_sync(quick, world.tenant_a)  # contained: the job itself does not fail
    row = await _row(quick, world.tenant_a)
    assert row.failures == 2 and row.open_until is not None and row.synced_at is None
    assert "401" in (row.last_error or "") or "token" in (row.last_error or "").lower()
    seen = (await client.get("/api/v1/plugins/ehr_fhir", headers=admin)).json()
    assert seen["status"]["failures"] == 2 and seen["status"]["breaker_open_until"] is not None
    assert seen["status"]["last_error"]


async def test_a_record_carehub_refuses_is_kept_for_review_and_the_pull_goes_on(
    client: AsyncTestClient[Any], world: World, loopback: Settings, ehr: FhirServer
) -> None:
    """The EHR holds a patient born in 2099: that patient is refused (and so is their stay, whose patient is now
    unknown), each kept with its reason where admins review inbound messages; every other record is imported and
    the sync catches up (it used to stop at that page at every tick). Once the patient exists, the kept stay is
    replayed into the record."""
    from tests.factories import patient_body
    from tests.plugins.fhir_server import MRN_SYSTEM

    ehr.touch("Patient/p2", birthDate="2099-01-01")
    admin = await login(client, "admin.a@test.example", "hospital-a")
    config = {"base_url": ehr.base_url, "auth": "bearer", "bearer_token": TOKEN, "page_size": 7}
    assert (await client.put("/api/v1/plugins/ehr_fhir", json={"config": config}, headers=admin)).status_code == 200
    await _run_sync(loopback, world.tenant_a)
    row = await _row(loopback, world.tenant_a)
    assert row.synced_at is not None and row.failures == 0  # caught up: the plugin did nothing wrong
    assert await _count(loopback, world.tenant_a, Patient) >= 20
    kept = (await client.get("/api/v1/inbound-messages?status=error", headers=admin)).json()
    reasons = {m["summary"]: m["error"] for m in kept}
    assert "birth_date is in the future" in reasons["carehub_ehr_pull_patients: UpsertPatient refused"]
    stay = next(m for m in kept if m["summary"] == "carehub_ehr_pull_encounters: RecordEncounter refused")
    assert "no patient of this tenant" in stay["error"]

    body = patient_body("MRN1002", identifiers=[{"system": MRN_SYSTEM, "value": "MRN1002"}])
    assert (await client.post("/api/v1/patients", json=body, headers=admin)).status_code == 201
    replayed = await client.post(f"/api/v1/inbound-messages/{stay['id']}/replay", headers=admin)
    assert replayed.status_code == 200 and replayed.json()["status"] == "replayed", replayed.text
    encounters = await _count(loopback, world.tenant_a, Encounter)
    again = await client.post(f"/api/v1/inbound-messages/{stay['id']}/replay", headers=admin)
    assert again.status_code == 409 and await _count(loopback, world.tenant_a, Encounter) == encounters
