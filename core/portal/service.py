"""The patient portal: a patient reads their own record and nothing else.

Every function acts on ``principal.patient_id`` only (never on an id given by the caller), and a record of
another patient, a draft plan or another tenant's record answers exactly like a missing one. Every read is
audited, as staff reads are.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec
from sqlalchemy import and_, case, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox, staff
from core.appointments.models import Appointment
from core.careplans.models import CarePlan
from core.careteams.models import CareTeam
from core.db import utcnow
from core.errors import Forbidden
from core.messaging import service as messaging
from core.messaging.blobs import BlobStore
from core.messaging.schemas import AttachmentOut, MessageCreate, MessageOut, ThreadOut
from core.messaging.schemas import ThreadCreate as MessagingThreadCreate
from core.patients.models import Patient
from core.patients.schemas import Address
from core.portal import schemas
from core.principal import Principal
from core.records import not_found
from core.results.models import EducationItem, LabResult
from core.tasks.models import OPEN_STATUSES, Task

# Plans a patient sees: not drafts (still being written), not revoked (withdrawn).
VISIBLE_PLAN_STATUSES = ("active", "on-hold", "completed")
UPCOMING_APPOINTMENT_STATUSES = ("proposed", "booked", "arrived")


def own_patient(principal: Principal, act: str) -> uuid.UUID:
    """The caller's own patient record id, once the role allows ``act`` on the portal."""
    principal.require("portal", act)
    if principal.patient_id is None:
        raise Forbidden("the portal is for patients' accounts", action=f"portal.{act}", resource_type="portal")
    return principal.patient_id


def record_read(
    session: AsyncSession,
    principal: Principal,
    patient_id: uuid.UUID,
    thing: str,
    resource_type: str,
    ids: Sequence[uuid.UUID] | None = None,
    resource_id: uuid.UUID | None = None,
) -> None:
    audit.record(
        session,
        principal.actor,
        action=f"portal.{thing}.read",
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        detail={"ids": [str(i) for i in ids]} if ids is not None else None,
    )


async def me(session: AsyncSession, principal: Principal) -> schemas.Me:
    patient_id = own_patient(principal, "read")
    patient = await session.get(Patient, patient_id)
    if patient is None:
        raise not_found(
            session, principal, patient_id, action="portal.me.read", resource_type="Patient", detail="patient not found"
        )
    team = await session.scalar(select(CareTeam).where(CareTeam.patient_id == patient_id, CareTeam.status == "active"))
    members = list(team.members) if team is not None else []
    names = await staff.names(session, (m.user_id for m in members), active_staff_only=True)
    care_team = [
        schemas.TeamMember(name=names.get(m.user_id) if m.user_id else m.name, role=m.role, is_lead=m.is_lead)
        for m in members
        if m.user_id is None or m.user_id in names
    ]
    record_read(session, principal, patient_id, "me", "Patient", resource_id=patient_id)
    return schemas.Me(
        given_name=patient.given_name,
        family_name=patient.family_name,
        birth_date=patient.birth_date,
        phone=patient.phone,
        email=patient.email,
        address=msgspec.convert(patient.address, Address) if patient.address else None,
        language=patient.language,
        care_team=care_team,
    )


def _plan(plan: CarePlan) -> schemas.CarePlan:
    return schemas.CarePlan(
        id=plan.id,
        title=plan.title,
        description=plan.description,
        status=plan.status,
        period_start=plan.period_start,
        period_end=plan.period_end,
        structured=plan.structured,
        goals=[
            schemas.Goal(
                id=g.id,
                description=g.description,
                measure=g.measure,
                target_value=g.target_value,
                due_date=g.due_date,
                lifecycle_status=g.lifecycle_status,
                achievement_status=g.achievement_status,
            )
            for g in plan.goals
        ],
        activities=[
            schemas.Activity(id=a.id, kind=a.kind, description=a.description, status=a.status) for a in plan.activities
        ],
        updated_at=plan.updated_at,
    )


async def care_plans(
    session: AsyncSession, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[schemas.CarePlan]:
    """The patient's active, on-hold and completed plans: active first, then the most recently changed."""
    patient_id = own_patient(principal, "read")
    query = (
        select(CarePlan)
        .where(CarePlan.patient_id == patient_id, CarePlan.status.in_(VISIBLE_PLAN_STATUSES))
        .order_by(case((CarePlan.status == "active", 0), else_=1), CarePlan.updated_at.desc(), CarePlan.id)
        .limit(limit)
        .offset(offset)
    )
    plans = list((await session.scalars(query)).all())
    record_read(session, principal, patient_id, "care_plans", "CarePlan", ids=[p.id for p in plans])
    return [_plan(p) for p in plans]


async def care_plan(session: AsyncSession, principal: Principal, plan_id: uuid.UUID) -> schemas.CarePlan:
    patient_id = own_patient(principal, "read")
    plan = await session.get(CarePlan, plan_id)
    if plan is None or plan.patient_id != patient_id or plan.status not in VISIBLE_PLAN_STATUSES:
        raise not_found(
            session,
            principal,
            plan_id,
            action="portal.care_plan.read",
            resource_type="CarePlan",
            detail="care plan not found",
        )
    record_read(session, principal, patient_id, "care_plan", "CarePlan", resource_id=plan.id)
    return _plan(plan)


async def tasks(session: AsyncSession, principal: Principal, *, limit: int = 50, offset: int = 0) -> list[schemas.Task]:
    """What the patient is asked to do: open tasks first (soonest due first), then the closed ones."""
    patient_id = own_patient(principal, "read")
    is_open = Task.status.in_(OPEN_STATUSES)
    query = (
        select(Task)
        .where(Task.patient_id == patient_id, Task.for_patient.is_(True))
        .order_by(
            case((is_open, 0), else_=1),
            case((Task.due_at.is_(None), 1), else_=0),
            Task.due_at,
            Task.created_at.desc(),
            Task.id,
        )
        .limit(limit)
        .offset(offset)
    )
    rows = list((await session.scalars(query)).all())
    now = utcnow()
    record_read(session, principal, patient_id, "tasks", "Task", ids=[t.id for t in rows])
    return [
        schemas.Task(
            id=t.id,
            title=t.title,
            description=t.description,
            due_at=t.due_at,
            priority=t.priority,
            status=t.status,
            overdue=t.status in OPEN_STATUSES and t.due_at is not None and t.due_at < now,
            completed_at=t.completed_at,
        )
        for t in rows
    ]


async def appointments(
    session: AsyncSession, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[schemas.Appointment]:
    """The patient's appointments: upcoming ones first (soonest first), then the others (latest first)."""
    patient_id = own_patient(principal, "read")
    upcoming = and_(Appointment.end_at >= utcnow(), Appointment.status.in_(UPCOMING_APPOINTMENT_STATUSES))
    query = (
        select(Appointment)
        .where(Appointment.patient_id == patient_id)
        .order_by(
            case((upcoming, 0), else_=1),
            case((upcoming, Appointment.start_at), else_=None),
            Appointment.start_at.desc(),
            Appointment.id,
        )
        .limit(limit)
        .offset(offset)
    )
    rows = list((await session.scalars(query)).all())
    names = await staff.names(session, (a.participant_id for a in rows))
    record_read(session, principal, patient_id, "appointments", "Appointment", ids=[a.id for a in rows])
    return [
        schemas.Appointment(
            id=a.id,
            kind=a.kind,
            start_at=a.start_at,
            end_at=a.end_at,
            location=a.location,
            video_link=a.video_link,
            reason=a.reason,
            status=a.status,
            participant_name=names.get(a.participant_id),
        )
        for a in rows
    ]


async def results(
    session: AsyncSession, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[schemas.Result]:
    """The lab results released to the patient (cancelled ones left out), newest first."""
    patient_id = own_patient(principal, "read")
    query = (
        select(LabResult)
        .where(
            LabResult.patient_id == patient_id,
            LabResult.released_to_patient.is_(True),
            LabResult.status != "cancelled",
        )
        .order_by(LabResult.effective_at.desc(), LabResult.id)
        .limit(limit)
        .offset(offset)
    )
    rows = list((await session.scalars(query)).all())
    record_read(session, principal, patient_id, "results", "LabResult", ids=[r.id for r in rows])
    return [
        schemas.Result(
            id=r.id,
            code=r.code,
            display=r.display,
            value=r.value,
            unit=r.unit,
            reference_range=r.reference_range,
            interpretation=r.interpretation,
            status=r.status,
            effective_at=r.effective_at,
        )
        for r in rows
    ]


def _education(item: EducationItem) -> schemas.EducationItem:
    return schemas.EducationItem(
        id=item.id,
        title=item.title,
        body=item.body,
        url=item.url,
        assigned_at=item.created_at,
        read_at=item.read_at,
    )


async def education(
    session: AsyncSession, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[schemas.EducationItem]:
    """The patient's education items: unread first, then newest first."""
    patient_id = own_patient(principal, "read")
    query = (
        select(EducationItem)
        .where(EducationItem.patient_id == patient_id)
        .order_by(
            case((EducationItem.read_at.is_(None), 0), else_=1), EducationItem.created_at.desc(), EducationItem.id
        )
        .limit(limit)
        .offset(offset)
    )
    rows = list((await session.scalars(query)).all())
    record_read(session, principal, patient_id, "education", "EducationItem", ids=[i.id for i in rows])
    return [_education(i) for i in rows]


async def mark_education_read(session: AsyncSession, principal: Principal, item_id: uuid.UUID) -> schemas.EducationItem:
    """Mark an education item read (the first reading time stands)."""
    patient_id = own_patient(principal, "write")
    item = await session.get(EducationItem, item_id, with_for_update=True, populate_existing=True)
    if item is None or item.patient_id != patient_id:
        raise not_found(
            session,
            principal,
            item_id,
            action="portal.education.mark_read",
            resource_type="EducationItem",
            detail="education item not found",
        )
    if item.read_at is None:
        item.read_at = utcnow()
        outbox.emit(
            session,
            "education.read",
            {"education_id": str(item.id), "patient_id": str(patient_id)},
            aggregate_id=patient_id,
        )
    audit.record(
        session,
        principal.actor,
        action="portal.education.mark_read",
        resource_type="EducationItem",
        resource_id=item.id,
        patient_id=patient_id,
    )
    await session.flush()
    return _education(item)


# --- threads: the messaging service decides who takes part; the portal shows its answers without user ids --------


def _thread(thread: ThreadOut) -> schemas.Thread:
    return schemas.Thread(
        id=thread.id,
        subject=thread.subject,
        created_at=thread.created_at,
        last_message_at=thread.last_message_at,
        participants=[schemas.Participant(id=p.id, name=p.name, is_patient=p.is_patient) for p in thread.participants],
        unread_count=thread.unread_count,
    )


def _message(message: MessageOut) -> schemas.Message:
    return schemas.Message(
        id=message.id,
        original_id=message.original_id,
        version=message.version,
        author=schemas.Author(
            participant_id=message.author.participant_id, name=message.author.name, is_patient=message.author.is_patient
        ),
        body=message.body,
        deleted=message.deleted,
        edited=message.edited,
        sent_at=message.sent_at,
        attachments=[
            schemas.Attachment(id=a.id, name=a.name, content_type=a.content_type, size=a.size, sha256=a.sha256)
            for a in message.attachments
        ],
        read_by=[schemas.Receipt(participant_id=r.participant_id, read_at=r.read_at) for r in message.read_by],
    )


async def threads(
    session: AsyncSession, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[schemas.Thread]:
    """The threads about the patient that include them, most recent message first."""
    own_patient(principal, "read")
    found = await messaging.list_threads(session, principal, limit=limit, offset=offset)
    return [_thread(t) for t in found]


async def start_thread(
    session: AsyncSession, principal: Principal, data: schemas.ThreadCreate, blobs: BlobStore
) -> schemas.Thread:
    """A new thread with the patient's care team (409 when they have none with staff members)."""
    own_patient(principal, "write")
    request = MessagingThreadCreate(subject=data.subject, body=data.body, attachments=data.attachments)
    return _thread(await messaging.create_thread(session, principal, request, blobs))


async def thread(session: AsyncSession, principal: Principal, thread_id: uuid.UUID) -> schemas.Thread:
    own_patient(principal, "read")
    return _thread(await messaging.get_thread(session, principal, thread_id))


async def messages(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, *, limit: int = 50, offset: int = 0
) -> list[schemas.Message]:
    own_patient(principal, "read")
    listed = await messaging.list_messages(session, principal, thread_id, limit=limit, offset=offset)
    return [_message(m) for m in listed]


async def send_message(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, data: MessageCreate, blobs: BlobStore
) -> schemas.Message:
    own_patient(principal, "write")
    return _message(await messaging.send_message(session, principal, thread_id, data, blobs))


async def mark_thread_read(session: AsyncSession, principal: Principal, thread_id: uuid.UUID) -> schemas.Thread:
    own_patient(principal, "write")
    return _thread(await messaging.mark_read(session, principal, thread_id))


async def attachment(
    session: AsyncSession, principal: Principal, thread_id: uuid.UUID, attachment_id: uuid.UUID, blobs: BlobStore
) -> tuple[AttachmentOut, bytes]:
    own_patient(principal, "read")
    return await messaging.read_attachment(session, principal, thread_id, attachment_id, blobs)
