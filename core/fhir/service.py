"""Read and search carehub records as FHIR R4 resources, with the staff API's permissions and audit.

Everything is loaded through the request's tenant-scoped session, so another tenant's record is simply not found.
Consents are network-level rows (they belong to the person): only those this tenant recorded are ever loaded, and a
consent's patient is this tenant's record of the person. Included resources (``_include`` / ``_revinclude``) are
loaded by the same queries, so they never reach into another tenant either. Every resource returned is audited
(``fhir.read`` / ``fhir.search``) with its patient.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, staff
from core.appointments.models import Appointment
from core.careplans.models import CarePlan, CarePlanGoal
from core.careteams.models import CareTeam
from core.consent.models import Consent, PatientLink
from core.consent.network import tenant_names
from core.db import utcnow
from core.errors import Forbidden, NotFound
from core.fhir import consent as fhir_consent
from core.fhir.common import RESOURCE_TYPES
from core.fhir.consent import consent_to_fhir
from core.fhir.mapping import (
    MessageView,
    appointment_to_fhir,
    careplan_to_fhir,
    careteam_to_fhir,
    communication_to_fhir,
    goal_to_fhir,
    patient_to_fhir,
    task_to_fhir,
)
from core.messaging.models import Message, MessageAttachment, Thread, ThreadParticipant
from core.patients.models import Patient
from core.principal import Principal
from core.tasks.models import Task, TaskComment

MAX_COUNT = 100
# The Casbin object guarding each resource type (Goals are part of care plans).
PERMISSION = {
    "Patient": "patients",
    "CareTeam": "careteams",
    "CarePlan": "careplans",
    "Goal": "careplans",
    "Task": "tasks",
    "Appointment": "appointments",
    "Communication": "threads",
    "Consent": "consents",
}
# The reference search parameters to the patient of each type (``_include`` / ``_revinclude``): FHIR R4's names.
PATIENT_PARAMS: dict[str, tuple[str, ...]] = {
    "CareTeam": ("patient", "subject"),
    "CarePlan": ("patient", "subject"),
    "Goal": ("patient", "subject"),
    "Task": ("patient", "subject"),
    "Appointment": ("patient",),
    "Communication": ("patient", "subject"),
    "Consent": ("patient",),
}
# At most this many resources of each type are included by one ``_revinclude``.
MAX_REVINCLUDE = 500


@dataclass(frozen=True)
class Found:
    resource: dict[str, Any]
    patient_id: uuid.UUID


@dataclass(frozen=True)
class Links:
    """Where the caller reached us: the FHIR base (``https://host/fhir``) and the staff API's (``.../api/v1``)."""

    fhir_base: str
    api_base: str


@dataclass(frozen=True)
class _Query:
    """One resource type: its rows (entity first), how to pick by id or patient and order, and how to render."""

    statement: Any  # a Select whose first column is the entity
    by_id: Any
    by_patient: Any
    order: tuple[Any, ...]
    render: Callable[[AsyncSession, Principal, Links, Sequence[Any]], Awaitable[list[Found]]]


def check_type(resource_type: str) -> None:
    """404 for a type carehub does not serve."""
    if resource_type not in RESOURCE_TYPES:
        raise NotFound(f"carehub serves no {resource_type[:64]} resources")


def _require(principal: Principal, resource_type: str, action: str, act: str = "read") -> None:
    """Staff of a tenant, with the staff API's permission (``act``) for the type."""
    if principal.tenant_id is None:
        raise Forbidden("the FHIR API answers within a tenant", action=action, resource_type=resource_type)
    if principal.is_patient:
        raise Forbidden(
            "the FHIR API is for staff; patients use the portal", action=action, resource_type=resource_type
        )
    principal.require(PERMISSION[resource_type], act)


async def _patients(session: AsyncSession, principal: Principal, links: Links, rows: Sequence[Any]) -> list[Found]:
    assert principal.tenant_id is not None  # checked by _require
    return [Found(patient_to_fhir(row[0], principal.tenant_id), row[0].id) for row in rows]


async def _careteams(session: AsyncSession, principal: Principal, links: Links, rows: Sequence[Any]) -> list[Found]:
    teams: list[CareTeam] = [row[0] for row in rows]
    names = await staff.names(session, (m.user_id for t in teams for m in t.members))
    return [Found(careteam_to_fhir(t, names), t.patient_id) for t in teams]


async def _careplans(session: AsyncSession, principal: Principal, links: Links, rows: Sequence[Any]) -> list[Found]:
    plans: list[CarePlan] = [row[0] for row in rows]
    names = await staff.names(session, (p.author_id for p in plans))
    return [Found(careplan_to_fhir(p, names), p.patient_id) for p in plans]


async def _goals(session: AsyncSession, principal: Principal, links: Links, rows: Sequence[Any]) -> list[Found]:
    return [Found(goal_to_fhir(row[0], row[1]), row[1]) for row in rows]


async def _tasks(session: AsyncSession, principal: Principal, links: Links, rows: Sequence[Any]) -> list[Found]:
    tasks: list[Task] = [row[0] for row in rows]
    comments: dict[uuid.UUID, list[TaskComment]] = defaultdict(list)
    if tasks:
        found = await session.scalars(
            select(TaskComment)
            .where(TaskComment.task_id.in_([t.id for t in tasks]))
            .order_by(TaskComment.created_at, TaskComment.id)
        )
        for comment in found:
            comments[comment.task_id].append(comment)
    people = [u for t in tasks for u in (t.owner_id, t.assignee_id, t.created_by)]
    names = await staff.names(session, people + [c.author_id for cs in comments.values() for c in cs])
    return [Found(task_to_fhir(t, names, comments[t.id]), t.patient_id) for t in tasks]


async def _appointments(session: AsyncSession, principal: Principal, links: Links, rows: Sequence[Any]) -> list[Found]:
    appointments: list[Appointment] = [row[0] for row in rows]
    names = await staff.names(session, (a.participant_id for a in appointments))
    return [Found(appointment_to_fhir(a, names), a.patient_id) for a in appointments]


async def _communications(
    session: AsyncSession, principal: Principal, links: Links, rows: Sequence[Any]
) -> list[Found]:
    messages: list[Message] = [row[0] for row in rows]
    if not messages:
        return []
    thread_ids = {m.thread_id for m in messages}
    threads = {t.id: t for t in await session.scalars(select(Thread).where(Thread.id.in_(thread_ids)))}
    participants: dict[uuid.UUID, list[ThreadParticipant]] = defaultdict(list)
    for participant in await session.scalars(
        select(ThreadParticipant)
        .where(ThreadParticipant.thread_id.in_(thread_ids))
        .order_by(ThreadParticipant.added_at, ThreadParticipant.id)
    ):
        participants[participant.thread_id].append(participant)
    # A message's attachments came with one of its versions (the first, usually): they belong to the message.
    attachments: dict[uuid.UUID, list[MessageAttachment]] = defaultdict(list)
    for attachment, original_id in await session.execute(
        select(MessageAttachment, Message.original_id)
        .join(Message, Message.id == MessageAttachment.message_id)
        .where(Message.original_id.in_([m.original_id for m in messages]))
        .order_by(MessageAttachment.name, MessageAttachment.id)
    ):
        attachments[original_id].append(attachment)
    names = await staff.names(session, (p.user_id for ps in participants.values() for p in ps))
    found = []
    for row in rows:
        message, first_sent = row[0], row[1]
        thread = threads[message.thread_id]
        view = MessageView(
            thread=thread,
            current=message,
            first_sent_at=first_sent,
            participants=participants[thread.id],
            attachments=attachments[message.original_id],
        )
        found.append(Found(communication_to_fhir(view, names, f"{links.api_base}/threads"), thread.patient_id))
    return found


async def _consents(session: AsyncSession, principal: Principal, links: Links, rows: Sequence[Any]) -> list[Found]:
    consents: list[Consent] = [row[0] for row in rows]
    names = await tenant_names(session, {c.grantee_tenant_id for c in consents if c.grantee_tenant_id})
    now = utcnow()
    return [Found(consent_to_fhir(row[0], row[1], names, now), row[1]) for row in rows]


def _consent_query(principal: Principal, by_patient: bool) -> _Query:
    """Only the consents this tenant recorded. Picked by patient, a consent is found through any of this tenant's
    records of its person (as the staff API lists them); read alone, it is about the record it was recorded for."""
    mine = Consent.recorded_tenant_id == principal.tenant_id
    order = (Consent.recorded_at, Consent.id)
    if not by_patient:
        statement = select(Consent, Consent.recorded_patient_id).where(mine)
        return _Query(statement, Consent.id, Consent.recorded_patient_id, order, _consents)
    statement = (
        select(Consent, PatientLink.patient_id)
        .join(
            PatientLink,
            and_(PatientLink.person_id == Consent.person_id, PatientLink.tenant_id == principal.tenant_id),
        )
        .where(mine)
    )
    return _Query(statement, Consent.id, PatientLink.patient_id, order, _consents)


def _query(
    resource_type: str, principal: Principal, patient_id: uuid.UUID | None = None, *, by_patient: bool = False
) -> _Query:
    """``by_patient``: the query will pick by patient (a search for a patient's resources, or a revinclude)."""
    if resource_type == "Consent":
        return _consent_query(principal, patient_id is not None or by_patient)
    if resource_type == "Patient":
        return _Query(select(Patient), Patient.id, Patient.id, (Patient.id,), _patients)
    if resource_type == "CareTeam":
        return _Query(
            select(CareTeam), CareTeam.id, CareTeam.patient_id, (CareTeam.created_at, CareTeam.id), _careteams
        )
    if resource_type == "CarePlan":
        return _Query(
            select(CarePlan), CarePlan.id, CarePlan.patient_id, (CarePlan.created_at, CarePlan.id), _careplans
        )
    if resource_type == "Goal":
        statement = select(CarePlanGoal, CarePlan.patient_id).join(CarePlan, CarePlan.id == CarePlanGoal.plan_id)
        order: tuple[Any, ...] = (CarePlan.created_at, CarePlan.id, CarePlanGoal.created_at, CarePlanGoal.id)
        return _Query(statement, CarePlanGoal.id, CarePlan.patient_id, order, _goals)
    if resource_type == "Task":
        return _Query(select(Task), Task.id, Task.patient_id, (Task.created_at, Task.id), _tasks)
    if resource_type == "Appointment":
        order = (Appointment.start_at, Appointment.id)
        return _Query(select(Appointment), Appointment.id, Appointment.patient_id, order, _appointments)
    # Communication: the current version of each message, in threads the caller takes part in.
    mine = select(ThreadParticipant.thread_id).where(ThreadParticipant.user_id == principal.user_id)
    if patient_id is not None:
        # A search: only that patient's threads (so the grouping below does not scan every thread of the caller).
        mine = mine.join(Thread, Thread.id == ThreadParticipant.thread_id).where(Thread.patient_id == patient_id)
    current = (
        select(
            Message.original_id,
            func.max(Message.version).label("version"),
            func.min(Message.sent_at).label("first_sent"),
        )
        .where(Message.thread_id.in_(mine))
        .group_by(Message.original_id)
        .subquery()
    )
    statement = (
        select(Message, current.c.first_sent, Thread.patient_id)
        .join(current, and_(Message.original_id == current.c.original_id, Message.version == current.c.version))
        .join(Thread, Thread.id == Message.thread_id)
    )
    order = (current.c.first_sent, Message.original_id)
    return _Query(statement, Message.original_id, Thread.patient_id, order, _communications)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def read(
    session: AsyncSession, principal: Principal, resource_type: str, resource_id: str, links: Links
) -> dict[str, Any]:
    """One resource. An unknown type, a malformed id, a missing record and another tenant's record all answer
    404 alike (only a well-formed id's miss is audited, as not found)."""
    check_type(resource_type)
    _require(principal, resource_type, "fhir.read")
    wanted = _as_uuid(resource_id)
    query = _query(resource_type, principal)
    rows = []
    if wanted is not None:
        rows = list((await session.execute(query.statement.where(query.by_id == wanted))).all())
    found = await query.render(session, principal, links, rows)
    if not found:
        if wanted is not None:
            audit.record_failure(
                session,
                principal.actor,
                action="fhir.read",
                resource_type=resource_type,
                resource_id=wanted,
                outcome="not_found",
            )
        raise NotFound(f"{resource_type} not found")
    resource = found[0]
    audit.record(
        session,
        principal.actor,
        action="fhir.read",
        resource_type=resource_type,
        resource_id=resource.resource["id"],
        patient_id=resource.patient_id,
    )
    return resource.resource


@dataclass(frozen=True)
class SearchPage:
    total: int
    found: list[Found]
    included: list[Found] = field(default_factory=list)


@dataclass(frozen=True)
class Criteria:
    """What a search asks for: a patient, an id (both when given), and the resources to include with the matches.

    ``nothing``: a criterion was given that no record can meet (a malformed id or reference)."""

    patient_id: uuid.UUID | None = None
    resource_id: uuid.UUID | None = None
    nothing: bool = False
    include: bool = False
    revinclude: tuple[str, ...] = ()


async def search(
    session: AsyncSession,
    principal: Principal,
    resource_type: str,
    criteria: Criteria,
    links: Links,
    *,
    count: int,
    offset: int,
) -> SearchPage:
    """The resources meeting ``criteria`` (none of another tenant's), ``count`` from ``offset``, with the patients
    of the matches (``include``) or, for a Patient search, the resources of the listed types about the matches
    (``revinclude``). The total counts the matches only."""
    check_type(resource_type)
    _require(principal, resource_type, "fhir.search")
    for other in criteria.revinclude:
        _require(principal, other, "fhir.search")
    if criteria.nothing or (criteria.patient_id is None and criteria.resource_id is None):
        return SearchPage(0, [])
    patient_id = criteria.patient_id
    query = _query(resource_type, principal, patient_id)
    statement = query.statement
    if patient_id is not None:
        statement = statement.where(query.by_patient == patient_id)
    if criteria.resource_id is not None:
        statement = statement.where(query.by_id == criteria.resource_id)
    total = await session.scalar(select(func.count()).select_from(statement.subquery())) or 0
    rows: list[Any] = []
    if count and offset < total:
        paged = statement.order_by(*query.order).limit(min(count, MAX_COUNT)).offset(offset)
        rows = list((await session.execute(paged)).all())
    found = await query.render(session, principal, links, rows)
    included = await _included(session, principal, resource_type, criteria, links, found)
    for item in (*found, *included):
        audit.record(
            session,
            principal.actor,
            action="fhir.search",
            resource_type=item.resource["resourceType"],
            resource_id=item.resource["id"],
            patient_id=item.patient_id,
        )
    if not found:
        # A search that returns nothing still asked about a patient: it is recorded too.
        detail: dict[str, Any] = {}
        if patient_id is not None:
            detail["patient"] = str(patient_id)
        if criteria.resource_id is not None:
            detail["_id"] = str(criteria.resource_id)
        audit.record(
            session,
            principal.actor,
            action="fhir.search",
            resource_type=resource_type,
            detail={**detail, "total": total, "offset": offset},
        )
    return SearchPage(total, found, included)


async def _included(
    session: AsyncSession,
    principal: Principal,
    resource_type: str,
    criteria: Criteria,
    links: Links,
    found: list[Found],
) -> list[Found]:
    """The patients of the matches, or the resources about the matched patients: through this tenant's queries."""
    patients = list(dict.fromkeys(item.patient_id for item in found))
    if not patients:
        return []
    included: list[Found] = []
    if criteria.include and resource_type != "Patient":
        query = _query("Patient", principal)
        rows = (await session.execute(query.statement.where(query.by_id.in_(patients)).order_by(*query.order))).all()
        included.extend(await query.render(session, principal, links, list(rows)))
    if resource_type == "Patient":
        for other in criteria.revinclude:
            query = _query(other, principal, by_patient=True)
            statement = query.statement.where(query.by_patient.in_(patients)).order_by(*query.order)
            rows = (await session.execute(statement.limit(MAX_REVINCLUDE))).all()
            included.extend(await query.render(session, principal, links, list(rows)))
    return included


async def create_consent(
    session: AsyncSession, principal: Principal, resource: Any, if_none_exist: str | None
) -> tuple[bool, dict[str, Any]]:
    """Record a posted Consent (or, with ``If-None-Exist``, answer this tenant's matching one): (created, it)."""
    _require(principal, "Consent", "fhir.create", "write")
    created, consent, patient_id = await fhir_consent.create(session, principal, resource, if_none_exist)
    rendered = await fhir_consent.render(session, consent, patient_id, utcnow())
    if not created:
        audit.record(
            session,
            principal.actor,
            action="fhir.read",
            resource_type="Consent",
            resource_id=consent.id,
            patient_id=patient_id,
        )
    return created, rendered
