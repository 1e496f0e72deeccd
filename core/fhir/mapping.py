"""carehub records as FHIR R4 (4.0.1) JSON resources.

Each ``*_to_fhir`` takes the ORM record (and what it refers to) and returns a plain dict. Staff users appear as
``Practitioner/<user id>`` references with their name; patients as ``Patient/<id>``. Fields FHIR R4 has no element
for are carried in carehub extensions (see :mod:`core.fhir.common`). Staff-only remarks (``staff_note``) and
internal settings (appointment reminders, template data) are never included.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.appointments.models import Appointment
from core.careplans.models import CarePlan, CarePlanActivity, CarePlanGoal
from core.careteams.models import CareTeam, CareTeamMember
from core.fhir.common import (
    ACTIVITY_KIND,
    APPOINTMENT_KIND,
    BCP47,
    CARE_TEAM_ROLE,
    DATA_ABSENT_REASON,
    EXT_ACTIVITY_KIND,
    EXT_ACTIVITY_STATUS,
    EXT_SHA256,
    EXT_TASK_ASSIGNEE,
    EXT_TASK_ESCALATION,
    EXT_TASK_FOR_PATIENT,
    EXT_VIDEO_LINK,
    GOAL_ACHIEVEMENT,
    LEAD_ROLE,
    TASK_TEMPLATE,
    V2_IDENTIFIER_TYPE,
    compact,
    concept,
    instant,
    label,
    meta,
    mrn_system,
    practitioner,
    reference,
)
from core.messaging.models import Message, MessageAttachment, Thread, ThreadParticipant
from core.patients.models import Patient
from core.tasks.models import Task, TaskComment

Names = Mapping[uuid.UUID, str]

TASK_STATUS = {"in_progress": "in-progress"}  # the others have the same code in FHIR
# An activity's FHIR detail.kind, where FHIR has a resource for it.
ACTIVITY_DETAIL_KIND = {"task": "Task", "appointment": "Appointment", "referral": "ServiceRequest"}


def patient_to_fhir(patient: Patient, tenant_id: uuid.UUID) -> dict[str, Any]:
    identifiers = [
        {
            "use": "usual",
            "type": concept(V2_IDENTIFIER_TYPE, "MR", "Medical record number"),
            "system": mrn_system(tenant_id),
            "value": patient.mrn,
        },
        *({"system": i.system, "value": i.value} for i in patient.identifiers),
    ]
    telecom = []
    if patient.phone:
        telecom.append({"system": "phone", "value": patient.phone})
    if patient.email:
        telecom.append({"system": "email", "value": patient.email})
    return compact(
        {
            "resourceType": "Patient",
            "id": str(patient.id),
            "meta": meta(patient.updated_at),
            "identifier": identifiers,
            "active": patient.active,
            "name": [{"use": "official", "family": patient.family_name, "given": [patient.given_name]}],
            "telecom": telecom,
            "gender": patient.sex,
            "birthDate": patient.birth_date.isoformat(),
            "address": [a for a in [_address(patient.address or {})] if a],
            "communication": (
                [{"language": concept(BCP47, patient.language), "preferred": True}] if patient.language else []
            ),
        }
    )


def _address(stored: Mapping[str, Any]) -> dict[str, Any]:
    """An address element; blank parts (records stored before they were cleaned) are left out."""

    def text(value: Any) -> str | None:
        return value.strip() or None if isinstance(value, str) else None

    return compact(
        {
            "line": [line.strip() for line in stored.get("line") or [] if isinstance(line, str) and line.strip()],
            "city": text(stored.get("city")),
            "state": text(stored.get("state")),
            "postalCode": text(stored.get("postal_code")),
            "country": text(stored.get("country")),
        }
    )


def careteam_to_fhir(team: CareTeam, names: Names) -> dict[str, Any]:
    """The team's lead comes first; their roles include carehub's ``lead`` code. Outside members are contained
    Practitioner resources (a caregiver: RelatedPerson) with their name and contact details."""
    members = sorted(team.members, key=lambda m: not m.is_lead)
    contained = [_outside_member(m, team.patient_id) for m in members if m.user_id is None]
    return compact(
        {
            "resourceType": "CareTeam",
            "id": str(team.id),
            "meta": meta(team.updated_at),
            "contained": contained,
            "status": team.status,
            "name": team.name,
            "subject": reference("Patient", team.patient_id),
            "participant": [_participant(m, names) for m in members],
        }
    )


def _participant(member: CareTeamMember, names: Names) -> dict[str, Any]:
    roles = [concept(CARE_TEAM_ROLE, member.role, label(member.role))]
    if member.is_lead:
        roles.append(concept(CARE_TEAM_ROLE, LEAD_ROLE, "Care team lead"))
    if member.user_id is not None:
        who = practitioner(member.user_id, names)
    else:
        who = {"reference": f"#{member.id}", "display": member.name}
    return compact(
        {
            "id": str(member.id),
            "role": roles,
            "member": who,
            "onBehalfOf": {"display": member.organisation} if member.organisation else None,
        }
    )


def _outside_member(member: CareTeamMember, patient_id: uuid.UUID) -> dict[str, Any]:
    telecom = []
    if member.phone:
        telecom.append({"system": "phone", "value": member.phone})
    if member.email:
        telecom.append({"system": "email", "value": member.email})
    resource: dict[str, Any] = {
        "resourceType": "RelatedPerson" if member.role == "caregiver" else "Practitioner",
        "id": str(member.id),
    }
    if member.role == "caregiver":
        resource["patient"] = reference("Patient", patient_id)
    resource.update(compact({"name": [{"text": member.name}] if member.name else [], "telecom": telecom}))
    return resource


def careplan_to_fhir(plan: CarePlan, names: Names) -> dict[str, Any]:
    period = compact(
        {
            "start": plan.period_start.isoformat() if plan.period_start else None,
            "end": plan.period_end.isoformat() if plan.period_end else None,
        }
    )
    return compact(
        {
            "resourceType": "CarePlan",
            "id": str(plan.id),
            "meta": meta(plan.updated_at, plan.version),
            "status": plan.status,
            "intent": "plan",
            "title": plan.title,
            "description": plan.description,
            "subject": reference("Patient", plan.patient_id),
            "period": period,
            "created": instant(plan.created_at) if plan.created_at else None,
            "author": practitioner(plan.author_id, names) if plan.author_id else None,
            "goal": [reference("Goal", g.id, g.description) for g in plan.goals],
            "activity": [_activity(a) for a in plan.activities],
        }
    )


def _activity(activity: CarePlanActivity) -> dict[str, Any]:
    """A linked task or appointment is referenced (kind and status in extensions: FHIR allows a reference or a
    detail, not both); anything else is described in ``detail``."""
    linked = ("Task", activity.task_id) if activity.task_id is not None else ("Appointment", activity.appointment_id)
    if linked[1] is not None:
        return {
            "id": str(activity.id),
            "extension": [
                {"url": EXT_ACTIVITY_KIND, "valueCode": activity.kind},
                {"url": EXT_ACTIVITY_STATUS, "valueCode": activity.status},
            ],
            "reference": reference(linked[0], linked[1], activity.description),
        }
    detail = compact(
        {
            "kind": ACTIVITY_DETAIL_KIND.get(activity.kind),
            "code": concept(ACTIVITY_KIND, activity.kind, label(activity.kind)),
            "status": activity.status,
            "description": activity.description,
        }
    )
    return {"id": str(activity.id), "detail": detail}


def goal_to_fhir(goal: CarePlanGoal, patient_id: uuid.UUID) -> dict[str, Any]:
    target: dict[str, Any] = {}
    if goal.measure:
        target["measure"] = {"text": goal.measure}
    if goal.target_value:
        # FHIR requires a measure with a target value (gol-1): say it is unknown when we have none.
        target.setdefault("measure", {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]})
        target["detailString"] = goal.target_value
    if goal.due_date:
        target["dueDate"] = goal.due_date.isoformat()
    return compact(
        {
            "resourceType": "Goal",
            "id": str(goal.id),
            "meta": meta(goal.updated_at),
            "lifecycleStatus": goal.lifecycle_status,
            "achievementStatus": concept(GOAL_ACHIEVEMENT, goal.achievement_status, label(goal.achievement_status)),
            "description": {"text": goal.description},
            "subject": reference("Patient", patient_id),
            "target": [target] if target else [],
        }
    )


def task_to_fhir(task: Task, names: Names, comments: Sequence[TaskComment] = ()) -> dict[str, Any]:
    """``owner`` is the responsible staff member, ``requester`` who created the task; the assignee (who does it)
    and whether it is the patient's own to do are carehub extensions."""
    extensions: list[dict[str, Any]] = []
    if task.assignee_id is not None:
        extensions.append({"url": EXT_TASK_ASSIGNEE, "valueReference": practitioner(task.assignee_id, names)})
    if task.for_patient:
        extensions.append({"url": EXT_TASK_FOR_PATIENT, "valueBoolean": True})
    if task.escalation_level:
        extensions.append({"url": EXT_TASK_ESCALATION, "valueInteger": task.escalation_level})
    code: dict[str, Any] = {"text": task.title}
    if task.template_code:
        code = concept(TASK_TEMPLATE, task.template_code, text=task.title)
    return compact(
        {
            "resourceType": "Task",
            "id": str(task.id),
            "meta": meta(task.updated_at),
            "extension": extensions,
            "basedOn": [reference("CarePlan", task.care_plan_id)] if task.care_plan_id else [],
            "status": TASK_STATUS.get(task.status, task.status),
            "statusReason": {"text": task.status_reason} if task.status_reason else None,
            "intent": "order",
            "priority": task.priority,
            "code": code,
            "description": task.description,
            "for": reference("Patient", task.patient_id),
            "executionPeriod": {"end": instant(task.completed_at)} if task.completed_at else None,
            "authoredOn": instant(task.created_at) if task.created_at else None,
            "lastModified": instant(task.updated_at) if task.updated_at else None,
            "requester": practitioner(task.created_by, names) if task.created_by else None,
            "owner": practitioner(task.owner_id, names),
            "restriction": {"period": {"end": instant(task.due_at)}} if task.due_at else None,
            "note": [_note(c, names) for c in comments],
        }
    )


def _note(comment: TaskComment, names: Names) -> dict[str, Any]:
    return compact(
        {
            "authorReference": practitioner(comment.author_id, names) if comment.author_id else None,
            "time": instant(comment.created_at) if comment.created_at else None,
            "text": comment.body,
        }
    )


def appointment_to_fhir(appointment: Appointment, names: Names) -> dict[str, Any]:
    """The kind (in person, phone, video) is the appointment type; the location a Location participant named by
    its display; the video link a carehub extension. Never the staff note or the reminder settings."""
    participation = "needs-action" if appointment.status == "proposed" else "accepted"
    participants: list[dict[str, Any]] = [
        {"actor": reference("Patient", appointment.patient_id), "required": "required", "status": participation},
        {
            "actor": practitioner(appointment.participant_id, names),
            "required": "required",
            "status": participation,
        },
    ]
    if appointment.location:
        participants.append({"actor": {"type": "Location", "display": appointment.location}, "status": participation})
    return compact(
        {
            "resourceType": "Appointment",
            "id": str(appointment.id),
            "meta": meta(appointment.updated_at),
            "extension": (
                [{"url": EXT_VIDEO_LINK, "valueUrl": appointment.video_link}] if appointment.video_link else []
            ),
            "status": appointment.status,
            "cancelationReason": (
                {"text": appointment.status_reason}
                if appointment.status == "cancelled" and appointment.status_reason
                else None
            ),
            "appointmentType": concept(APPOINTMENT_KIND, appointment.kind, label(appointment.kind)),
            "reasonCode": [{"text": appointment.reason}] if appointment.reason else [],
            "start": instant(appointment.start_at),
            "end": instant(appointment.end_at),
            "created": instant(appointment.created_at) if appointment.created_at else None,
            "participant": participants,
        }
    )


@dataclass
class MessageView:
    """A message as it stands (its current version) with what its Communication refers to."""

    thread: Thread
    current: Message
    first_sent_at: datetime
    participants: Sequence[ThreadParticipant]
    attachments: Sequence[MessageAttachment] = field(default_factory=list)


def communication_to_fhir(view: MessageView, names: Names, attachment_base: str) -> dict[str, Any]:
    """One Communication per message (its id is the message's original id, its version the message's); a deleted
    message is ``entered-in-error`` with no payload. ``attachment_base`` is the absolute URL of the threads API
    (``.../api/v1/threads``) under which attachments are downloaded."""
    thread, message = view.thread, view.current
    by_id = {p.id: p for p in view.participants}

    def who(participant: ThreadParticipant) -> dict[str, Any]:
        if participant.is_patient or participant.user_id is None:
            return reference("Patient", thread.patient_id)
        return practitioner(participant.user_id, names)

    author = by_id.get(message.author_participant_id)
    payload: list[dict[str, Any]] = []
    if not message.deleted:
        if message.body:
            payload.append({"contentString": message.body})
        payload.extend(
            {"contentAttachment": _attachment(a, f"{attachment_base}/{thread.id}/attachments/{a.id}")}
            for a in view.attachments
        )
    return compact(
        {
            "resourceType": "Communication",
            "id": str(message.original_id),
            "meta": meta(message.sent_at, message.version),
            "status": "entered-in-error" if message.deleted else "completed",
            "subject": reference("Patient", thread.patient_id),
            "topic": {"text": thread.subject},
            "sent": instant(view.first_sent_at),
            "sender": who(author) if author is not None else None,
            "recipient": [who(p) for p in view.participants if p.id != message.author_participant_id],
            "payload": payload,
        }
    )


def _attachment(attachment: MessageAttachment, url: str) -> dict[str, Any]:
    """FHIR's ``hash`` is a SHA-1; carehub keeps a SHA-256, so it goes in an extension."""
    return {
        "extension": [{"url": EXT_SHA256, "valueString": attachment.sha256}],
        "contentType": attachment.content_type,
        "url": url,
        "size": attachment.size,
        "title": attachment.name,
    }
