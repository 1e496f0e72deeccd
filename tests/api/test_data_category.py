"""Sensitive labels: a care plan, result, task, appointment or thread can be put in a sensitive consent category.

The label decides which consent a record falls under when another tenant asks for it, so staff must be able to set
it when the record is made, read it back, and (where the record can be edited) set or clear it later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
from litestar.testing import AsyncTestClient

from core.careplans.schemas import SensitiveLabel
from core.consent.categories import SENSITIVE_LABELS
from tests.conftest import World, login
from tests.factories import patient_body

Headers = dict[str, str]
KINDS = ("care_plan", "result", "task", "appointment", "thread")


def _at(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def _setup(client: AsyncTestClient[Any], world: World) -> tuple[Headers, str, str]:
    """The admin's headers, a patient id and the clinician's user id, in tenant A."""
    admin = await login(client, "admin.a@test.example", world.slug_a)
    members = (await client.get("/api/v1/users", headers=admin)).json()["items"]
    doc_id = next(m["user_id"] for m in members if m["email"] == "doc.a@test.example")
    created = await client.post("/api/v1/patients", json=patient_body("DC-1"), headers=admin)
    assert created.status_code == 201, created.text
    return admin, created.json()["id"], doc_id


def _request(kind: str, patient_id: str, doc_id: str) -> tuple[str, dict[str, Any]]:
    """Where to create a record of this kind, and a valid body for it."""
    if kind == "care_plan":
        return "/api/v1/care-plans", {"patient_id": patient_id, "title": "Recovery plan"}
    if kind == "result":
        return f"/api/v1/patients/{patient_id}/results", {
            "code": "3426-4",
            "display": "Tetrahydrocannabinol [Presence] in Urine",
            "value": "negative",
            "interpretation": "normal",
            "status": "final",
            "effective_at": _at(-2),
        }
    if kind == "task":
        return "/api/v1/tasks", {"patient_id": patient_id, "title": "Call about counselling intake"}
    if kind == "appointment":
        return "/api/v1/appointments", {
            "patient_id": patient_id,
            "participant_id": doc_id,
            "kind": "phone",
            "start_at": _at(48),
            "end_at": _at(48.5),
        }
    return "/api/v1/threads", {"patient_id": patient_id, "subject": "Counselling", "body": "How was the session?"}


def _read_url(kind: str, record_id: str) -> str:
    return {
        "care_plan": "/api/v1/care-plans",
        "result": "/api/v1/results",
        "task": "/api/v1/tasks",
        "appointment": "/api/v1/appointments",
        "thread": "/api/v1/threads",
    }[kind] + f"/{record_id}"


def test_the_label_type_is_the_consent_vocabulary() -> None:
    assert get_args(SensitiveLabel) == SENSITIVE_LABELS


@pytest.mark.parametrize("kind", KINDS)
async def test_a_label_given_at_creation_is_read_back(client: AsyncTestClient[Any], world: World, kind: str) -> None:
    admin, patient_id, doc_id = await _setup(client, world)
    url, body = _request(kind, patient_id, doc_id)

    unlabelled = await client.post(url, json=body, headers=admin)
    assert unlabelled.status_code == 201, unlabelled.text
    assert unlabelled.json()["data_category"] is None

    labelled = await client.post(url, json={**body, "data_category": "substance_use_disorder"}, headers=admin)
    assert labelled.status_code == 201, labelled.text
    assert labelled.json()["data_category"] == "substance_use_disorder"
    read = await client.get(_read_url(kind, labelled.json()["id"]), headers=admin)
    assert read.status_code == 200, read.text
    assert read.json()["data_category"] == "substance_use_disorder"

    explicit_null = await client.post(url, json={**body, "data_category": None}, headers=admin)
    assert explicit_null.status_code == 201 and explicit_null.json()["data_category"] is None


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unknown_label_is_refused_naming_the_field(
    client: AsyncTestClient[Any], world: World, kind: str
) -> None:
    admin, patient_id, doc_id = await _setup(client, world)
    url, body = _request(kind, patient_id, doc_id)
    for bad in ("clinical_results", "SUBSTANCE_USE_DISORDER", "", 3):
        refused = await client.post(url, json={**body, "data_category": bad}, headers=admin)
        # Refused while decoding the body, like every other field outside its vocabulary.
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["field"] == "data_category"


@pytest.mark.parametrize("kind", ("care_plan", "task", "appointment"))
async def test_an_update_sets_changes_and_clears_the_label(
    client: AsyncTestClient[Any], world: World, kind: str
) -> None:
    admin, patient_id, doc_id = await _setup(client, world)
    url, body = _request(kind, patient_id, doc_id)
    created = await client.post(url, json=body, headers=admin)
    assert created.status_code == 201, created.text
    record = _read_url(kind, created.json()["id"])

    for label in ("behavioral_health", "social_needs", None):
        patched = await client.patch(record, json={"data_category": label}, headers=admin)
        assert patched.status_code == 200, patched.text
        assert patched.json()["data_category"] == label
        assert (await client.get(record, headers=admin)).json()["data_category"] == label

    untouched = await client.patch(record, json={"data_category": "social_needs"}, headers=admin)
    other = {"care_plan": {"title": "Renamed"}, "task": {"title": "Renamed"}, "appointment": {"kind": "video"}}
    if kind == "appointment":
        other["appointment"]["video_link"] = "https://visit.example/room/7"
    kept = await client.patch(record, json=other[kind], headers=admin)
    assert untouched.status_code == 200 and kept.status_code == 200, kept.text
    assert kept.json()["data_category"] == "social_needs", "an update that leaves the label out keeps it"

    bad = await client.patch(record, json={"data_category": "clinical_results"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "data_category"


async def test_care_plan_versions_record_label_changes(client: AsyncTestClient[Any], world: World) -> None:
    admin, patient_id, doc_id = await _setup(client, world)
    url, body = _request("care_plan", patient_id, doc_id)
    plan = (await client.post(url, json={**body, "data_category": "behavioral_health"}, headers=admin)).json()
    record = _read_url("care_plan", plan["id"])
    relabelled = await client.patch(record, json={"data_category": None, "version": 1}, headers=admin)
    assert relabelled.status_code == 200 and relabelled.json()["version"] == 2

    versions = (await client.get(f"{record}/versions", headers=admin)).json()
    assert versions[-1]["changes"] == [{"op": "set", "field": "data_category", "from": "behavioral_health", "to": None}]


@pytest.mark.parametrize("kind", ("task", "appointment"))
async def test_a_label_change_is_audited(client: AsyncTestClient[Any], world: World, kind: str) -> None:
    """The update's audit event names the changed field, as it does for every other field."""
    admin, patient_id, doc_id = await _setup(client, world)
    url, body = _request(kind, patient_id, doc_id)
    record = (await client.post(url, json=body, headers=admin)).json()
    patched = await client.patch(_read_url(kind, record["id"]), json={"data_category": "social_needs"}, headers=admin)
    assert patched.status_code == 200, patched.text

    events = (await client.get(f"/api/v1/audit-events?action={kind}.update", headers=admin)).json()["items"]
    assert [e["detail"] for e in events if e["resource_id"] == record["id"]] == [{"fields": ["data_category"]}]
