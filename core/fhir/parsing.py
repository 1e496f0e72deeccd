"""FHIR R4 JSON resources read into carehub's API create bodies.

Each ``*_from_fhir`` checks the resource against the FHIR definition first, then returns a dict shaped like the
body of the matching create route (dates and times as ISO 8601 strings, ids as strings), ready to be sent to the
API, which validates it further. Anything carehub cannot take raises :class:`core.errors.InvalidInput` naming the
FHIR path (``Appointment.participant[1].actor``). Elements with no carehub field are ignored.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from core.careplans.models import ACTIVITY_KINDS, ACTIVITY_STATUSES
from core.careplans.models import GOAL_ACHIEVEMENT as OUR_ACHIEVEMENT
from core.careplans.models import GOAL_LIFECYCLE as OUR_LIFECYCLE
from core.careteams.models import TEAM_ROLES
from core.errors import InvalidInput
from core.fhir.common import (
    ACTIVITY_KIND,
    APPOINTMENT_KIND,
    BCP47,
    CARE_TEAM_ROLE,
    EXT_ACTIVITY_KIND,
    EXT_ACTIVITY_STATUS,
    EXT_TASK_ASSIGNEE,
    EXT_TASK_FOR_PATIENT,
    EXT_VIDEO_LINK,
    GOAL_ACHIEVEMENT,
    LEAD_ROLE,
    TASK_TEMPLATE,
    V2_IDENTIFIER_TYPE,
    aware_datetime,
    codes,
    extension,
    full_date,
    is_mrn_system,
    parse_reference,
    parse_uuid,
    reference_id,
    validate,
)
from core.fhir.mapping import ACTIVITY_DETAIL_KIND
from core.tasks.models import PRIORITIES

Body = dict[str, Any]


Reader = TypeVar("Reader", bound=Callable[..., Any])


def _reader(resource_type: str) -> Callable[[Reader], Reader]:
    """Whatever a reader meets in a (validated) resource, it answers :class:`InvalidInput`, never another error."""

    def wrap(fn: Reader) -> Reader:
        @functools.wraps(fn)
        def read(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except InvalidInput:
                raise
            except (AttributeError, IndexError, KeyError, TypeError, ValueError, RecursionError) as exc:
                raise InvalidInput(
                    f"carehub cannot read this {resource_type} ({type(exc).__name__})", field=resource_type
                ) from None

        return cast(Reader, read)

    return wrap


def _put(body: Body, key: str, value: Any) -> None:
    """Set ``key`` only when there is a value (the create bodies take absent fields as their defaults)."""
    if value not in (None, "", []):
        body[key] = value


def _telecom(resource: Mapping[str, Any], system: str) -> str | None:
    return next((t.get("value") for t in resource.get("telecom", []) if t.get("system") == system), None)


def _human_name(name: Mapping[str, Any]) -> str | None:
    if name.get("text"):
        return str(name["text"])
    parts = [*name.get("given", []), name.get("family")]
    return " ".join(p for p in parts if p) or None


@_reader("Patient")
def patient_from_fhir(resource: Any) -> Body:
    """A Patient as a ``POST /api/v1/patients`` body. The MRN is the identifier of type ``MR`` (or in a carehub MRN
    system); every other identifier needs a system."""
    validate(resource, "Patient")
    mrn: str | None = None
    identifiers: list[Body] = []
    for index, ident in enumerate(resource.get("identifier", [])):
        path = f"Patient.identifier[{index}]"
        system, value = ident.get("system"), ident.get("value")
        if not value:
            raise InvalidInput("an identifier needs a value", field=f"{path}.value")
        if mrn is None and (is_mrn_system(system) or "MR" in codes(ident.get("type"), V2_IDENTIFIER_TYPE)):
            mrn = value
        elif not system:
            raise InvalidInput("an identifier needs a system", field=f"{path}.system")
        else:
            identifiers.append({"system": system, "value": value})
    if mrn is None:
        raise InvalidInput("no medical record number (an identifier of type MR)", field="Patient.identifier")
    names = resource.get("name", [])
    index = next((i for i, n in enumerate(names) if n.get("use") == "official"), 0)
    if not names:
        raise InvalidInput("a name is required", field="Patient.name")
    name = names[index]
    if not name.get("family"):
        raise InvalidInput("a family name is required", field=f"Patient.name[{index}].family")
    if not name.get("given"):
        raise InvalidInput("a given name is required", field=f"Patient.name[{index}].given")
    if "birthDate" not in resource:
        raise InvalidInput("a birth date is required", field="Patient.birthDate")
    body: Body = {
        "mrn": mrn,
        "given_name": " ".join(name["given"]),
        "family_name": name["family"],
        "birth_date": full_date(resource["birthDate"], "Patient.birthDate"),
        "sex": resource.get("gender", "unknown"),
    }
    _put(body, "phone", _telecom(resource, "phone"))
    _put(body, "email", _telecom(resource, "email"))
    if resource.get("address"):
        address = resource["address"][0]
        stored: Body = {}
        _put(stored, "line", address.get("line"))
        for ours, theirs in (
            ("city", "city"),
            ("state", "state"),
            ("postal_code", "postalCode"),
            ("country", "country"),
        ):
            _put(stored, ours, address.get(theirs))
        _put(body, "address", stored)
    languages = sorted(resource.get("communication", []), key=lambda c: not c.get("preferred"))
    if languages:
        language = languages[0]["language"]
        _put(body, "language", next(iter(codes(language, BCP47)), None) or language.get("text"))
    _put(body, "identifiers", identifiers)
    return body


@_reader("resource")
def patient_of(resource: Any) -> uuid.UUID:
    """The carehub patient a CareTeam, CarePlan, Goal, Task, Appointment or Communication is about."""
    resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
    if resource_type not in ("CareTeam", "CarePlan", "Goal", "Task", "Appointment", "Communication"):
        raise InvalidInput("not a CareTeam, CarePlan, Goal, Task, Appointment or Communication", field="resourceType")
    validate(resource, resource_type)
    element = "for" if resource_type == "Task" else "subject"
    if resource_type == "Appointment":
        for index, participant in enumerate(resource.get("participant", [])):
            target = participant.get("actor", {}).get("reference", "")
            if "Patient/" in target:
                return reference_id(participant["actor"], f"Appointment.participant[{index}].actor", "Patient")
        raise InvalidInput("no patient participant", field="Appointment.participant")
    return reference_id(
        resource.get(element) if isinstance(resource, dict) else None, f"{resource_type}.{element}", "Patient"
    )


@_reader("CareTeam")
def careteam_from_fhir(resource: Any) -> Body:
    """A CareTeam as a ``POST /api/v1/patients/{patient_id}/care-team`` body (the patient: :func:`patient_of`).

    A member referencing ``Practitioner/<user id>`` is a staff user; one referencing a contained resource, or only
    named, is an outside member. A role with carehub's ``lead`` code makes the member the lead.
    """
    validate(resource, "CareTeam")
    contained = {c.get("id"): c for c in resource.get("contained", [])}
    members: list[Body] = []
    for index, participant in enumerate(resource.get("participant", [])):
        path = f"CareTeam.participant[{index}]"
        role_codes = [code for role in participant.get("role", []) for code in codes(role, CARE_TEAM_ROLE)]
        roles = [c for c in role_codes if c != LEAD_ROLE]
        member_ref = participant.get("member")
        if not member_ref:
            raise InvalidInput("a participant needs a member", field=f"{path}.member")
        member: Body = {"role": roles[0] if roles and roles[0] in TEAM_ROLES else "other"}
        target = member_ref.get("reference", "")
        if target.startswith("#"):
            person = contained.get(target[1:])
            if person is None:
                raise InvalidInput("no contained resource has this id", field=f"{path}.member.reference")
            if person.get("resourceType") not in ("Practitioner", "RelatedPerson", "Patient"):
                raise InvalidInput(
                    "an outside member is a contained Practitioner or RelatedPerson", field=f"{path}.member"
                )
            names = person.get("name", [])
            _put(member, "name", (_human_name(names[0]) if names else None) or member_ref.get("display"))
            _put(member, "phone", _telecom(person, "phone"))
            _put(member, "email", _telecom(person, "email"))
        elif target:
            member["user_id"] = str(reference_id(member_ref, f"{path}.member", "Practitioner"))
        else:
            _put(member, "name", member_ref.get("display"))
        if "user_id" not in member and "name" not in member:
            raise InvalidInput("an outside member needs a name", field=f"{path}.member.display")
        _put(member, "organisation", participant.get("onBehalfOf", {}).get("display"))
        if LEAD_ROLE in role_codes:
            member["is_lead"] = True
        members.append(member)
    body: Body = {}
    _put(body, "name", resource.get("name"))
    _put(body, "members", members)
    return body


@_reader("Goal")
def goal_from_fhir(resource: Any) -> Body:
    """A Goal as a care plan's goal (``GoalIn``)."""
    validate(resource, "Goal")
    description = resource["description"].get("text")
    if not description:
        raise InvalidInput("the goal needs a description text", field="Goal.description.text")
    lifecycle = resource.get("lifecycleStatus")
    if lifecycle not in OUR_LIFECYCLE:
        raise InvalidInput(f"lifecycleStatus must be one of {', '.join(OUR_LIFECYCLE)}", field="Goal.lifecycleStatus")
    body: Body = {"description": description, "lifecycle_status": lifecycle}
    achievement = codes(resource.get("achievementStatus"), GOAL_ACHIEVEMENT)
    if achievement:
        if achievement[0] not in OUR_ACHIEVEMENT:
            raise InvalidInput("unknown achievement status", field="Goal.achievementStatus")
        body["achievement_status"] = achievement[0]
    targets = resource.get("target", [])
    if targets:
        target = targets[0]
        _put(body, "measure", target.get("measure", {}).get("text"))
        value = target.get("detailString")
        if value is None and "detailInteger" in target:
            value = str(target["detailInteger"])
        if value is None and "detailQuantity" in target:
            quantity = target["detailQuantity"]
            value = " ".join(str(p) for p in (quantity.get("value"), quantity.get("unit")) if p is not None)
        _put(body, "target_value", value)
        if "dueDate" in target:
            body["due_date"] = full_date(target["dueDate"], "Goal.target[0].dueDate")
    return body


@_reader("CarePlan")
def careplan_from_fhir(resource: Any, goals: Sequence[Any] = ()) -> Body:
    """A CarePlan as a ``POST /api/v1/care-plans`` body. Its goals are read from the resources it references:
    contained ones (``#id``) or those given in ``goals`` (``Goal/<id>``). A new plan is ``draft`` or ``active``."""
    validate(resource, "CarePlan")
    if resource["status"] not in ("draft", "active"):
        raise InvalidInput("a new care plan is draft or active", field="CarePlan.status")
    body: Body = {
        "patient_id": str(reference_id(resource.get("subject"), "CarePlan.subject", "Patient")),
        "status": resource["status"],
    }
    _put(body, "title", resource.get("title"))
    _put(body, "description", resource.get("description"))
    period = resource.get("period", {})
    if "start" in period:
        body["period_start"] = full_date(period["start"], "CarePlan.period.start")
    if "end" in period:
        body["period_end"] = full_date(period["end"], "CarePlan.period.end")
    known = {f"#{g['id']}": g for g in resource.get("contained", []) if g.get("resourceType") == "Goal" and g.get("id")}
    known.update({f"Goal/{g.get('id')}": g for g in goals if isinstance(g, dict)})
    plan_goals = []
    for index, ref in enumerate(resource.get("goal", [])):
        target = ref.get("reference", "")
        goal = known.get(target) or known.get("Goal/" + target.rpartition("Goal/")[2])
        if goal is None:
            raise InvalidInput("the referenced Goal was not given", field=f"CarePlan.goal[{index}]")
        plan_goals.append(goal_from_fhir(goal))
    _put(body, "goals", plan_goals)
    _put(
        body,
        "activities",
        [_activity(a, f"CarePlan.activity[{i}]") for i, a in enumerate(resource.get("activity", []))],
    )
    return body


def _activity(activity: Mapping[str, Any], path: str) -> Body:
    if "reference" in activity:
        target_type, target_id = parse_reference(activity["reference"], f"{path}.reference", "Task", "Appointment")
        kind = (extension(activity, EXT_ACTIVITY_KIND) or {}).get("valueCode") or target_type.lower()
        description = activity["reference"].get("display")
        if not description:
            raise InvalidInput("the activity needs a description (the reference's display)", field=f"{path}.reference")
        found: Body = {"kind": kind, "description": description}
        _put(found, "status", (extension(activity, EXT_ACTIVITY_STATUS) or {}).get("valueCode"))
        found[f"{target_type.lower()}_id"] = str(parse_uuid(target_id, f"{path}.reference.reference"))
    elif "detail" in activity:
        detail = activity["detail"]
        by_detail_kind = {v: k for k, v in ACTIVITY_DETAIL_KIND.items()}
        kind = next(iter(codes(detail.get("code"), ACTIVITY_KIND)), None) or by_detail_kind.get(
            detail.get("kind"), "other"
        )
        description = detail.get("description") or detail.get("code", {}).get("text")
        if not description:
            raise InvalidInput("the activity needs a description", field=f"{path}.detail.description")
        if detail["status"] not in ACTIVITY_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(ACTIVITY_STATUSES)}", field=f"{path}.detail.status")
        found = {"kind": kind, "description": description, "status": detail["status"]}
    else:
        raise InvalidInput("an activity needs a reference or a detail", field=path)
    if found["kind"] not in ACTIVITY_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(ACTIVITY_KINDS)}", field=path)
    return found


@_reader("Task")
def task_from_fhir(resource: Any) -> Body:
    """A Task as a ``POST /api/v1/tasks`` body (a new task starts ``requested`` whatever the resource's status).
    An owner that is the patient makes a task for the patient to do."""
    validate(resource, "Task")
    patient_id = reference_id(resource.get("for"), "Task.for", "Patient")
    body: Body = {"patient_id": str(patient_id)}
    code = resource.get("code", {})
    _put(body, "title", code.get("text"))
    _put(body, "template_code", next(iter(codes(code, TASK_TEMPLATE)), None))
    _put(body, "description", resource.get("description"))
    plans = [i for i, ref in enumerate(resource.get("basedOn", [])) if "CarePlan/" in ref.get("reference", "")]
    if plans:
        body["care_plan_id"] = str(reference_id(resource["basedOn"][plans[0]], f"Task.basedOn[{plans[0]}]", "CarePlan"))
    owner = resource.get("owner")
    if owner is not None:
        owner_type, _ = parse_reference(owner, "Task.owner.reference", "Practitioner", "Patient")
        if owner_type == "Patient":
            if reference_id(owner, "Task.owner", "Patient") != patient_id:
                raise InvalidInput("the owner is another patient", field="Task.owner")
            body["for_patient"] = True
        else:
            body["owner_id"] = str(reference_id(owner, "Task.owner", "Practitioner"))
    assignee = extension(resource, EXT_TASK_ASSIGNEE)
    if assignee is not None:
        body["assignee_id"] = str(
            reference_id(assignee.get("valueReference"), "Task.extension(assignee)", "Practitioner")
        )
    if (extension(resource, EXT_TASK_FOR_PATIENT) or {}).get("valueBoolean"):
        body["for_patient"] = True
    due = resource.get("restriction", {}).get("period", {}).get("end")
    if due is not None:
        body["due_at"] = aware_datetime(due, "Task.restriction.period.end")
    priority = resource.get("priority")
    if priority is not None:
        if priority not in PRIORITIES:
            raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}", field="Task.priority")
        body["priority"] = priority
    return body


@_reader("Appointment")
def appointment_from_fhir(resource: Any) -> Body:
    """An Appointment as a ``POST /api/v1/appointments`` body: one Patient and one Practitioner participant, a
    carehub appointment type (in person, phone, video), start and end; a new appointment is proposed or booked."""
    validate(resource, "Appointment")
    if resource["status"] not in ("proposed", "booked"):
        raise InvalidInput("a new appointment is proposed or booked", field="Appointment.status")
    kinds = codes(resource.get("appointmentType"), APPOINTMENT_KIND)
    if not kinds:
        raise InvalidInput("the appointment type needs a carehub kind code", field="Appointment.appointmentType")
    body: Body = {"kind": kinds[0], "status": resource["status"]}
    for index, participant in enumerate(resource["participant"]):
        path = f"Appointment.participant[{index}].actor"
        actor = participant.get("actor", {})
        target = actor.get("reference", "")
        if actor.get("type") == "Location" or target.startswith("Location/"):
            _put(body, "location", actor.get("display"))
        elif target.partition("/")[0] == "Patient" or "/Patient/" in target:
            body.setdefault("patient_id", str(reference_id(actor, path, "Patient")))
        elif target:
            body.setdefault("participant_id", str(reference_id(actor, path, "Practitioner")))
    for needed in ("patient_id", "participant_id"):
        if needed not in body:
            who = "Patient" if needed == "patient_id" else "Practitioner"
            raise InvalidInput(f"a {who} participant is required", field="Appointment.participant")
    for element in ("start", "end"):
        if element not in resource:
            raise InvalidInput(f"{element} is required", field=f"Appointment.{element}")
        body[f"{element}_at"] = aware_datetime(resource[element], f"Appointment.{element}")
    reasons = [r.get("text") for r in resource.get("reasonCode", []) if r.get("text")]
    _put(body, "reason", reasons[0] if reasons else resource.get("description"))
    _put(body, "video_link", (extension(resource, EXT_VIDEO_LINK) or {}).get("valueUrl"))
    return body


@_reader("Communication")
def communication_from_fhir(resource: Any) -> Body:
    """A Communication as a message body (``{body, attachments}``): the text payloads joined by blank lines, each
    attachment with its data inline (base64)."""
    validate(resource, "Communication")
    texts: list[str] = []
    attachments: list[Body] = []
    for index, payload in enumerate(resource.get("payload", [])):
        path = f"Communication.payload[{index}]"
        if "contentString" in payload:
            texts.append(payload["contentString"])
        elif "contentAttachment" in payload:
            attachment = payload["contentAttachment"]
            for element, message in (("data", "its data (base64)"), ("title", "a title"), ("contentType", "a type")):
                if not attachment.get(element):
                    raise InvalidInput(f"an attachment needs {message}", field=f"{path}.contentAttachment.{element}")
            attachments.append(
                {"name": attachment["title"], "content_type": attachment["contentType"], "data": attachment["data"]}
            )
        else:
            raise InvalidInput("only text and attachment payloads are taken", field=path)
    if not texts:
        raise InvalidInput("a message needs a text payload", field="Communication.payload")
    body: Body = {"body": "\n\n".join(texts)}
    _put(body, "attachments", attachments)
    return body
