"""What the network view can share of one patient record: every item, by the consent category that decides it.

An item belongs to its type's category, or to its sensitive label's instead (see ``docs/consent.md``). Clinical
records from EHR feeds (encounters, conditions, observations) belong to ``clinical_results``, the category the
feeds write them under. An encounter's diagnoses are part of the encounter and go with it; but an encounter
carries what its diagnoses disclose, so when one of them is the code of a condition of the same record that
carries a sensitive label, the encounter carries that label too (the most protective label of a record decides,
as a folder is as confidential as its most confidential page). An item with several labels goes under the most
protective one and is shown only where every one of them is allowed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.appointments.models import Appointment
from core.careplans.models import CarePlan, CarePlanGoal
from core.conditions.models import Condition
from core.consent.categories import PART2
from core.encounters.models import Encounter
from core.messaging.models import Message, Thread
from core.patients.models import Patient
from core.results.models import LabResult
from core.tasks.models import Task

# The category the EHR feeds' records fall in (the feeds' effects declare it: plugin_sdk.effects).
CLINICAL = "clinical_results"
# Most protective first: which category an item carrying several labels is listed under.
LABEL_PRECEDENCE = (PART2, "behavioral_health", "social_needs")


@dataclass(frozen=True)
class Item:
    data: dict[str, Any]
    # Further labels the item carries besides its category's: each must be allowed too, or it is withheld.
    also: frozenset[str] = frozenset()


Items = dict[str, list[Item]]


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else value


def _labelled(found: Items, labels: set[str], default: str, data: dict[str, Any]) -> None:
    """File ``data`` under its most protective label (or ``default`` when it has none)."""
    ordered = sorted(labels, key=lambda label: LABEL_PRECEDENCE.index(label) if label in LABEL_PRECEDENCE else 99)
    category = ordered[0] if ordered else default
    found[category].append(Item(data, frozenset(ordered[1:])))


async def items_of(session: AsyncSession, patient: Patient) -> Items:
    """Every shareable item of one patient record in the current tenant, by consent category."""
    found: Items = defaultdict(list)
    found["demographics"].append(
        Item(
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
    )
    await _care_plans(session, patient, found)
    for task in await session.scalars(
        select(Task).where(Task.patient_id == patient.id).order_by(Task.created_at, Task.id)
    ):
        found[task.data_category or "tasks_appointments"].append(
            Item(
                {
                    "type": "task",
                    "id": str(task.id),
                    "title": task.title,
                    "status": task.status,
                    "priority": task.priority,
                    "due_at": _iso(task.due_at),
                }
            )
        )
    for appointment in await session.scalars(
        select(Appointment).where(Appointment.patient_id == patient.id).order_by(Appointment.start_at, Appointment.id)
    ):
        found[appointment.data_category or "tasks_appointments"].append(
            Item(
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
        )
    for result in await session.scalars(
        select(LabResult).where(LabResult.patient_id == patient.id).order_by(LabResult.effective_at, LabResult.id)
    ):
        found[result.data_category or CLINICAL].append(
            Item(
                {
                    "type": "lab_result",
                    "id": str(result.id),
                    "code": result.code,
                    "display": result.display,
                    "value": result.value,
                    "unit": result.unit,
                    "reference_range": result.reference_range,
                    "interpretation": result.interpretation,
                    "flag": result.flag,
                    "status": result.status,
                    "category": result.category,
                    "effective_at": _iso(result.effective_at),
                    "feed": result.source,
                }
            )
        )
    await _clinical(session, patient, found)
    await _threads(session, patient, found)
    return found


async def _care_plans(session: AsyncSession, patient: Patient, found: Items) -> None:
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
            Item(
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
        )


async def _clinical(session: AsyncSession, patient: Patient, found: Items) -> None:
    """Conditions and encounters; an encounter takes the labels of the labelled conditions it names."""
    conditions = list(
        await session.scalars(
            select(Condition).where(Condition.patient_id == patient.id).order_by(Condition.created_at, Condition.id)
        )
    )
    label_of_code: dict[tuple[str, str], set[str]] = defaultdict(set)
    for condition in conditions:
        if condition.data_category:
            label_of_code[(condition.code_system, condition.code)].add(condition.data_category)
        found[condition.data_category or CLINICAL].append(
            Item(
                {
                    "type": "condition",
                    "id": str(condition.id),
                    "code_system": condition.code_system,
                    "code": condition.code,
                    "display": condition.display,
                    "clinical_status": condition.clinical_status,
                    "onset_at": _iso(condition.onset_at),
                    "abated_at": _iso(condition.abated_at),
                    "feed": condition.source,
                }
            )
        )
    for encounter in await session.scalars(
        select(Encounter).where(Encounter.patient_id == patient.id).order_by(Encounter.admitted_at, Encounter.id)
    ):
        diagnoses = [dict(d) for d in encounter.diagnoses or []]
        labels = {encounter.data_category} if encounter.data_category else set()
        for diagnosis in diagnoses:
            labels |= label_of_code.get((str(diagnosis.get("system")), str(diagnosis.get("code"))), set())
        _labelled(
            found,
            labels,
            CLINICAL,
            {
                "type": "encounter",
                "id": str(encounter.id),
                "kind": encounter.kind,
                "status": encounter.status,
                "admitted_at": _iso(encounter.admitted_at),
                "discharged_at": _iso(encounter.discharged_at),
                "disposition": encounter.disposition,
                "location": encounter.location,
                "diagnoses": diagnoses,
                "feed": encounter.source,
            },
        )


async def _threads(session: AsyncSession, patient: Patient, found: Items) -> None:
    threads = list(
        await session.scalars(
            select(Thread).where(Thread.patient_id == patient.id).order_by(Thread.created_at, Thread.id)
        )
    )
    if not threads:
        return
    current = (
        select(Message.original_id, func.max(Message.version).label("version"))
        .where(Message.thread_id.in_([t.id for t in threads]))
        .group_by(Message.original_id)
        .subquery()
    )
    messages: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for message in await session.scalars(
        select(Message)
        .join(current, (Message.original_id == current.c.original_id) & (Message.version == current.c.version))
        .where(Message.deleted.is_(False))
        .order_by(Message.sent_at, Message.id)
    ):
        messages[message.thread_id].append({"sent_at": _iso(message.sent_at), "body": message.body})
    for thread in threads:
        found[thread.data_category or "messages"].append(
            Item(
                {
                    "type": "thread",
                    "id": str(thread.id),
                    "subject": thread.subject,
                    "last_message_at": _iso(thread.last_message_at),
                    "messages": messages[thread.id],
                }
            )
        )
