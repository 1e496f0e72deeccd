"""Care plans and tasks to the tenant's EHR: the handlers of the care plan and task events.

For the event's tenant, each plugin the tenant enabled and the network allows, that implements the push hook and
whose manifest declares the record's category (``care_plan``, ``tasks_appointments``) and, for a record with a
sensitive label, that label too, is sent the record as it now stands (re-read: the event carries only ids), with
the patient's identifiers. A record that is gone has nothing to send.

Each call is contained (time limit, checked result, the plugin's breaker for the tenant) and its outcome kept per
plugin and record (:class:`~core.plugins.models.PluginPush`). A failing plugin does not stop the others. When one
was not sent, the handler raises :class:`~core.jobs.events.PartlyDone`: the job is retried with backoff, and the
outcomes (the EHR's answers, the errors, the breakers' counts, the failure audit) are kept in the transaction that
records the failure. The retry then sends only to the plugins that do not yet hold the record as it stands.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.careplans.models import CarePlan
from core.db import utcnow
from core.fhir.common import mrn_system
from core.jobs.events import PartlyDone
from core.patients.models import Patient, PatientIdentifier
from core.plugins import invoke
from core.plugins.effects import actor_for
from core.plugins.models import PluginEnablement, PluginPush
from core.plugins.outcomes import failed
from core.plugins.registry import Installed, registry
from core.plugins.service import config_of, is_allowed, policies_in
from core.settings import Settings
from core.tasks.models import Task
from plugin_sdk.payloads import CarePlanPayload, Identifier, PatientRef, PushResult, TaskPayload
from tenants.models import Tenant

if TYPE_CHECKING:
    from core.jobs.events import Event

CARE_PLAN_HOOK = "carehub_ehr_push_care_plan"
TASK_HOOK = "carehub_ehr_push_task"
# The task changes an EHR is told of. The owner, the assignee and escalations are carehub's own routing of the work.
TASK_FIELDS = frozenset({"title", "description", "priority", "due_at", "data_category"})


@dataclass(frozen=True)
class Record:
    """A record to send, as it now stands."""

    resource_type: str  # CarePlan or Task
    id: uuid.UUID
    patient_id: uuid.UUID
    hook: str
    category: str
    label: str | None
    version: int | None
    updated_at: datetime
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    plugin: str
    result: PushResult | None = None
    error: str | None = None
    called: bool = True  # False: not called, its breaker being open


async def patient_ref(session: AsyncSession, patient_id: uuid.UUID) -> PatientRef | None:
    """The patient as other systems know them: the identifiers the tenant holds, then the tenant's MRN (under
    ``urn:carehub:tenant:<id>:mrn``, as carehub's FHIR API names it)."""
    patient = await session.get(Patient, patient_id)
    if patient is None:
        return None
    rows = await session.scalars(
        select(PatientIdentifier).where(PatientIdentifier.patient_id == patient_id).order_by(PatientIdentifier.system)
    )
    identifiers = [Identifier(system=row.system, value=row.value) for row in rows]
    mrn = Identifier(system=mrn_system(patient.tenant_id), value=patient.mrn)
    if mrn not in identifiers:
        identifiers.append(mrn)
    return PatientRef(identifiers=tuple(identifiers))


async def push_care_plan(session: AsyncSession, event: Event) -> None:
    """``care_plan.created`` and ``care_plan.updated``: the plan to every EHR plugin that may have it."""
    plan = await session.get(CarePlan, uuid.UUID(str(event.payload["care_plan_id"])))
    patient = await patient_ref(session, plan.patient_id) if plan is not None else None
    if plan is None or patient is None:
        return
    payload = CarePlanPayload(
        id=str(plan.id),
        patient=patient,
        title=plan.title,
        status=plan.status,  # type: ignore[arg-type]
        period_start=plan.period_start,
        period_end=plan.period_end,
        goals=tuple(goal.description for goal in plan.goals),
        activities=tuple(activity.description for activity in plan.activities),
        updated_at=plan.updated_at,
    )
    record = Record(
        resource_type="CarePlan",
        id=plan.id,
        patient_id=plan.patient_id,
        hook=CARE_PLAN_HOOK,
        category="care_plan",
        label=plan.data_category,
        version=plan.version,
        updated_at=plan.updated_at,
        arguments={"care_plan": payload},
    )
    await push(session, event, record)


async def push_task(session: AsyncSession, event: Event) -> None:
    """``task.created``, ``task.updated`` (of a field an EHR shows) and each status change: the task to every EHR
    plugin that may have it."""
    if event.topic == "task.updated" and not TASK_FIELDS & set(event.payload.get("fields") or ()):
        return
    task = await session.get(Task, uuid.UUID(str(event.payload["task_id"])))
    patient = await patient_ref(session, task.patient_id) if task is not None else None
    if task is None or patient is None:
        return
    payload = TaskPayload(
        id=str(task.id),
        patient=patient,
        title=task.title,
        description=task.description,
        status=task.status,  # type: ignore[arg-type]
        priority=task.priority,  # type: ignore[arg-type]
        due_at=task.due_at,
        updated_at=task.updated_at,
    )
    record = Record(
        resource_type="Task",
        id=task.id,
        patient_id=task.patient_id,
        hook=TASK_HOOK,
        category="tasks_appointments",
        label=task.data_category,
        version=None,
        updated_at=task.updated_at,
        arguments={"task": payload},
    )
    await push(session, event, record)


async def targets(session: AsyncSession, tenant: Tenant, record: Record) -> list[tuple[PluginEnablement, Installed]]:
    """The tenant's enabled plugins the network allows that implement the record's hook and may receive it."""
    policies = await policies_in(session, tenant.network_id)
    wanted = {record.category, *([record.label] if record.label else [])}
    found = []
    for row in await session.scalars(select(PluginEnablement).where(PluginEnablement.enabled.is_(True))):
        plugin = registry().get(row.plugin)
        if plugin is None or not is_allowed(policies, row.plugin) or not plugin.implements(record.hook):
            continue
        if wanted <= set(plugin.manifest.data_categories):
            found.append((row, plugin))
    return sorted(found, key=lambda pair: pair[1].name)


def _sent(kept: PluginPush | None, record: Record) -> bool:
    return kept is not None and kept.last_error is None and kept.record_updated_at == record.updated_at


async def push(session: AsyncSession, event: Event, record: Record) -> None:
    settings = invoke.configured()
    tenant = await session.get(Tenant, event.tenant_id)
    if tenant is None or tenant.status != "active":
        return
    found = await targets(session, tenant, record)
    kept = await _kept(session, record)
    outcomes: list[Outcome] = []
    for row, plugin in found:
        if _sent(kept.get(plugin.name), record):
            continue  # sent as it stands, by an earlier attempt of this job or for a later event
        if invoke.breaker_open(row):
            error = f"plugin {plugin.name}: not sent: its circuit breaker is open until {row.open_until}"
            outcomes.append(Outcome(plugin.name, error=error, called=False))
            continue
        config = config_of(settings.plugin_secret_keys, row)
        try:
            info = invoke.tenant_info(tenant)
            result = await invoke.call(
                plugin, record.hook, tenant=info, config=config, settings=settings, **record.arguments
            )
        except invoke.PluginFailed as exc:
            outcomes.append(Outcome(plugin.name, error=str(exc)))
        else:
            outcomes.append(Outcome(plugin.name, result=result))
    unsent = [o for o in outcomes if o.error is not None]
    if not unsent:
        await keep(session, record, outcomes, settings)
        return

    async def keep_after_rollback(failure_session: AsyncSession) -> None:
        await keep(failure_session, record, outcomes, settings)

    names = ", ".join(o.plugin for o in unsent)
    raise PartlyDone(f"{record.resource_type} {record.id} not sent to {names}: {unsent[0].error}", keep_after_rollback)


async def _kept(session: AsyncSession, record: Record) -> dict[str, PluginPush]:
    rows = await session.scalars(
        select(PluginPush).where(PluginPush.resource_type == record.resource_type, PluginPush.resource_id == record.id)
    )
    return {row.plugin: row for row in rows}


async def keep(session: AsyncSession, record: Record, outcomes: list[Outcome], settings: Settings) -> None:
    """Write the outcomes: each record's push row, each plugin's breaker and status, the audit events."""
    if not outcomes:
        return
    rows = {
        row.plugin: row
        for row in await session.scalars(
            select(PluginEnablement).where(PluginEnablement.plugin.in_([o.plugin for o in outcomes]))
        )
    }
    kept = await _kept(session, record)
    now = utcnow()
    for outcome in outcomes:
        pushed = kept.get(outcome.plugin)
        if pushed is None:
            pushed = PluginPush(
                plugin=outcome.plugin, resource_type=record.resource_type, resource_id=record.id, attempts=0
            )
            session.add(pushed)
        elif pushed.record_updated_at != record.updated_at:
            pushed.attempts = 0  # a new version of the record: its own count
        pushed.version, pushed.record_updated_at, pushed.tried_at = record.version, record.updated_at, now
        pushed.attempts = (pushed.attempts or 0) + (1 if outcome.called else 0)
        row = rows.get(outcome.plugin)
        if outcome.error is not None:
            pushed.last_error = outcome.error[:2000]
            if outcome.called and row is not None:
                failed(session, row, settings, record.hook, outcome.error)
            continue
        assert outcome.result is not None
        pushed.last_error, pushed.pushed_at = None, now
        pushed.external_id = (outcome.result.external_id or "")[:200] or None
        pushed.location = (outcome.result.location or "")[:500] or None
        if row is not None:
            invoke.record_success(row)
        audit.record(
            session,
            actor_for(outcome.plugin),
            action="plugin.push",
            resource_type=record.resource_type,
            resource_id=record.id,
            patient_id=record.patient_id,
            detail={"plugin": outcome.plugin, "version": record.version, "external_id": pushed.external_id},
        )
    await session.flush()
