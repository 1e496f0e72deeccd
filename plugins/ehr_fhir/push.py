"""Care plans and tasks to the EHR, as R4 CarePlan and Task resources, by conditional update.

Each resource carries carehub's id as an identifier (``urn:carehub:careplan|<id>``, ``urn:carehub:task|<id>``) and
is sent with ``PUT <base>/<Type>?identifier=<system>|<id>``: the EHR creates it the first time (201) and updates
that one afterwards (200), so a retried push never makes a second copy. The patient is found in the EHR by a
search on the identifiers carehub holds for them.
"""

from __future__ import annotations

from typing import Any

from plugin_sdk.payloads import CarePlanPayload, PatientRef, PushResult, TaskPayload
from plugins.ehr_fhir.client import FhirClient
from plugins.ehr_fhir.mapping import reference_key
from plugins.ehr_fhir.transport import FhirError, error_detail
from plugins.ehr_fhir.watermark import instant

CAREPLAN_SYSTEM = "urn:carehub:careplan"
TASK_SYSTEM = "urn:carehub:task"
GOAL_STATUSES = {
    "draft": "proposed",
    "active": "active",
    "on-hold": "on-hold",
    "completed": "completed",
    "revoked": "cancelled",
}
ACTIVITY_STATUSES = {"draft": "not-started", "on-hold": "on-hold", "completed": "completed", "revoked": "cancelled"}
TASK_STATUSES = {
    "requested": "requested",
    "accepted": "accepted",
    "in_progress": "in-progress",
    "completed": "completed",
    "cancelled": "cancelled",
    "failed": "failed",
}


def token(system: str, value: str) -> str:
    """A FHIR token search value ``system|value``, with the search syntax's characters escaped."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")

    return f"{escape(system)}|{escape(value)}"


async def find_patient(client: FhirClient, patient: PatientRef) -> str:
    """``Patient/<id>`` of the one EHR patient with any of ``patient``'s identifiers (narrowed to the MRN system
    when several match); raises :class:`FhirError` when none or several do."""
    values = ",".join(token(i.system, i.value) for i in patient.identifiers)
    bundle, _ = await client.read_json("Patient", {"identifier": values, "_elements": "identifier", "_count": "10"})
    found: dict[str, dict[str, Any]] = {}
    for entry in bundle.get("entry") or []:
        resource = (entry or {}).get("resource") or {}
        if resource.get("resourceType") == "Patient" and resource.get("id"):
            found[str(resource["id"])] = resource
    systems = sorted({i.system for i in patient.identifiers})
    preferred = client.config.patient_identifier_system
    if len(found) > 1 and preferred:
        mine = {(i.system, i.value) for i in patient.identifiers if i.system == preferred}
        found = {
            k: r for k, r in found.items() if any((i.get("system"), i.get("value")) in mine for i in r["identifier"])
        }
    if not found:
        raise FhirError(f"no patient in the EHR has any of the patient's identifiers (systems {', '.join(systems)})")
    if len(found) > 1:
        raise FhirError(f"{len(found)} patients in the EHR match the patient's identifiers: not pushed to any")
    return f"Patient/{next(iter(found))}"


def care_plan_resource(plan: CarePlanPayload, subject: str) -> dict[str, Any]:
    """An R4 CarePlan: goals as contained Goals, activities as ``activity.detail.description``."""
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "identifier": [{"system": CAREPLAN_SYSTEM, "value": plan.id}],
        "status": plan.status,
        "intent": "plan",
        "subject": {"reference": subject},
    }
    if plan.title.strip():
        resource["title"] = plan.title
    period = {k: v.isoformat() for k, v in (("start", plan.period_start), ("end", plan.period_end)) if v}
    if period:
        resource["period"] = period
    goals = [
        {
            "resourceType": "Goal",
            "id": f"goal{n}",
            "lifecycleStatus": GOAL_STATUSES[plan.status],
            "description": {"text": text},
            "subject": {"reference": subject},
        }
        for n, text in enumerate((g for g in plan.goals if g.strip()), start=1)
    ]
    if goals:
        resource["contained"] = goals
        resource["goal"] = [{"reference": f"#{g['id']}"} for g in goals]
    activity_status = ACTIVITY_STATUSES.get(plan.status, "unknown")
    activities = [a for a in plan.activities if a.strip()]
    if activities:
        resource["activity"] = [{"detail": {"status": activity_status, "description": a}} for a in activities]
    return resource


def task_resource(task: TaskPayload, subject: str | None) -> dict[str, Any]:
    """An R4 Task (an order to the EHR's team): the title as ``description``, carehub's description as a note,
    the due time as ``restriction.period.end``."""
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [{"system": TASK_SYSTEM, "value": task.id}],
        "status": TASK_STATUSES[task.status],
        "intent": "order",
        "priority": task.priority,
        "lastModified": instant(task.updated_at),
    }
    if task.title.strip():
        resource["description"] = task.title
    if subject:
        resource["for"] = {"reference": subject}
    if task.description and task.description.strip():
        resource["note"] = [{"text": task.description}]
    if task.due_at:
        resource["restriction"] = {"period": {"end": instant(task.due_at)}}
    return resource


async def conditional_update(client: FhirClient, resource: dict[str, Any], system: str, value: str) -> PushResult:
    """``PUT <Type>?identifier=system|value``; where the EHR keeps it, from ``Location`` or the answer's id."""
    kind = resource["resourceType"]
    response = await client.request("PUT", kind, params={"identifier": token(system, value)}, body=resource)
    if response.status_code == 412:
        raise FhirError(f"several {kind} resources in the EHR have identifier {system}|{value}: not updated", 412)
    if not response.is_success:
        raise FhirError(f"PUT {kind} answered {error_detail(response)}", response.status_code)
    location = response.headers.get("Location") or response.headers.get("Content-Location")
    external_id = reference_key({"reference": location}, kind) if location else None
    if external_id is None and response.content:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("resourceType") == kind and body.get("id"):
            external_id = f"{kind}/{body['id']}"
    if location and "://" not in location:
        location = f"{client.config.base_url}/{location.lstrip('/')}"
    if location is None and external_id:
        location = f"{client.config.base_url}/{external_id}"
    return PushResult(external_id=external_id, location=location)


async def push_care_plan(client: FhirClient, plan: CarePlanPayload) -> PushResult:
    subject = await find_patient(client, plan.patient)
    return await conditional_update(client, care_plan_resource(plan, subject), CAREPLAN_SYSTEM, plan.id)


async def push_task(client: FhirClient, task: TaskPayload) -> PushResult:
    subject = await find_patient(client, task.patient) if task.patient else None
    return await conditional_update(client, task_resource(task, subject), TASK_SYSTEM, task.id)
