"""Care plans and tasks pushed to the tenant's EHR, end to end: created and changed through the JSON API, their
outbox events delivered by the job runtime (receipts, retries and all) to the push handlers, and received by a
local FHIR server through the bundled ehr_fhir plugin."""

from __future__ import annotations

import types
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B.careplan import CarePlan as FhirCarePlan
from fhir.resources.R4B.task import Task as FhirTask
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import make_engine, make_sessionmaker, utcnow
from core.jobs.models import JobDelivery
from core.jobs.runtime import JobRuntime, message_for
from core.outbox import OutboxEvent
from core.plugins import invoke
from core.plugins.models import PluginEnablement
from core.plugins.registry import registry
from core.settings import Settings
from plugin_sdk import Manifest, PluginContext, hookimpl
from plugin_sdk.payloads import CarePlanPayload, PushResult
from tenants.context import tenant_context
from tests.conftest import World, login
from tests.factories import patient_body
from tests.plugins.fhir_server import MRN_SYSTEM, FhirServer

TOKEN = "push-test-static-token"
PLAN_HANDLER = "ehr-push-care-plan"
TASK_HANDLER = "ehr-push-task"


@pytest.fixture
def settings(settings: Settings) -> Iterator[Settings]:
    """Plugins may reach the loopback network (the test's EHR); the breaker opens after two failures in a row."""
    changed = settings.model_copy(
        update={
            "plugin_allow_networks": ["127.0.0.0/8"],
            "plugin_breaker_failures": 2,
            "plugin_breaker_cooldown_ms": 60_000,  # a test ends the cool-down itself (_cool_down), never a clock
            "job_min_backoff_ms": 10,
        }
    )
    invoke.configure(changed)
    yield changed
    invoke.configure(settings)


@pytest.fixture
def ehr() -> Iterator[FhirServer]:
    with FhirServer() as running:
        running.add_bearer(TOKEN)
        yield running


class Spy:
    """A second EHR plugin that may have substance use disorder records; it answers, or raises when told."""

    def __init__(self) -> None:
        self.plans: list[CarePlanPayload] = []
        self.broken = False

    async def push(self, care_plan: CarePlanPayload) -> PushResult:
        if self.broken:
            raise RuntimeError("the spy EHR is down")
        self.plans.append(care_plan)
        return PushResult(external_id=f"spy-{care_plan.id}")


@pytest.fixture
def spy() -> Iterator[Spy]:
    found = Spy()
    module = types.ModuleType("carehub_spy_ehr")

    async def carehub_ehr_push_care_plan(context: PluginContext, care_plan: CarePlanPayload) -> PushResult:
        return await found.push(care_plan)

    module.carehub_ehr_push_care_plan = hookimpl(carehub_ehr_push_care_plan)  # type: ignore[attr-defined]
    module.MANIFEST = Manifest(  # type: ignore[attr-defined]
        name="spy_ehr",
        version="0.1.0",
        sdk=">=1.0,<2",
        title="Spy EHR",
        hooks=("carehub_ehr_push_care_plan",),
        config_schema={"type": "object", "properties": {}},
        data_categories=("care_plan", "substance_use_disorder"),
    )
    plugins = registry()
    plugins.add(module, "test", "spy_ehr")
    assert "spy_ehr" in plugins.installed, plugins.refused
    try:
        yield found
    finally:
        plugins.installed.pop("spy_ehr", None)
        plugins.pm.unregister(name="spy_ehr")


async def _enable(client: AsyncTestClient[Any], headers: dict[str, str], name: str, config: dict[str, Any]) -> None:
    answer = await client.put(f"/api/v1/plugins/{name}", json={"enabled": True, "config": config}, headers=headers)
    assert answer.status_code == 200, answer.text


async def _enable_ehr(client: AsyncTestClient[Any], ehr: FhirServer, tenant: str = "hospital-a") -> dict[str, str]:
    admin = await login(client, f"admin.{tenant[-1]}@test.example", tenant)
    config = {
        "base_url": ehr.base_url,
        "auth": "bearer",
        "bearer_token": TOKEN,
        "patient_identifier_system": MRN_SYSTEM,
    }
    await _enable(client, admin, "ehr_fhir", config)
    return admin


async def _patient(client: AsyncTestClient[Any], headers: dict[str, str], mrn: str = "MRN1001") -> str:
    """A patient the EHR knows (its p1 has the MRN MRN1001 under the EHR's MRN system)."""
    body = patient_body(f"CH-{mrn}", identifiers=[{"system": MRN_SYSTEM, "value": mrn}])
    answer = await client.post("/api/v1/patients", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def _deliver(settings: Settings, tenant_id: uuid.UUID, handler: str, topics: tuple[str, ...]) -> int:
    """Deliver every outbox event of ``topics`` to ``handler`` through the job runtime, as a worker would; how many
    deliveries are left failing (waiting for their retry)."""
    engine = make_engine(settings.database_url)
    runtime = JobRuntime(settings.model_copy(update={"redis_url": None}))
    try:
        with tenant_context(tenant_id):
            async with make_sessionmaker(engine)() as session:
                events = list(
                    await session.scalars(
                        select(OutboxEvent).where(OutboxEvent.topic.in_(topics)).order_by(OutboxEvent.created_at)
                    )
                )
            for event in events:
                await runtime.deliver(message_for(event, handler))
            async with make_sessionmaker(engine)() as session:
                return len(list(await session.scalars(select(JobDelivery).where(JobDelivery.handler == handler))))
    finally:
        await runtime.dispose()
        await engine.dispose()


async def _cool_down(settings: Settings, tenant_id: uuid.UUID, plugin: str) -> None:
    """The breaker's cool-down passes now (a sleep would race a slow machine: the breaker closing before the test
    looked at it open)."""
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(tenant_id):
            async with make_sessionmaker(engine)() as session, session.begin():
                row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == plugin))
                assert row is not None and row.open_until is not None
                row.open_until = utcnow() - timedelta(seconds=1)
    finally:
        await engine.dispose()


async def _audits(settings: Settings, tenant_id: uuid.UUID, action: str) -> list[AuditEvent]:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(tenant_id):
            async with make_sessionmaker(engine)() as session:
                return list(await session.scalars(select(AuditEvent).where(AuditEvent.action == action)))
    finally:
        await engine.dispose()


async def test_a_care_plan_is_pushed_when_created_and_updated_in_place(
    client: AsyncTestClient[Any], world: World, settings: Settings, ehr: FhirServer
) -> None:
    admin = await _enable_ehr(client, ehr)
    doc = await login(client, "doc.a@test.example", "hospital-a")
    patient_id = await _patient(client, doc)
    created = await client.post(
        "/api/v1/care-plans", json={"patient_id": patient_id, "title": "Heart failure plan"}, headers=doc
    )
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    topics = ("care_plan.created", "care_plan.updated")

    assert await _deliver(settings, world.tenant_a, PLAN_HANDLER, topics) == 0
    assert len(ehr.pushed) == 1
    resource = ehr.pushed[0]
    FhirCarePlan.model_validate({**resource, "id": "x"})
    assert {"system": "urn:carehub:careplan", "value": plan_id} in resource["identifier"]
    assert resource["subject"] == {"reference": "Patient/p1"} and resource["title"] == "Heart failure plan"

    changed = await client.patch(f"/api/v1/care-plans/{plan_id}", json={"title": "HF plan, revised"}, headers=doc)
    assert changed.status_code == 200, changed.text
    assert await _deliver(settings, world.tenant_a, PLAN_HANDLER, topics) == 0  # the first event: a receipt, no push
    assert len(ehr.pushed) == 2
    stored = list(ehr.resources["CarePlan"].values())
    assert len(stored) == 1 and stored[0]["title"] == "HF plan, revised"  # updated in place, no second copy

    pushes = (await client.get("/api/v1/plugins/ehr_fhir/pushes", headers=admin)).json()
    assert len(pushes) == 1
    assert pushes[0]["resource_id"] == plan_id and pushes[0]["status"] == "sent" and pushes[0]["version"] == 2
    assert pushes[0]["external_id"] == f"CarePlan/{stored[0]['id']}"
    assert pushes[0]["location"].startswith(ehr.base_url) and pushes[0]["attempts"] == 1
    assert len(await _audits(settings, world.tenant_a, "plugin.push")) == 2

    # Tenant B did not enable the plugin: its plans go nowhere.
    doc_b = await login(client, "doc.b@test.example", "hospital-b")
    other = await _patient(client, doc_b)
    answer = await client.post("/api/v1/care-plans", json={"patient_id": other, "title": "B's plan"}, headers=doc_b)
    assert answer.status_code == 201
    assert await _deliver(settings, world.tenant_b, PLAN_HANDLER, topics) == 0
    assert len(ehr.pushed) == 2
    assert (
        await client.get(
            "/api/v1/plugins/ehr_fhir/pushes", headers=await login(client, "admin.b@test.example", "hospital-b")
        )
    ).json() == []


async def test_a_task_is_pushed_on_creation_and_status_changes_not_on_reassignment(
    client: AsyncTestClient[Any], world: World, settings: Settings, ehr: FhirServer
) -> None:
    await _enable_ehr(client, ehr)
    doc = await login(client, "doc.a@test.example", "hospital-a")
    patient_id = await _patient(client, doc)
    body = {"patient_id": patient_id, "title": "Book cardiology follow-up", "priority": "urgent"}
    created = await client.post("/api/v1/tasks", json=body, headers=doc)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    topics = ("task.created", "task.updated", "task.accepted")

    assert await _deliver(settings, world.tenant_a, TASK_HANDLER, topics) == 0
    assert len(ehr.pushed) == 1
    FhirTask.model_validate({**ehr.pushed[0], "id": "x"})
    assert ehr.pushed[0]["for"] == {"reference": "Patient/p1"} and ehr.pushed[0]["status"] == "requested"
    assert {"system": "urn:carehub:task", "value": task_id} in ehr.pushed[0]["identifier"]

    moved = await client.post(f"/api/v1/tasks/{task_id}/transition", json={"status": "accepted"}, headers=doc)
    assert moved.status_code == 200, moved.text
    owner = created.json()["owner_id"]
    assert (await client.patch(f"/api/v1/tasks/{task_id}", json={"assignee_id": owner}, headers=doc)).status_code == 200
    assert await _deliver(settings, world.tenant_a, TASK_HANDLER, topics) == 0
    assert [r["status"] for r in ehr.pushed] == ["requested", "accepted"]  # the reassignment is carehub's own
    assert len(ehr.resources["Task"]) == 1


async def test_a_labelled_plan_goes_only_to_a_plugin_that_declares_the_label(
    client: AsyncTestClient[Any], world: World, settings: Settings, ehr: FhirServer, spy: Spy
) -> None:
    admin = await _enable_ehr(client, ehr)
    await _enable(client, admin, "spy_ehr", {})
    doc = await login(client, "doc.a@test.example", "hospital-a")
    patient_id = await _patient(client, doc)
    body = {"patient_id": patient_id, "title": "Opioid use disorder plan", "data_category": "substance_use_disorder"}
    created = await client.post("/api/v1/care-plans", json=body, headers=doc)
    assert created.status_code == 201, created.text

    assert await _deliver(settings, world.tenant_a, PLAN_HANDLER, ("care_plan.created",)) == 0
    assert ehr.pushed == []  # ehr_fhir's manifest does not name substance_use_disorder
    assert [p.id for p in spy.plans] == [created.json()["id"]]
    assert any(i.system == MRN_SYSTEM and i.value == "MRN1001" for i in spy.plans[0].patient.identifiers)


async def test_a_failing_ehr_is_retried_without_pushing_again_where_it_worked(
    client: AsyncTestClient[Any], world: World, settings: Settings, ehr: FhirServer, spy: Spy
) -> None:
    admin = await _enable_ehr(client, ehr)
    await _enable(client, admin, "spy_ehr", {})
    doc = await login(client, "doc.a@test.example", "hospital-a")
    patient_id = await _patient(client, doc)
    created = await client.post("/api/v1/care-plans", json={"patient_id": patient_id, "title": "Plan"}, headers=doc)
    plan_id = created.json()["id"]
    topics = ("care_plan.created",)

    ehr.fail_next(2, status=500, retry_after=None)
    assert await _deliver(settings, world.tenant_a, PLAN_HANDLER, topics) == 1  # failed, waiting for its retry
    assert len(spy.plans) == 1 and ehr.pushed == []
    pushes = (await client.get("/api/v1/plugins/ehr_fhir/pushes?status=failed", headers=admin)).json()
    assert (
        pushes[0]["resource_id"] == plan_id
        and "GET /fhir/Patient answered" in pushes[0]["last_error"]
        and pushes[0]["attempts"] == 1
    )
    failures = await _audits(settings, world.tenant_a, "plugin.failure")
    assert [f.detail["hook"] for f in failures] == ["carehub_ehr_push_care_plan"]

    assert await _deliver(settings, world.tenant_a, PLAN_HANDLER, topics) == 1  # the retry fails again
    status = (await client.get("/api/v1/plugins/ehr_fhir", headers=admin)).json()["status"]
    assert status["failures"] == 2 and status["breaker_open_until"] is not None  # open after two
    asked = len(ehr.requests)
    assert await _deliver(settings, world.tenant_a, PLAN_HANDLER, topics) == 1  # open: not called
    assert len(ehr.requests) == asked
    assert len(spy.plans) == 1  # the spy had it from the first attempt: never sent again

    await _cool_down(settings, world.tenant_a, "ehr_fhir")  # the next retry is the trial call
    assert await _deliver(settings, world.tenant_a, PLAN_HANDLER, topics) == 0
    assert len(ehr.pushed) == 1 and len(spy.plans) == 1
    status = (await client.get("/api/v1/plugins/ehr_fhir", headers=admin)).json()["status"]
    assert status["failures"] == 0 and status["breaker_open_until"] is None
    sent = (await client.get(f"/api/v1/plugins/ehr_fhir/pushes?resource_id={plan_id}", headers=admin)).json()
    assert sent[0]["status"] == "sent" and sent[0]["attempts"] == 3 and sent[0]["external_id"].startswith("CarePlan/")
