"""Transition of care: a hospital discharge creates follow-up tasks at the patient's primary care clinic,
when the patient's consent allows the clinic to know of it.

The rule runs in the hospital's tenant (the event's). It finds the person's primary care clinic (the clinic that
marked its record as primary care; without one, the only active clinic holding a record of the person), asks the
consent decision point whether that clinic may see the hospital's tasks and appointments for care coordination,
and records the decision in the hospital's audit log like any cross-tenant access. Only when allowed does it write
in the clinic's tenant (its own context and transaction): a call within 2 business days and a follow-up
appointment within 7 days of the discharge. The tasks have ids derived from the event, so a rule run again (a
redelivered message) finds them there instead of creating them twice. A denied discharge leaves no trace in the
clinic: it cannot learn of a stay the patient did not agree to share.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core import audit, staff
from core.audit import SYSTEM
from core.careteams.members import lead_of
from core.consent import access, decision
from core.consent.models import PatientLink
from core.consent.network import network_of, tenant_names
from core.db import utcnow
from core.encounters.models import Encounter
from core.notify import messages, rules_config
from core.tasks.automatic import add_task
from core.tasks.models import Task
from tenants.isolation import other_tenant_session
from tenants.models import Tenant

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from core.jobs.events import Event

CATEGORY = "tasks_appointments"
PURPOSE = "care_coordination"
# The clinic's side acts for care coordination, as its care managers would.
ROLES = ("care_manager",)
CALL_BUSINESS_DAYS = 2
FOLLOW_UP_DAYS = 7


def add_business_days(at: datetime, days: int, timezone: str) -> datetime:
    """``days`` working days (Monday to Friday) after ``at``, counted in the clinic's time zone."""
    local = at.astimezone(ZoneInfo(timezone))
    added = 0
    while added < days:
        local += timedelta(days=1)
        if local.weekday() < 5:
            added += 1
    return local


async def primary_care(session: AsyncSession, person_id: uuid.UUID, hospital: uuid.UUID) -> PatientLink | None:
    """The person's primary care clinic record: the one marked so, else the only active clinic holding a record."""
    links = list(
        await session.scalars(
            select(PatientLink)
            .join(Tenant, Tenant.id == PatientLink.tenant_id)
            .where(
                PatientLink.person_id == person_id,
                PatientLink.tenant_id != hospital,
                Tenant.kind == "clinic",
                Tenant.status == "active",
            )
            .order_by(PatientLink.linked_at, PatientLink.id)
        )
    )
    marked = [link for link in links if link.primary_care]
    if marked:
        return marked[0]
    return links[0] if len(links) == 1 else None


async def _owner(session: AsyncSession, patient_id: uuid.UUID) -> uuid.UUID | None:
    """Who owns the clinic's transition tasks: the patient's care team lead, else a care manager, else an admin."""
    lead = await lead_of(session, patient_id)
    if lead is not None:
        return lead
    return next(iter(await staff.holding(session, "care_manager", "tenant_admin")), None)


async def transition_of_care(session: AsyncSession, event: Event) -> None:
    encounter = await session.get(Encounter, uuid.UUID(event.payload["encounter_id"]))
    if encounter is None or encounter.discharged_at is None:
        return
    hospital = event.tenant_id
    link = await session.scalar(
        select(PatientLink).where(PatientLink.tenant_id == hospital, PatientLink.patient_id == encounter.patient_id)
    )
    if link is None:
        return
    clinic = await primary_care(session, link.person_id, hospital)
    if clinic is None:
        return
    network = await network_of(session, hospital)
    # Decided when the rule runs, with the consents as they are then (a consent signed at discharge counts).
    event_time = utcnow()
    point = await decision.load(session, [link.person_id], network.consent_default, now=event_time)
    # A psychiatric or substance use disorder stay needs consent for that category (Part 2: a named recipient).
    category = encounter.data_category or CATEGORY
    decided = point.decide(
        decision.AccessRequest(
            tenant_id=clinic.tenant_id,
            roles=ROLES,
            person_id=link.person_id,
            category=category,
            purpose=PURPOSE,
            at=event_time,
            source_tenant_id=hospital,
        )
    )
    names = await tenant_names(session, (clinic.tenant_id, hospital))
    clinic_name, hospital_name = names.get(clinic.tenant_id, ""), names.get(hospital, "")
    made = 0
    if decided.allowed:
        async with other_tenant_session(session, clinic.tenant_id) as other:
            made = await _create_tasks(other, event, encounter, clinic, hospital_name, decided, category)
    access.record_inbound(
        session,
        SYSTEM,
        patient_id=encounter.patient_id,
        requesting_tenant_id=clinic.tenant_id,
        requesting_tenant_name=clinic_name,
        category=category,
        purpose=PURPOSE,
        decision=decided,
        items=made,
    )


async def _create_tasks(
    session: AsyncSession,
    event: Event,
    encounter: Encounter,
    clinic: PatientLink,
    hospital_name: str,
    decided: decision.Decision,
    category: str,
) -> int:
    """The clinic's two tasks; how many this run made (none when an earlier run made them, or nobody can own them)."""
    call_id = uuid.uuid5(event.id, "transition-of-care/call")
    if await session.get(Task, call_id) is not None:
        return 0  # done by an earlier run of this event
    owner = await _owner(session, clinic.patient_id)
    if owner is None:
        return 0
    assert encounter.discharged_at is not None
    config = await rules_config.current(session)
    discharged = messages.local_time(encounter.discharged_at, config.timezone)
    stay = (
        f"{hospital_name} discharged the patient on {discharged} after an {encounter.kind} stay"
        f" (to {(encounter.disposition or 'home').replace('_', ' ')})."
    )
    detail = {
        "rule": "encounter.discharged",
        "source_tenant": hospital_name,
        "consent_id": str(decided.consent_id) if decided.consent_id else "",
        "basis": decided.basis,
    }
    call = Task(
        id=call_id,
        patient_id=clinic.patient_id,
        title="Transition of care: call the patient within 2 business days",
        description=f"{stay} Call them: symptoms, medicines, understanding of the discharge plan, needs at home.",
        template_code="transition-call",
        owner_id=owner,
        due_at=add_business_days(encounter.discharged_at, CALL_BUSINESS_DAYS, config.timezone),
        priority="urgent",
        status="requested",
        escalation_level=0,
        data_category=encounter.data_category,
    )
    add_task(session, call, "transition of care", detail)
    visit = Task(
        id=uuid.uuid5(event.id, "transition-of-care/visit"),
        patient_id=clinic.patient_id,
        title="Transition of care: follow-up appointment within 7 days",
        description=f"{stay} Book a follow-up visit within 7 days of the discharge.",
        template_code="transition-visit",
        owner_id=owner,
        due_at=encounter.discharged_at + timedelta(days=FOLLOW_UP_DAYS),
        priority="urgent",
        status="requested",
        escalation_level=0,
        data_category=encounter.data_category,
    )
    add_task(session, visit, "transition of care", detail)
    audit.record(
        session,
        SYSTEM,
        action=access.NETWORK_ACCESS,
        resource_type=category,
        patient_id=clinic.patient_id,
        reason=decided.reason,
        detail={
            "direction": "outbound",
            "source_tenant_id": str(event.tenant_id),
            "category": category,
            "purpose": PURPOSE,
            "items": 2,
            **access.decision_detail(decided),
        },
    )
    return 2
