"""FHIR readers given hostile input answer InvalidInput (a 422 when exposed), never another exception."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.errors import InvalidInput
from core.fhir import parsing

P = str(uuid.uuid4())
PLAN = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": f"Patient/{P}"}}
GOAL = {
    "resourceType": "Goal",
    "lifecycleStatus": "active",
    "description": {"text": "x"},
    "subject": {"reference": f"Patient/{P}"},
}
PATIENT = {
    "resourceType": "Patient",
    "identifier": [
        {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": "1"}
    ],
    "name": [{"family": "L", "given": ["A"]}],
    "birthDate": "2000-01-01",
}


def _deep(levels: int) -> dict[str, Any]:
    ext: dict[str, Any] = {"url": "http://example.org/x", "valueString": "v"}
    for _ in range(levels):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    return {"resourceType": "Patient", "extension": [ext]}


CASES = [
    (
        "contained Organization as member",
        parsing.careteam_from_fhir,
        {
            "resourceType": "CareTeam",
            "contained": [{"resourceType": "Organization", "id": "o1", "name": "Riverside Clinic"}],
            "participant": [{"member": {"reference": "#o1"}}],
        },
    ),
    ("appointment participant a string", parsing.patient_of, {"resourceType": "Appointment", "participant": "x"}),
    (
        "appointment actor a string",
        parsing.patient_of,
        {"resourceType": "Appointment", "participant": [{"actor": "Patient/1"}]},
    ),
    ("appointment participant null", parsing.patient_of, {"resourceType": "Appointment", "participant": None}),
    ("extensions nested 200 deep (a few KB)", parsing.patient_from_fhir, _deep(200)),
    (
        "contained resource of an unknown type",
        parsing.careplan_from_fhir,
        {**PLAN, "contained": [{"resourceType": "Nonsense", "id": "x"}]},
    ),
    (
        "contained resourceType a number",
        parsing.careteam_from_fhir,
        {"resourceType": "CareTeam", "contained": [{"resourceType": 7}]},
    ),
    ("JSON null identifier list", parsing.patient_from_fhir, {**PATIENT, "identifier": None}),
    ("JSON null given name", parsing.patient_from_fhir, {**PATIENT, "name": [{"family": "L", "given": [None]}]}),
    ("JSON null Goal.description", parsing.goal_from_fhir, {**GOAL, "description": None}),
    (
        "JSON null Communication.payload",
        parsing.communication_from_fhir,
        {"resourceType": "Communication", "status": "completed", "payload": None},
    ),
]


@pytest.mark.parametrize(("name", "reader", "resource"), CASES, ids=[c[0] for c in CASES])
def test_hostile_fhir_is_invalid_input(name: str, reader: Any, resource: Any) -> None:
    with pytest.raises(InvalidInput):
        reader(resource)


def test_contained_goal_without_id_is_not_found_by_reference_none() -> None:
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{P}"},
        "goal": [{"reference": "#None"}],
        "contained": [
            {
                "resourceType": "Goal",
                "lifecycleStatus": "active",
                "description": {"text": "x"},
                "subject": {"reference": f"Patient/{P}"},
            }
        ],
    }
    with pytest.raises(InvalidInput):
        parsing.careplan_from_fhir(plan)
