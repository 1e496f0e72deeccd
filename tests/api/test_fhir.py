"""FHIR R4: every record type as a valid resource (checked with the R4 definitions), read back into our create
bodies; the read-only /fhir endpoint with the staff API's permissions, tenant isolation and audit."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from core.appointments.models import Appointment
from core.careplans.models import CarePlan, CarePlanActivity, CarePlanGoal
from core.careteams.models import CareTeam, CareTeamMember
from core.errors import InvalidInput
from core.fhir import parsing
from core.fhir.common import EXT_SHA256, mrn_system
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
from core.patients.models import Patient, PatientIdentifier
from core.settings import Settings
from core.tasks.models import Task, TaskComment
from tests.conftest import World, login, portal_login
from tests.factories import patient_body
from tests.fhir_validate import valid

FHIR_JSON = "application/fhir+json"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TENANT = uuid.uuid4()
DOC, NURSE = uuid.uuid4(), uuid.uuid4()
NAMES = {DOC: "Dr Grace Hopper", NURSE: "Nurse Mary Seacole"}


def _stamp(record: Any) -> Any:
    record.created_at = record.updated_at = NOW
    return record


# --- mapping, both ways, without a database ------------------------------------------------------------------------


def test_patient_to_fhir_and_back() -> None:
    body = patient_body("MRN-77", email="ada@example.org")
    patient = _stamp(
        Patient(
            id=uuid.uuid4(),
            mrn=body["mrn"],
            given_name=body["given_name"],
            family_name=body["family_name"],
            birth_date=date.fromisoformat(body["birth_date"]),
            sex=body["sex"],
            phone=body["phone"],
            email=body["email"],
            address={"line": ["1 Elm St"], "city": "Riverside", "country": "US"},
            language="en",
            active=True,
            identifiers=[PatientIdentifier(system=i["system"], value=i["value"]) for i in body["identifiers"]],
        )
    )
    resource = valid(patient_to_fhir(patient, TENANT))
    assert resource["identifier"][0]["system"] == f"urn:carehub:tenant:{TENANT}:mrn"
    assert resource["identifier"][0]["type"]["coding"][0]["code"] == "MR"
    assert resource["name"] == [{"use": "official", "family": "Lovelace", "given": ["Ada"]}]
    assert resource["gender"] == "female" and resource["birthDate"] == "1961-12-10"
    assert resource["communication"][0]["language"]["coding"][0] == {"system": "urn:ietf:bcp:47", "code": "en"}
    assert parsing.patient_from_fhir(resource) == body

    bare = _stamp(
        Patient(id=uuid.uuid4(), mrn="M2", given_name="A", family_name="B", birth_date=date(2000, 1, 1), sex="unknown")
    )
    bare.active = False
    minimal = valid(patient_to_fhir(bare, TENANT))
    assert minimal["active"] is False and "telecom" not in minimal and "address" not in minimal
    assert parsing.patient_from_fhir(minimal) == {
        "mrn": "M2",
        "given_name": "A",
        "family_name": "B",
        "birth_date": "2000-01-01",
        "sex": "unknown",
    }


def test_care_team_to_fhir_and_back() -> None:
    patient_id = uuid.uuid4()
    members = [
        CareTeamMember(id=uuid.uuid4(), user_id=NURSE, role="nurse", is_lead=False),
        CareTeamMember(
            id=uuid.uuid4(),
            name="Sam Carer",
            phone="+1 555 0199",
            email="sam@example.org",
            role="caregiver",
            is_lead=False,
        ),
        CareTeamMember(
            id=uuid.uuid4(), name="Dr Out", organisation="Riverside Clinic", role="specialist", is_lead=False
        ),
        CareTeamMember(id=uuid.uuid4(), user_id=DOC, role="primary_care", is_lead=True),
    ]
    team = _stamp(CareTeam(id=uuid.uuid4(), patient_id=patient_id, name="Ada's team", status="active", members=members))
    resource = valid(careteam_to_fhir(team, NAMES))
    lead = resource["participant"][0]
    assert lead["member"] == {"reference": f"Practitioner/{DOC}", "display": "Dr Grace Hopper"}
    assert [c["coding"][0]["code"] for c in lead["role"]] == ["primary_care", "lead"]
    carer = next(p for p in resource["participant"] if p["member"].get("display") == "Sam Carer")
    contained = {c["id"]: c for c in resource["contained"]}
    person = contained[carer["member"]["reference"][1:]]
    assert person["resourceType"] == "RelatedPerson" and person["patient"]["reference"] == f"Patient/{patient_id}"
    outside = next(p for p in resource["participant"] if p["member"].get("display") == "Dr Out")
    assert outside["onBehalfOf"] == {"display": "Riverside Clinic"}
    assert contained[outside["member"]["reference"][1:]]["resourceType"] == "Practitioner"
    assert parsing.patient_of(resource) == patient_id
    assert parsing.careteam_from_fhir(resource) == {
        "name": "Ada's team",
        "members": [
            {"role": "primary_care", "user_id": str(DOC), "is_lead": True},
            {"role": "nurse", "user_id": str(NURSE)},
            {"role": "caregiver", "name": "Sam Carer", "phone": "+1 555 0199", "email": "sam@example.org"},
            {"role": "specialist", "name": "Dr Out", "organisation": "Riverside Clinic"},
        ],
    }


def test_care_plan_and_goals_to_fhir_and_back() -> None:
    patient_id, task_id = uuid.uuid4(), uuid.uuid4()
    goals = [
        _stamp(
            CarePlanGoal(
                id=uuid.uuid4(),
                description="HbA1c below 7%",
                measure="HbA1c",
                target_value="< 7 %",
                due_date=date(2026, 9, 1),
                lifecycle_status="active",
                achievement_status="improving",
            )
        ),
        _stamp(
            CarePlanGoal(
                id=uuid.uuid4(),
                description="Walk daily",
                target_value="30 minutes",
                lifecycle_status="proposed",
                achievement_status="in-progress",
            )
        ),
    ]
    activities = [
        CarePlanActivity(id=uuid.uuid4(), kind="education", description="Diet class", status="scheduled"),
        CarePlanActivity(
            id=uuid.uuid4(), kind="task", description="Call in a week", status="not-started", task_id=task_id
        ),
    ]
    plan = _stamp(
        CarePlan(
            id=uuid.uuid4(),
            patient_id=patient_id,
            title="Diabetes plan",
            description="Get HbA1c down",
            status="active",
            period_start=date(2026, 3, 1),
            period_end=date(2026, 12, 31),
            staff_note="family is difficult",
            version=3,
            author_id=DOC,
            goals=goals,
            activities=activities,
        )
    )
    resource = valid(careplan_to_fhir(plan, NAMES))
    assert resource["intent"] == "plan" and resource["meta"]["versionId"] == "3"
    assert resource["period"] == {"start": "2026-03-01", "end": "2026-12-31"}
    assert resource["author"]["reference"] == f"Practitioner/{DOC}"
    assert [g["reference"] for g in resource["goal"]] == [f"Goal/{g.id}" for g in goals]
    assert resource["activity"][0]["detail"]["status"] == "scheduled"
    assert resource["activity"][1]["reference"]["reference"] == f"Task/{task_id}"
    assert "family is difficult" not in str(resource)

    goal_resources = [valid(goal_to_fhir(g, patient_id)) for g in goals]
    first = goal_resources[0]
    assert first["lifecycleStatus"] == "active" and first["achievementStatus"]["coding"][0]["code"] == "improving"
    assert first["target"] == [{"measure": {"text": "HbA1c"}, "detailString": "< 7 %", "dueDate": "2026-09-01"}]
    # A target value with no measure: the measure is there (FHIR requires it) but says it is unknown.
    assert goal_resources[1]["target"][0]["measure"]["extension"][0]["valueCode"] == "unknown"

    body = parsing.careplan_from_fhir(resource, goal_resources)
    assert body == {
        "patient_id": str(patient_id),
        "status": "active",
        "title": "Diabetes plan",
        "description": "Get HbA1c down",
        "period_start": "2026-03-01",
        "period_end": "2026-12-31",
        "goals": [
            {
                "description": "HbA1c below 7%",
                "lifecycle_status": "active",
                "achievement_status": "improving",
                "measure": "HbA1c",
                "target_value": "< 7 %",
                "due_date": "2026-09-01",
            },
            {
                "description": "Walk daily",
                "lifecycle_status": "proposed",
                "achievement_status": "in-progress",
                "target_value": "30 minutes",
            },
        ],
        "activities": [
            {"kind": "education", "description": "Diet class", "status": "scheduled"},
            {"kind": "task", "description": "Call in a week", "status": "not-started", "task_id": str(task_id)},
        ],
    }
    with pytest.raises(InvalidInput) as missing:
        parsing.careplan_from_fhir(resource)
    assert missing.value.field == "CarePlan.goal[0]"


def test_task_and_appointment_to_fhir_and_back() -> None:
    patient_id, plan_id = uuid.uuid4(), uuid.uuid4()
    task = _stamp(
        Task(
            id=uuid.uuid4(),
            patient_id=patient_id,
            care_plan_id=plan_id,
            title="Post-discharge follow-up call",
            description="Ask about medication",
            template_code="post-discharge-call",
            owner_id=DOC,
            assignee_id=NURSE,
            for_patient=False,
            due_at=NOW + timedelta(days=2),
            priority="urgent",
            status="in_progress",
            escalation_level=1,
            created_by=DOC,
        )
    )
    comment = TaskComment(id=uuid.uuid4(), task_id=task.id, author_id=NURSE, body="Left a message", created_at=NOW)
    resource = valid(task_to_fhir(task, NAMES, [comment]))
    assert (resource["status"], resource["intent"], resource["priority"]) == ("in-progress", "order", "urgent")
    assert resource["for"] == {"reference": f"Patient/{patient_id}"}
    assert resource["owner"]["display"] == "Dr Grace Hopper"
    assert resource["restriction"]["period"]["end"] == "2026-03-04T09:30:00Z"
    assert resource["basedOn"] == [{"reference": f"CarePlan/{plan_id}"}]
    assert resource["note"][0]["text"] == "Left a message"
    assert parsing.task_from_fhir(resource) == {
        "patient_id": str(patient_id),
        "title": "Post-discharge follow-up call",
        "template_code": "post-discharge-call",
        "description": "Ask about medication",
        "care_plan_id": str(plan_id),
        "owner_id": str(DOC),
        "assignee_id": str(NURSE),
        "due_at": "2026-03-04T09:30:00Z",
        "priority": "urgent",
    }
    statuses = {}
    for ours in ("requested", "accepted", "in_progress", "completed", "cancelled", "failed"):
        task.status = ours
        statuses[ours] = valid(task_to_fhir(task, NAMES))["status"]
    assert statuses == {
        "requested": "requested",
        "accepted": "accepted",
        "in_progress": "in-progress",
        "completed": "completed",
        "cancelled": "cancelled",
        "failed": "failed",
    }

    appointment = _stamp(
        Appointment(
            id=uuid.uuid4(),
            patient_id=patient_id,
            participant_id=DOC,
            kind="video",
            start_at=NOW,
            end_at=NOW + timedelta(minutes=30),
            location="Room 4",
            video_link="https://meet.example.org/abc",
            reason="Review glucose log",
            status="booked",
            reminder={"channels": ["sms"], "offsets_hours": [24]},
            staff_note="bring interpreter",
        )
    )
    resource = valid(appointment_to_fhir(appointment, NAMES))
    assert resource["status"] == "booked" and resource["start"] == "2026-03-02T09:30:00Z"
    assert {p["actor"].get("reference") for p in resource["participant"]} == {
        f"Patient/{patient_id}",
        f"Practitioner/{DOC}",
        None,
    }
    assert all(p["status"] == "accepted" for p in resource["participant"])
    assert "bring interpreter" not in str(resource)
    assert parsing.appointment_from_fhir(resource) == {
        "kind": "video",
        "status": "booked",
        "patient_id": str(patient_id),
        "participant_id": str(DOC),
        "location": "Room 4",
        "start_at": "2026-03-02T09:30:00Z",
        "end_at": "2026-03-02T10:00:00Z",
        "reason": "Review glucose log",
        "video_link": "https://meet.example.org/abc",
    }
    for status in ("arrived", "fulfilled", "noshow", "proposed"):
        appointment.status = status
        assert valid(appointment_to_fhir(appointment, NAMES))["status"] == status
    appointment.status, appointment.status_reason = "cancelled", "Patient in hospital"
    assert valid(appointment_to_fhir(appointment, NAMES))["cancelationReason"] == {"text": "Patient in hospital"}


def test_communication_to_fhir_and_back() -> None:
    patient_id = uuid.uuid4()
    thread = Thread(id=uuid.uuid4(), patient_id=patient_id, subject="Insulin dose", created_at=NOW, last_message_at=NOW)
    doc = ThreadParticipant(id=uuid.uuid4(), thread_id=thread.id, user_id=DOC, is_patient=False, added_at=NOW)
    pat = ThreadParticipant(id=uuid.uuid4(), thread_id=thread.id, user_id=None, is_patient=True, added_at=NOW)
    original = uuid.uuid4()
    edited = Message(
        id=uuid.uuid4(),
        thread_id=thread.id,
        original_id=original,
        version=2,
        author_participant_id=doc.id,
        body="Take 10 units",
        deleted=False,
        sent_at=NOW + timedelta(minutes=5),
    )
    attachment = MessageAttachment(
        id=uuid.uuid4(),
        message_id=original,
        name="plan.pdf",
        content_type="application/pdf",
        size=1234,
        sha256="ab" * 32,
    )
    view = MessageView(
        thread=thread, current=edited, first_sent_at=NOW, participants=[doc, pat], attachments=[attachment]
    )
    resource = valid(communication_to_fhir(view, NAMES, "https://hub.example/api/v1/threads"))
    assert resource["id"] == str(original) and resource["meta"]["versionId"] == "2"
    assert resource["status"] == "completed" and resource["topic"] == {"text": "Insulin dose"}
    assert resource["sent"] == "2026-03-02T09:30:00Z"
    assert resource["sender"]["reference"] == f"Practitioner/{DOC}"
    assert resource["recipient"] == [{"reference": f"Patient/{patient_id}"}]
    file = resource["payload"][1]["contentAttachment"]
    assert file["url"] == f"https://hub.example/api/v1/threads/{thread.id}/attachments/{attachment.id}"
    assert (file["contentType"], file["size"], file["title"]) == ("application/pdf", 1234, "plan.pdf")
    assert file["extension"] == [{"url": EXT_SHA256, "valueString": "ab" * 32}]
    with pytest.raises(InvalidInput) as no_data:
        parsing.communication_from_fhir(resource)
    assert no_data.value.field == "Communication.payload[1].contentAttachment.data"
    file["data"] = base64.b64encode(b"%PDF").decode()
    assert parsing.communication_from_fhir(resource) == {
        "body": "Take 10 units",
        "attachments": [{"name": "plan.pdf", "content_type": "application/pdf", "data": "JVBERg=="}],
    }

    tombstone = Message(
        id=uuid.uuid4(),
        thread_id=thread.id,
        original_id=uuid.uuid4(),
        version=2,
        author_participant_id=pat.id,
        body=None,
        deleted=True,
        sent_at=NOW,
    )
    gone = valid(
        communication_to_fhir(MessageView(thread, tombstone, NOW, [doc, pat]), NAMES, "https://h/api/v1/threads")
    )
    assert gone["status"] == "entered-in-error" and "payload" not in gone
    assert gone["sender"] == {"reference": f"Patient/{patient_id}"}


@pytest.mark.parametrize(
    ("resource_type", "resource", "field"),
    [
        ("Patient", {"resourceType": "Task"}, "Patient.resourceType"),
        ("Patient", {"resourceType": "Patient", "birthDate": "10/12/1961"}, "Patient.birthDate"),
        ("Patient", {"resourceType": "Patient", "name": [{"given": "Ada"}]}, "Patient.name[0].given"),
        ("Patient", {"resourceType": "Patient", "name": [{"family": "L", "given": ["A"]}]}, "Patient.identifier"),
        (
            "Patient",
            {
                "resourceType": "Patient",
                "identifier": [{"type": {"coding": [{"system": mrn_system(TENANT), "code": "x"}]}, "value": "1"}],
            },
            "Patient.identifier[0].system",
        ),
        ("Task", {"resourceType": "Task", "status": "requested", "intent": "order"}, "Task.for"),
        ("Task", {"resourceType": "Task", "intent": "order"}, "Task.status"),
        (
            "Task",
            {"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": "Group/1"}},
            "Task.for.reference",
        ),
        (
            "Appointment",
            {"resourceType": "Appointment", "status": "fulfilled", "participant": [{"status": "accepted"}]},
            "Appointment.status",
        ),
        (
            "Appointment",
            {
                "resourceType": "Appointment",
                "status": "booked",
                "start": "2026-03-02T09:30:00",
                "participant": [{"status": "accepted"}],
            },
            "Appointment.start",
        ),
        ("Goal", {"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "x"}}, "Goal.subject"),
        (
            "CarePlan",
            {
                "resourceType": "CarePlan",
                "status": "completed",
                "intent": "plan",
                "subject": {"reference": "Patient/1"},
            },
            "CarePlan.status",
        ),
        ("Communication", {"resourceType": "Communication", "status": "completed"}, "Communication.payload"),
    ],
)
def test_reading_fhir_names_the_fhir_path_of_a_problem(resource_type: str, resource: Any, field: str) -> None:
    readers = {
        "Patient": parsing.patient_from_fhir,
        "Task": parsing.task_from_fhir,
        "Appointment": parsing.appointment_from_fhir,
        "Goal": parsing.goal_from_fhir,
        "CarePlan": parsing.careplan_from_fhir,
        "Communication": parsing.communication_from_fhir,
    }
    with pytest.raises(InvalidInput) as problem:
        readers[resource_type](resource)
    assert problem.value.field == field


# --- the /fhir endpoint ----------------------------------------------------------------------------------------------


@pytest.fixture
async def client(settings: Settings, tmp_path: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with its own directory for message attachments."""
    async with AsyncTestClient(app=create_app(settings.model_copy(update={"blob_dir": tmp_path / "blobs"}))) as app:
        yield app


def _at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _local(url: str) -> str:
    """An absolute URL the API gave, as the test client's path and query."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def _users(client: AsyncTestClient[Any], admin: dict[str, str]) -> dict[str, str]:
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    return {m["email"].split("@")[0]: m["user_id"] for m in members}


async def _fhir(client: AsyncTestClient[Any], path: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    return valid(response.json())


async def _outcome(client: AsyncTestClient[Any], path: str, headers: dict[str, str], status: int) -> dict[str, Any]:
    response = await client.get(path, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    outcome = valid(response.json())
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


async def _created(client: AsyncTestClient[Any], path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_metadata_is_public_and_errors_are_operation_outcomes(client: AsyncTestClient[Any], world: World) -> None:
    statement = await _fhir(client, "/fhir/metadata", {})
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    served = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(served) == {
        "Patient",
        "CareTeam",
        "CarePlan",
        "Goal",
        "Task",
        "Appointment",
        "Communication",
        "Consent",
    }
    assert all("patient" in {p["name"] for p in r["searchParam"]} for r in served.values())

    no_token = await _outcome(client, "/fhir/Patient?patient=x", {}, 401)
    assert no_token["issue"][0]["code"] == "login"
    doc = await login(client, "doc.a@test.example", world.slug_a)
    unknown = await _outcome(client, f"/fhir/Observation/{uuid.uuid4()}", doc, 404)
    assert unknown["issue"][0]["code"] == "not-found"
    await _outcome(client, "/fhir/Observation?patient=x", doc, 404)
    missing = await _outcome(client, f"/fhir/Patient/{uuid.uuid4()}", doc, 404)
    assert await _outcome(client, "/fhir/Patient/not-an-id", doc, 404) == missing
    assert missing["issue"][0]["diagnostics"] == "Patient not found"
    no_patient = await _outcome(client, "/fhir/Task", doc, 400)
    assert no_patient["issue"][0]["expression"] == ["patient"]
    bad_count = await _outcome(client, "/fhir/Task?patient=x&_count=many", doc, 400)
    assert bad_count["issue"][0]["code"] == "invalid"
    nothing = await _fhir(client, "/fhir/Task?patient=not-a-patient", doc)
    assert nothing["total"] == 0 and "entry" not in nothing
    network_admin = await login(client, "net@test.example", None)
    await _outcome(client, f"/fhir/Patient?patient={uuid.uuid4()}", network_admin, 403)


async def test_every_record_type_as_fhir(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    users = await _users(client, admin)
    sent_patient = patient_body("FH-1", email="ada@example.org")
    patient = await _created(client, "/api/v1/patients", sent_patient, admin)
    pid = patient["id"]

    sent_team = {
        "name": "Ada's team",
        "members": [
            {"user_id": users["doc.a"], "role": "primary_care", "is_lead": True},
            {"name": "Sam Carer", "role": "caregiver", "phone": "+1 555 0199"},
        ],
    }
    team = await _created(client, f"/api/v1/patients/{pid}/care-team", sent_team, admin)
    sent_appointment = {
        "patient_id": pid,
        "participant_id": users["doc.a"],
        "kind": "in_person",
        "start_at": _at(48),
        "end_at": _at(48.5),
        "location": "Clinic room 2",
        "reason": "Diabetes review",
        "staff_note": "SECRET-APPOINTMENT-NOTE",
    }
    appointment = await _created(client, "/api/v1/appointments", sent_appointment, admin)
    sent_task = {
        "patient_id": pid,
        "title": "Call about glucose log",
        "description": "Ask for the last week's readings",
        "assignee_id": users["chw.a"],
        "due_at": _at(24),
        "priority": "urgent",
    }
    task = await _created(client, "/api/v1/tasks", sent_task, admin)
    await _created(client, f"/api/v1/tasks/{task['id']}/comments", {"body": "Left a voicemail"}, doc)
    sent_plan = {
        "patient_id": pid,
        "title": "Diabetes care plan",
        "description": "Bring HbA1c under 7%",
        "status": "active",
        "period_start": "2026-03-01",
        "period_end": "2026-12-31",
        "staff_note": "SECRET-PLAN-NOTE",
        "goals": [
            {"description": "HbA1c below 7%", "measure": "HbA1c", "target_value": "< 7 %", "due_date": "2026-09-01"},
            {"description": "Walk 30 minutes a day", "achievement_status": "improving"},
        ],
        "activities": [
            {"kind": "task", "description": "Glucose log call", "task_id": task["id"]},
            {"kind": "appointment", "description": "Review visit", "appointment_id": appointment["id"]},
            {"kind": "education", "description": "Diet class", "status": "scheduled"},
        ],
    }
    plan = await _created(client, "/api/v1/care-plans", sent_plan, doc)
    sent_followup = {"patient_id": pid, "template_code": "post-discharge-call", "care_plan_id": plan["id"]}
    followup = await _created(client, "/api/v1/tasks", sent_followup, doc)

    # Patient
    resource = await _fhir(client, f"/fhir/Patient/{pid}", doc)
    assert resource["identifier"][0] == {
        "use": "usual",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                    "code": "MR",
                    "display": "Medical record number",
                }
            ]
        },
        "system": f"urn:carehub:tenant:{world.tenant_a}:mrn",
        "value": "FH-1",
    }
    assert parsing.patient_from_fhir(resource) == sent_patient

    # CareTeam: the lead first, the outside caregiver contained
    resource = await _fhir(client, f"/fhir/CareTeam/{team['id']}", doc)
    assert resource["subject"] == {"reference": f"Patient/{pid}"}
    assert resource["participant"][0]["member"] == {"reference": f"Practitioner/{users['doc.a']}", "display": "doc_a"}
    assert parsing.careteam_from_fhir(resource) == sent_team

    # CarePlan and its Goals
    resource = await _fhir(client, f"/fhir/CarePlan/{plan['id']}", doc)
    assert (resource["status"], resource["intent"], resource["author"]["display"]) == ("active", "plan", "doc_a")
    goal_ids = [g["id"] for g in plan["goals"]]
    assert [g["reference"] for g in resource["goal"]] == [f"Goal/{g}" for g in goal_ids]
    goals = [await _fhir(client, f"/fhir/Goal/{g}", doc) for g in goal_ids]
    assert goals[0]["target"][0]["detailString"] == "< 7 %" and goals[0]["subject"]["reference"] == f"Patient/{pid}"
    expected_plan = {k: v for k, v in sent_plan.items() if k != "staff_note"}
    expected_plan["goals"] = [
        {"lifecycle_status": "active", "achievement_status": "in-progress", **sent_plan["goals"][0]},
        {"lifecycle_status": "active", **sent_plan["goals"][1]},
    ]
    expected_plan["activities"] = [{"status": "not-started", **a} for a in sent_plan["activities"]]
    assert parsing.careplan_from_fhir(resource, goals) == expected_plan

    # Tasks
    resource = await _fhir(client, f"/fhir/Task/{task['id']}", doc)
    assert (resource["status"], resource["intent"], resource["priority"]) == ("requested", "order", "urgent")
    assert resource["owner"]["reference"] == f"Practitioner/{users['admin.a']}"
    assert resource["note"][0]["text"] == "Left a voicemail"
    assert parsing.task_from_fhir(resource) == {**sent_task, "owner_id": users["admin.a"]}
    resource = await _fhir(client, f"/fhir/Task/{followup['id']}", doc)
    assert resource["basedOn"] == [{"reference": f"CarePlan/{plan['id']}"}]
    assert resource["code"]["coding"][0]["code"] == "post-discharge-call"
    transitioned = await client.post(f"/api/v1/tasks/{task['id']}/transition", json={"status": "accepted"}, headers=doc)
    assert transitioned.status_code == 200, transitioned.text
    moved = await client.post(f"/api/v1/tasks/{task['id']}/transition", json={"status": "in_progress"}, headers=doc)
    assert moved.status_code == 200, moved.text
    assert (await _fhir(client, f"/fhir/Task/{task['id']}", doc))["status"] == "in-progress"

    # Appointment: never the staff note
    resource = await _fhir(client, f"/fhir/Appointment/{appointment['id']}", doc)
    assert resource["status"] == "booked"
    assert all(p["status"] == "accepted" for p in resource["participant"])
    expected = {k: v for k, v in sent_appointment.items() if k != "staff_note"}
    assert parsing.appointment_from_fhir(resource) == {**expected, "status": "booked"}
    cancelled = await client.post(
        f"/api/v1/appointments/{appointment['id']}/status",
        json={"status": "cancelled", "reason": "Patient admitted"},
        headers=doc,
    )
    assert cancelled.status_code in (200, 201), cancelled.text
    resource = await _fhir(client, f"/fhir/Appointment/{appointment['id']}", doc)
    assert (resource["status"], resource["cancelationReason"]) == ("cancelled", {"text": "Patient admitted"})

    # Searches: one patient's resources of each type, as searchset Bundles
    totals = {}
    for resource_type in ("Patient", "CareTeam", "CarePlan", "Goal", "Task", "Appointment"):
        bundle = await _fhir(client, f"/fhir/{resource_type}?patient=Patient/{pid}", doc)
        assert bundle["type"] == "searchset"
        assert all(
            e["fullUrl"].startswith("http") and e["resource"]["resourceType"] == resource_type for e in bundle["entry"]
        )
        totals[resource_type] = (bundle["total"], len(bundle["entry"]))
        assert "SECRET" not in str(bundle)
    assert totals == {
        "Patient": (1, 1),
        "CareTeam": (1, 1),
        "CarePlan": (1, 1),
        "Goal": (2, 2),
        "Task": (2, 2),
        "Appointment": (1, 1),
    }
    by_id = await _fhir(client, f"/fhir/Patient?_id={pid}", doc)
    assert [e["resource"]["id"] for e in by_id["entry"]] == [pid]

    # Paging: _count with a next link that leads to the rest
    first = await _fhir(client, f"/fhir/Task?patient={pid}&_count=1", doc)
    assert first["total"] == 2 and len(first["entry"]) == 1
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = await _fhir(client, _local(next_url), doc)
    assert len(second["entry"]) == 1 and "next" not in {link["relation"] for link in second["link"]}
    assert {first["entry"][0]["resource"]["id"], second["entry"][0]["resource"]["id"]} == {task["id"], followup["id"]}

    # Every resource returned was audited, with its patient
    events = await client.get("/api/v1/audit-events", params={"action": "fhir.read", "limit": 100}, headers=admin)
    reads = {(e["resource_type"], e["resource_id"]) for e in events.json()["items"]}
    assert {("Patient", pid), ("CareTeam", team["id"]), ("Goal", goal_ids[0]), ("Task", task["id"])} <= reads
    assert all(e["patient_id"] == pid and e["outcome"] == "success" for e in events.json()["items"])
    searched = await client.get("/api/v1/audit-events", params={"action": "fhir.search", "limit": 100}, headers=admin)
    assert ("Goal", goal_ids[1]) in {(e["resource_type"], e["resource_id"]) for e in searched.json()["items"]}


async def test_communications_are_for_thread_participants(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc = await login(client, "doc.a@test.example", world.slug_a)
    chw = await login(client, "chw.a@test.example", world.slug_a)
    users = await _users(client, admin)
    pid = (await _created(client, "/api/v1/patients", patient_body("FH-2"), admin))["id"]
    pdf = b"%PDF-1.4 discharge summary"
    thread = await _created(
        client,
        "/api/v1/threads",
        {
            "patient_id": pid,
            "subject": "Insulin dose",
            "body": "Please check the dose",
            "participant_user_ids": [users["admin.a"]],
            "include_patient": True,
            "attachments": [
                {"name": "summary.pdf", "content_type": "application/pdf", "data": base64.b64encode(pdf).decode()}
            ],
        },
        doc,
    )
    url = f"/api/v1/threads/{thread['id']}/messages"
    first = (await client.get(url, headers=doc)).json()["items"][0]
    second = await _created(client, url, {"body": "Wrong thread, sorry"}, admin)
    edited = await client.patch(f"{url}/{first['id']}", json={"body": "Please check the insulin dose"}, headers=doc)
    assert edited.status_code == 200, edited.text
    deleted = await client.delete(f"{url}/{second['id']}", headers=admin)
    assert deleted.status_code == 200, deleted.text

    bundle = await _fhir(client, f"/fhir/Communication?patient={pid}", doc)
    assert bundle["total"] == 2
    current, tombstone = (e["resource"] for e in bundle["entry"])
    assert current["id"] == first["original_id"] and current["meta"]["versionId"] == "2"
    assert (current["status"], current["topic"]) == ("completed", {"text": "Insulin dose"})
    assert current["sender"] == {"reference": f"Practitioner/{users['doc.a']}", "display": "doc_a"}
    assert {r["reference"] for r in current["recipient"]} == {f"Patient/{pid}", f"Practitioner/{users['admin.a']}"}
    assert current["payload"][0] == {"contentString": "Please check the insulin dose"}
    attachment = current["payload"][1]["contentAttachment"]
    assert (attachment["title"], attachment["size"], attachment["contentType"]) == (
        "summary.pdf",
        len(pdf),
        "application/pdf",
    )
    download = await client.get(_local(attachment["url"]), headers=doc)
    assert download.status_code == 200 and download.content == pdf
    assert parsing.communication_from_fhir({**current, "payload": current["payload"][:1]}) == {
        "body": "Please check the insulin dose"
    }
    assert tombstone["id"] == second["original_id"] and tombstone["status"] == "entered-in-error"
    assert "payload" not in tombstone and "Wrong thread" not in str(bundle)
    assert await _fhir(client, f"/fhir/Communication/{first['original_id']}", admin) == current

    # Someone who does not take part in the thread finds nothing, exactly as for a missing message.
    assert (await _fhir(client, f"/fhir/Communication?patient={pid}", chw))["total"] == 0
    hidden = await _outcome(client, f"/fhir/Communication/{first['original_id']}", chw, 404)
    assert hidden == await _outcome(client, f"/fhir/Communication/{uuid.uuid4()}", chw, 404)
    assert (await _fhir(client, f"/fhir/Patient?patient={pid}", chw))["total"] == 1

    # The FHIR endpoint is for staff: a portal patient is refused (and the refusal audited).
    portal = await portal_login(client, admin, pid, "ada@patients.example", world.slug_a)
    refused = await _outcome(client, f"/fhir/Patient/{pid}", portal, 403)
    assert refused["issue"][0]["code"] == "forbidden"
    await _outcome(client, f"/fhir/Communication?patient={pid}", portal, 403)
    events = (await client.get("/api/v1/audit-events", params={"action": "fhir.read"}, headers=admin)).json()["items"]
    assert any(e["outcome"] == "denied" and e["resource_type"] == "Patient" for e in events)


async def test_other_tenants_records_are_not_found(client: AsyncTestClient[Any], world: World) -> None:
    admin_b = await login(client, "admin.b@test.example", world.slug_b)
    b_patient = (await _created(client, "/api/v1/patients", patient_body("SAME-MRN"), admin_b))["id"]
    b_task = (await _created(client, "/api/v1/tasks", {"patient_id": b_patient, "title": "B's task"}, admin_b))["id"]
    b_team = (await _created(client, f"/api/v1/patients/{b_patient}/care-team", {"name": "B team"}, admin_b))["id"]
    b_plan = await _created(
        client,
        "/api/v1/care-plans",
        {"patient_id": b_patient, "title": "B plan", "goals": [{"description": "B goal"}]},
        admin_b,
    )

    admin = await login(client, "admin.a@test.example", world.slug_a)
    a_patient = (await _created(client, "/api/v1/patients", patient_body("SAME-MRN"), admin))["id"]
    await _created(client, "/api/v1/tasks", {"patient_id": a_patient, "title": "A's task"}, admin)
    foreign = {
        "Patient": b_patient,
        "Task": b_task,
        "CareTeam": b_team,
        "CarePlan": b_plan["id"],
        "Goal": b_plan["goals"][0]["id"],
    }
    for resource_type, resource_id in foreign.items():
        answer = await _outcome(client, f"/fhir/{resource_type}/{resource_id}", admin, 404)
        assert answer == await _outcome(client, f"/fhir/{resource_type}/{uuid.uuid4()}", admin, 404)
        searched = await _fhir(client, f"/fhir/{resource_type}?patient={b_patient}", admin)
        assert searched["total"] == 0 and "entry" not in searched
    tasks = await _fhir(client, f"/fhir/Task?patient={a_patient}", admin)
    assert [e["resource"]["code"]["text"] for e in tasks["entry"]] == ["A's task"] and tasks["total"] == 1
    misses = (await client.get("/api/v1/audit-events", params={"action": "fhir.read"}, headers=admin)).json()["items"]
    assert {e["resource_id"] for e in misses if e["outcome"] == "not_found"} >= set(foreign.values())
    # Tenant B's own view is whole.
    assert (await _fhir(client, f"/fhir/Task/{b_task}", admin_b))["for"] == {"reference": f"Patient/{b_patient}"}


async def test_patient_parameter_forms_and_empty_searches_are_audited(
    client: AsyncTestClient[Any], world: World
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body("FH-9"), headers=admin)).json()
    await client.post("/api/v1/tasks", headers=admin, json={"patient_id": patient["id"], "title": "Call"})
    pid = patient["id"]
    totals = {}
    for value in (pid, f"Patient/{pid}", f"https://hub.example/fhir/Patient/{pid}", f"Practitioner/{pid}"):
        bundle = (await client.get("/fhir/Task", params={"patient": value}, headers=admin)).json()
        valid(bundle)
        totals[value.split("/")[0] if "/" in value else "id"] = bundle["total"]
    # Only a patient reference finds the patient's tasks: another resource type's reference finds nothing.
    assert totals == {"id": 1, "Patient": 1, "https:": 1, "Practitioner": 0}
    bad_count = await client.get("/fhir/Task", params={"patient": pid, "_count": "-1"}, headers=admin)
    assert bad_count.status_code == 400 and bad_count.json()["issue"][0]["expression"] == ["_count"]
    unknown = str(uuid.uuid4())
    assert (await client.get("/fhir/Task", params={"patient": unknown}, headers=admin)).json()["total"] == 0
    events = (await client.get("/api/v1/audit-events?action=fhir.search&limit=100", headers=admin)).json()["items"]
    empty = [e for e in events if e["resource_id"] is None]
    assert [e["detail"] for e in empty] == [{"patient": unknown, "total": 0, "offset": 0}]
