"""The network view of a patient: the tenant's own record plus what other tenants' records it may see.

For each other tenant holding a linked record, the decision point is asked once per data category. The records
of a tenant are read inside *that tenant's* context (its own session, its row-level security), and only the
allowed categories leave it, each item labelled with its source tenant. Categories not allowed are absent: the
answer carries one total of withheld items (not per tenant, not per category: "2 substance use disorder items at
Clinic C" would itself disclose what the consent protects), so that the clinician knows to ask the patient.
A tenant none of whose categories is allowed does not appear at all.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.appointments.models import Appointment
from core.careplans.models import CarePlan, CarePlanGoal
from core.consent import access, decision
from core.consent.categories import CATEGORIES
from core.consent.linking import link_for
from core.consent.models import PatientLink
from core.consent.network import network_of
from core.db import utcnow
from core.messaging.models import Message, Thread
from core.patients.models import Patient
from core.patients.service import require_patient
from core.principal import Principal
from core.results.models import LabResult
from core.tasks.models import Task
from tenants.context import tenant_context
from tenants.models import Tenant

Sessions = Callable[[], AsyncSession]
# The staff permission each of a tenant's own items needs (its own tenant's data: roles decide, not consent).
OWN_PERMISSION = {
    "patient": "patients",
    "care_plan": "careplans",
    "task": "tasks",
    "appointment": "appointments",
    "lab_result": "results",
    "thread": "threads",
}


class CategoryOut(msgspec.Struct):
    category: str
    # own_tenant | consent | network_default | break_the_glass
    basis: str
    consent_id: uuid.UUID | None
    break_glass_id: uuid.UUID | None
    items: list[dict[str, Any]]


class SourceOut(msgspec.Struct):
    tenant_id: uuid.UUID
    tenant_name: str
    own: bool
    categories: list[CategoryOut]


class WithheldOut(msgspec.Struct):
    items: int
    message: str | None


class NetworkViewOut(msgspec.Struct):
    patient_id: uuid.UUID
    purpose: str
    generated_at: datetime
    sources: list[SourceOut]
    withheld: WithheldOut


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


async def _items(session: AsyncSession, patient: Patient) -> dict[str, list[dict[str, Any]]]:
    """Every shareable item of one patient record in the current tenant, by consent category."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    found["demographics"].append(
        {
            "type": "patient",
            "given_name": patient.given_name,
            "family_name": patient.family_name,
            "birth_date": patient.birth_date.isoformat(),
            "sex": patient.sex,
            "phone": patient.phone,
            "email": patient.email,
            "address": patient.address,
            "language": patient.language,
        }
    )
    plans = list(await session.scalars(select(CarePlan).where(CarePlan.patient_id == patient.id)))
    goals: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    if plans:
        for goal in await session.scalars(
            select(CarePlanGoal)
            .where(CarePlanGoal.plan_id.in_([p.id for p in plans]))
            .order_by(CarePlanGoal.created_at, CarePlanGoal.id)
        ):
            goals[goal.plan_id].append(
                {
                    "description": goal.description,
                    "status": goal.lifecycle_status,
                    "achievement": goal.achievement_status,
                }
            )
    for plan in sorted(plans, key=lambda p: (p.created_at, p.id)):
        found[plan.data_category or "care_plan"].append(
            {
                "type": "care_plan",
                "id": str(plan.id),
                "title": plan.title,
                "description": plan.description,
                "status": plan.status,
                "period_start": _iso(plan.period_start),
                "period_end": _iso(plan.period_end),
                "goals": goals[plan.id],
            }
        )
    for task in await session.scalars(
        select(Task).where(Task.patient_id == patient.id).order_by(Task.created_at, Task.id)
    ):
        found[task.data_category or "tasks_appointments"].append(
            {
                "type": "task",
                "id": str(task.id),
                "title": task.title,
                "status": task.status,
                "priority": task.priority,
                "due_at": _iso(task.due_at),
            }
        )
    for appointment in await session.scalars(
        select(Appointment).where(Appointment.patient_id == patient.id).order_by(Appointment.start_at, Appointment.id)
    ):
        found[appointment.data_category or "tasks_appointments"].append(
            {
                "type": "appointment",
                "id": str(appointment.id),
                "kind": appointment.kind,
                "start_at": _iso(appointment.start_at),
                "end_at": _iso(appointment.end_at),
                "status": appointment.status,
                "location": appointment.location,
                "reason": appointment.reason,
            }
        )
    for result in await session.scalars(
        select(LabResult).where(LabResult.patient_id == patient.id).order_by(LabResult.effective_at, LabResult.id)
    ):
        found[result.data_category or "clinical_results"].append(
            {
                "type": "lab_result",
                "id": str(result.id),
                "code": result.code,
                "display": result.display,
                "value": result.value,
                "unit": result.unit,
                "reference_range": result.reference_range,
                "interpretation": result.interpretation,
                "status": result.status,
                "effective_at": _iso(result.effective_at),
            }
        )
    threads = list(
        await session.scalars(
            select(Thread).where(Thread.patient_id == patient.id).order_by(Thread.created_at, Thread.id)
        )
    )
    if threads:
        current = (
            select(Message.original_id, func.max(Message.version).label("version"))
            .where(Message.thread_id.in_([t.id for t in threads]))
            .group_by(Message.original_id)
            .subquery()
        )
        messages: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        for message in await session.scalars(
            select(Message)
            .join(
                current,
                (Message.original_id == current.c.original_id) & (Message.version == current.c.version),
            )
            .where(Message.deleted.is_(False))
            .order_by(Message.sent_at, Message.id)
        ):
            messages[message.thread_id].append({"sent_at": _iso(message.sent_at), "body": message.body})
        for thread in threads:
            found[thread.data_category or "messages"].append(
                {
                    "type": "thread",
                    "id": str(thread.id),
                    "subject": thread.subject,
                    "last_message_at": _iso(thread.last_message_at),
                    "messages": messages[thread.id],
                }
            )
    return found


async def view(
    session: AsyncSession, sessions: Sessions, principal: Principal, patient_id: uuid.UUID, purpose: str
) -> NetworkViewOut:
    """The network view of the caller's tenant's patient ``patient_id`` for ``purpose``."""
    principal.require("network_view", "read")
    patient = await require_patient(session, principal, patient_id, "network.view")
    assert principal.tenant_id is not None
    link = await link_for(session, principal, patient)
    now = utcnow()
    network = await network_of(session, principal.tenant_id)
    point = await decision.load(session, [link.person_id], network.consent_default, now=now)
    requester = await session.get(Tenant, principal.tenant_id)
    assert requester is not None

    own_items = await _items(session, patient)
    # Role checks once per item type, not per item (each is a Casbin enforce).
    may_read = {kind: principal.can(permission, "read") for kind, permission in OWN_PERMISSION.items()}
    sources = [
        SourceOut(
            tenant_id=principal.tenant_id,
            tenant_name=requester.name,
            own=True,
            categories=[
                CategoryOut(category, decision.OWN_TENANT, None, None, readable)
                for category in CATEGORIES
                if (readable := [i for i in own_items.get(category, []) if may_read[i["type"]]])
            ],
        )
    ]
    others = list(
        await session.execute(
            select(PatientLink.tenant_id, PatientLink.patient_id, Tenant.name)
            .join(Tenant, Tenant.id == PatientLink.tenant_id)
            .where(
                PatientLink.person_id == link.person_id,
                PatientLink.tenant_id != principal.tenant_id,
                Tenant.status == "active",
            )
            .order_by(Tenant.name, Tenant.id)
        )
    )
    withheld = 0
    for tenant_id, their_patient_id, tenant_name in others:
        decisions = {
            category: point.decide(
                decision.AccessRequest(
                    tenant_id=principal.tenant_id,
                    roles=principal.roles,
                    person_id=link.person_id,
                    category=category,
                    purpose=purpose,
                    at=now,
                    source_tenant_id=tenant_id,
                    user_id=principal.user_id,
                )
            )
            for category in CATEGORIES
        }
        shown: list[CategoryOut] = []
        with tenant_context(tenant_id):
            async with sessions() as other, other.begin():
                their_patient = await other.get(Patient, their_patient_id)
                items = await _items(other, their_patient) if their_patient is not None else {}
                for category, decided in decisions.items():
                    count = len(items.get(category, []))
                    access.record_inbound(
                        other,
                        principal.actor,
                        patient_id=their_patient_id,
                        requesting_tenant_id=principal.tenant_id,
                        requesting_tenant_name=requester.name,
                        category=category,
                        purpose=purpose,
                        decision=decided,
                        items=count,
                    )
                    if not decided.allowed:
                        withheld += count
                    elif count:
                        shown.append(
                            CategoryOut(
                                category, decided.basis, decided.consent_id, decided.break_glass_id, items[category]
                            )
                        )
        for item in shown:
            access.record_outbound(
                session,
                principal.actor,
                patient_id=patient.id,
                source_tenant_id=tenant_id,
                category=item.category,
                purpose=purpose,
                decision=decisions[item.category],
                items=len(item.items),
            )
        if shown:
            sources.append(SourceOut(tenant_id=tenant_id, tenant_name=tenant_name, own=False, categories=shown))
    audit.record(
        session,
        principal.actor,
        action="network.view",
        resource_type="Patient",
        resource_id=patient.id,
        patient_id=patient.id,
        detail={"purpose": purpose, "withheld_items": withheld, "sources_shown": len(sources) - 1},
    )
    message = None
    if withheld:
        message = (
            f"{withheld} item(s) held by other facilities of the network are not shared with you for"
            f" {purpose.replace('_', ' ')}: the patient's consent (or your role) does not allow it."
            " Ask the patient, or record their consent."
        )
    return NetworkViewOut(
        patient_id=patient.id,
        purpose=purpose,
        generated_at=now,
        sources=sources,
        withheld=WithheldOut(items=withheld, message=message),
    )
