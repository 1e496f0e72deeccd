"""The known leak classes of FHIR servers, each answering as if the other tenant's data did not exist.

The same person has records in Hospital A and Clinic B (linked network-wide by a shared identifier): A holds a
care plan and consents of that person. Clinic B, asking through FHIR, gets exactly the answer (status, totals,
entries, bytes) it gets for a random id: search by ``_id``, totals and counts, ``_include`` / ``_revinclude``,
conditional create, and a Consent posted for A's patient.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from core.fhir.consent import ACT_REASON, DATA_CATEGORY, PARTICIPATION_TYPE
from core.settings import Settings
from tests.consent_world import Net, build_net, person_in
from tests.fhir_validate import valid

FHIR_JSON = "application/fhir+json"


@pytest.fixture
async def net(settings: Settings) -> Net:
    return await build_net(settings)


def fhir_consent(patient: str, grantee: uuid.UUID, identifier: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "provision": {
            "type": "permit",
            "period": {"start": "2026-01-01T00:00:00Z"},
            "actor": [
                {
                    "role": {"coding": [{"system": PARTICIPATION_TYPE, "code": "IRCP"}]},
                    "reference": {"reference": f"Organization/{grantee}"},
                }
            ],
            "purpose": [{"system": ACT_REASON, "code": "TREAT"}],
            "class": [{"system": DATA_CATEGORY, "code": "care_plan"}],
        },
    }
    if identifier:
        resource["identifier"] = [{"system": "urn:example:forms", "value": identifier}]
    return resource


async def _get(client: AsyncTestClient[Any], path: str, headers: dict[str, str]) -> tuple[int, str]:
    response = await client.get(path, headers=headers)
    assert response.headers["content-type"].startswith(FHIR_JSON)
    valid(response.json())
    return response.status_code, response.text


def _same(foreign: tuple[int, str], foreign_id: str, control: tuple[int, str], control_id: str) -> None:
    """Byte for byte the same answer, once the id asked about is blanked out (it is echoed in the links)."""
    assert foreign[0] == control[0]
    assert foreign[1].replace(foreign_id, "<id>") == control[1].replace(control_id, "<id>")


async def _world(client: AsyncTestClient[Any], net: Net) -> dict[str, Any]:
    """A and B records of one person; A's care plan and two consents of that person (one with identifier X)."""
    ids = await person_in(client, net, "ab")
    doc_a = await net.headers(client, "doc.a")
    plan = await client.post(
        "/api/v1/care-plans", json={"patient_id": ids["a"], "title": "A's plan", "status": "active"}, headers=doc_a
    )
    assert plan.status_code == 201, plan.text
    x = f"X-{uuid.uuid4().hex[:8]}"
    consents = []
    for identifier in (x, None):
        created = await client.post(
            "/fhir/Consent", json=fhir_consent(ids["a"], net.tenants["b"], identifier), headers=doc_a
        )
        assert created.status_code == 201, created.text
        consents.append(created.json()["id"])
    return {"a": ids["a"], "b": ids["b"], "plan": plan.json()["id"], "consents": consents, "x": x}


async def test_search_by_id_and_includes_never_reach_into_another_tenant(
    client: AsyncTestClient[Any], net: Net
) -> None:
    w = await _world(client, net)
    doc_b = await net.headers(client, "doc.b")
    foreign = {"Patient": w["a"], "CarePlan": w["plan"], "Consent": w["consents"][0]}
    for resource_type, resource_id in foreign.items():
        control = str(uuid.uuid4())
        for query in ("_id={}", "_id={}&_count=0", f"_id={{}}&patient={w['b']}"):
            answer = await _get(client, f"/fhir/{resource_type}?{query.format(resource_id)}", doc_b)
            absent = await _get(client, f"/fhir/{resource_type}?{query.format(control)}", doc_b)
            _same(answer, resource_id, absent, control)
            assert answer[0] == 200
            bundle = valid(json.loads(answer[1]))
            assert bundle["total"] == 0 and "entry" not in bundle
        if resource_type != "Patient":
            include = f"&_include={resource_type}:{'subject' if resource_type == 'CarePlan' else 'patient'}"
            answer = await _get(client, f"/fhir/{resource_type}?_id={resource_id}{include}", doc_b)
            absent = await _get(client, f"/fhir/{resource_type}?_id={control}{include}", doc_b)
            _same(answer, resource_id, absent, control)
        read = await _get(client, f"/fhir/{resource_type}/{resource_id}", doc_b)
        missing = await _get(client, f"/fhir/{resource_type}/{control}", doc_b)
        _same(read, resource_id, missing, control)
        assert read[0] == 404

    # B's own patient, with what is about them: nothing of A's record of the same person comes along.
    revinclude = "&_revinclude=Consent:patient&_revinclude=CarePlan:subject&_revinclude=Task:patient"
    status, text = await _get(client, f"/fhir/Patient?_id={w['b']}{revinclude}", doc_b)
    bundle = json.loads(text)
    assert status == 200 and bundle["total"] == 1
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]] == [(w["b"], "match")]
    assert all(value not in text for value in (w["a"], w["plan"], *w["consents"], w["x"]))
    lonely = (await person_in(client, net, "b"))["b"]
    alone = await _get(client, f"/fhir/Patient?patient={lonely}{revinclude}", doc_b)
    linked = await _get(client, f"/fhir/Patient?patient={w['b']}{revinclude}", doc_b)
    assert json.loads(alone[1])["entry"][0]["search"] == {"mode": "match"}
    assert len(json.loads(linked[1])["entry"]) == len(json.loads(alone[1])["entry"]) == 1

    # B's own records include B's patient, never A's.
    doc_b_plan = await client.post(
        "/api/v1/care-plans", json={"patient_id": w["b"], "title": "B's plan", "status": "active"}, headers=doc_b
    )
    assert doc_b_plan.status_code == 201, doc_b_plan.text
    b_consent = await client.post(
        "/fhir/Consent", json=fhir_consent(w["b"], net.tenants["c"]), headers={**doc_b, "Content-Type": FHIR_JSON}
    )
    assert b_consent.status_code == 201, b_consent.text
    for path in (
        f"/fhir/CarePlan?patient={w['b']}&_include=CarePlan:subject",
        f"/fhir/Consent?patient={w['b']}&_include=Consent:patient",
        f"/fhir/Patient?_id={w['b']}{revinclude}",
    ):
        status, text = await _get(client, path, doc_b)
        bundle = json.loads(text)
        assert status == 200 and bundle["total"] == 1, path
        assert all(value not in text for value in (w["a"], w["plan"], *w["consents"], w["x"])), path
        included = [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
        if "Patient?" in path:
            assert set(included) == {doc_b_plan.json()["id"], b_consent.json()["id"]}
        else:
            assert included == [w["b"]]


async def test_totals_and_counts_count_only_this_tenants_consents(client: AsyncTestClient[Any], net: Net) -> None:
    w = await _world(client, net)
    doc_a, doc_b = await net.headers(client, "doc.a"), await net.headers(client, "doc.b")
    lonely = (await person_in(client, net, "b"))["b"]
    # A sees its two consents of the person.
    mine = valid((await client.get(f"/fhir/Consent?patient={w['a']}&_count=0", headers=doc_a)).json())
    assert mine["total"] == 2 and "entry" not in mine
    for query in ("patient={}", "patient={}&_count=0", "patient=Patient/{}&_count=1", "patient={}&_offset=1"):
        linked = await _get(client, f"/fhir/Consent?{query.format(w['b'])}", doc_b)
        alone = await _get(client, f"/fhir/Consent?{query.format(lonely)}", doc_b)
        _same(linked, w["b"], alone, lonely)
        assert json.loads(linked[1])["total"] == 0
    # Once B records one of its own, B counts one.
    created = await client.post(
        "/fhir/Consent", json=fhir_consent(w["b"], net.tenants["c"]), headers={**doc_b, "Content-Type": FHIR_JSON}
    )
    assert created.status_code == 201, created.text
    for query in ("patient={}", "patient={}&_count=0"):
        bundle = valid((await client.get(f"/fhir/Consent?{query.format(w['b'])}", headers=doc_b)).json())
        assert bundle["total"] == 1
        assert [e["resource"]["id"] for e in bundle.get("entry", [])] in ([], [created.json()["id"]])


async def test_conditional_create_and_patient_references_ignore_other_tenants(
    client: AsyncTestClient[Any], net: Net
) -> None:
    w = await _world(client, net)
    doc_b = await net.headers(client, "doc.b")
    fhir = {**doc_b, "Content-Type": FHIR_JSON}

    async def post(patient: str, identifier: str) -> tuple[int, dict[str, Any]]:
        response = await client.post(
            "/fhir/Consent",
            json=fhir_consent(patient, net.tenants["c"], identifier),
            headers={**fhir, "If-None-Exist": f"identifier=urn:example:forms|{identifier}"},
        )
        assert response.headers["content-type"].startswith(FHIR_JSON)
        return response.status_code, valid(response.json())

    # A's identifier X exists only in A: B's conditional create creates, as for an identifier that exists nowhere.
    nowhere = f"Y-{uuid.uuid4().hex[:8]}"
    status, created = await post(w["b"], w["x"])
    control_status, control = await post(w["b"], nowhere)
    assert status == control_status == 201
    assert created["id"] not in w["consents"] and created["identifier"][0]["value"] == w["x"]

    def shape(resource: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in resource.items() if k not in ("id", "meta", "dateTime", "identifier")}

    assert shape(created) == shape(control)
    # And now it is B's own: the condition finds B's, never A's.
    again_status, again = await post(w["b"], w["x"])
    assert (again_status, again) == (200, created)

    # A Consent posted for A's patient is refused exactly as for a random id.
    control_id = str(uuid.uuid4())
    foreign = await client.post("/fhir/Consent", json=fhir_consent(w["a"], net.tenants["c"]), headers=fhir)
    absent = await client.post("/fhir/Consent", json=fhir_consent(control_id, net.tenants["c"]), headers=fhir)
    _same((foreign.status_code, foreign.text), w["a"], (absent.status_code, absent.text), control_id)
    assert foreign.status_code == 422
    assert foreign.json()["issue"][0]["expression"] == ["Consent.patient.reference"]
    # Nothing was recorded in A's name or for A's record.
    doc_a = await net.headers(client, "doc.a")
    assert valid((await client.get(f"/fhir/Consent?patient={w['a']}&_count=0", headers=doc_a)).json())["total"] == 2
