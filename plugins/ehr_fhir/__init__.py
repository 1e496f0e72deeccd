"""Bundled EHR connector: a tenant's EHR over FHIR R4 REST.

Pulls Patients, Encounters, Conditions and Observations changed since the last sync (``_lastUpdated`` searches,
one searchset page per hook call: :mod:`plugins.ehr_fhir.watermark`), and pushes carehub's care plans and tasks
back as CarePlan and Task by conditional update (:mod:`plugins.ehr_fhir.push`). Authenticates with SMART Backend
Services (a JWT assertion signed RS384 or ES384, :mod:`plugins.ehr_fhir.auth`) or a static bearer token; the
configuration is described by :data:`plugins.ehr_fhir.config.CONFIG_SCHEMA`.

Calls only the hosts of ``base_url`` and ``token_url``, through the host's guarded client; a URL the EHR hands
back on any other origin is refused. A 429 or 503 is waited out briefly (``Retry-After``), then left to the
host's worker to retry.
"""

from __future__ import annotations

import httpx

from plugin_sdk import Manifest, PluginContext, PullBatch, hookimpl
from plugin_sdk.payloads import CarePlanPayload, Health, PushResult, TaskPayload
from plugins.ehr_fhir import push
from plugins.ehr_fhir.client import FhirClient
from plugins.ehr_fhir.config import CONFIG_SCHEMA
from plugins.ehr_fhir.pull import pull
from plugins.ehr_fhir.transport import FhirError

__all__ = [
    "MANIFEST",
    "carehub_ehr_pull_conditions",
    "carehub_ehr_pull_encounters",
    "carehub_ehr_pull_observations",
    "carehub_ehr_pull_patients",
    "carehub_ehr_push_care_plan",
    "carehub_ehr_push_task",
    "carehub_health_check",
]

MANIFEST = Manifest(
    name="ehr_fhir",
    version="1.0.0",
    sdk=">=1.0,<2",
    title="EHR (FHIR R4)",
    description=(
        "Imports patients, encounters, conditions and observations from the tenant's EHR over FHIR R4, and sends "
        "care plans and tasks back. SMART Backend Services or a bearer token."
    ),
    vendor="carehub",
    hooks=(
        "carehub_health_check",
        "carehub_ehr_pull_patients",
        "carehub_ehr_pull_encounters",
        "carehub_ehr_pull_conditions",
        "carehub_ehr_pull_observations",
        "carehub_ehr_push_care_plan",
        "carehub_ehr_push_task",
    ),
    config_schema=CONFIG_SCHEMA,
    data_categories=("demographics", "clinical_results", "care_plan", "tasks_appointments"),
    outbound_config_keys=("base_url", "token_url"),
)


@hookimpl
async def carehub_health_check(context: PluginContext) -> Health:
    """A token (SMART), the CapabilityStatement (an R4 server?), and a count-only Patient search (is the token
    accepted for reading?)."""
    client = FhirClient(context)
    try:
        capability, _ = await client.read_json("metadata")
        version = str(capability.get("fhirVersion") or "")
        if capability.get("resourceType") != "CapabilityStatement":
            return Health(ok=False, detail="metadata did not answer a CapabilityStatement")
        if not version.startswith("4.0"):
            return Health(ok=False, detail=f"the server speaks FHIR {version or '(unstated)'}, not R4 (4.0.x)")
        await client.read_json("Patient", {"_summary": "count"})
    except (FhirError, httpx.HTTPError) as exc:
        return Health(ok=False, detail=str(exc)[:500])
    software = (capability.get("software") or {}).get("name")
    return Health(ok=True, detail=f"FHIR {version}" + (f" ({software})" if software else ""))


@hookimpl
async def carehub_ehr_pull_patients(context: PluginContext, since: str | None) -> PullBatch:
    """Patients changed since the watermark, one page per call."""
    return await pull(context, "Patient", since)


@hookimpl
async def carehub_ehr_pull_encounters(context: PluginContext, since: str | None) -> PullBatch:
    """Inpatient, emergency and observation encounters changed since the watermark, one page per call."""
    return await pull(context, "Encounter", since)


@hookimpl
async def carehub_ehr_pull_conditions(context: PluginContext, since: str | None) -> PullBatch:
    """Conditions changed since the watermark, one page per call."""
    return await pull(context, "Condition", since)


@hookimpl
async def carehub_ehr_pull_observations(context: PluginContext, since: str | None) -> PullBatch:
    """Laboratory results and vital signs changed since the watermark, one page per call."""
    return await pull(context, "Observation", since)


@hookimpl
async def carehub_ehr_push_care_plan(context: PluginContext, care_plan: CarePlanPayload) -> PushResult:
    """The care plan as a CarePlan, created or updated by its carehub identifier."""
    return await push.push_care_plan(FhirClient(context), care_plan)


@hookimpl
async def carehub_ehr_push_task(context: PluginContext, task: TaskPayload) -> PushResult:
    """The task as a Task, created or updated by its carehub identifier."""
    return await push.push_task(FhirClient(context), task)
