"""Care plans: templates validated with JSON Schema (every failing path named), goals, activities, versions."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import World, login
from tests.factories import patient_body

DIABETES = {
    "hba1c_target_percent": 7.0,
    "monitoring": {"glucose_checks_per_day": 2},
    "medications": [{"name": "metformin", "dose": "1000 mg twice daily"}],
    "screening": {"retinal_exam_due": "2027-03-01"},
}


async def _setup(client: AsyncTestClient[Any], world: World) -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    installed = await client.post("/api/v1/care-plan-templates/install-standard", headers=admin)
    assert installed.status_code == 201, installed.text
    templates = {t["code"]: t["id"] for t in installed.json()}
    assert {"diabetes-t2", "heart-failure-discharge", "copd"} <= set(templates)
    patient = (await client.post("/api/v1/patients", json=patient_body("CP-1"), headers=admin)).json()
    return admin, patient, templates


async def test_plan_from_template_with_versions(client: AsyncTestClient[Any], world: World) -> None:
    admin, patient, templates = await _setup(client, world)
    again = await client.post("/api/v1/care-plan-templates/install-standard", headers=admin)
    assert again.json() == []  # idempotent

    created = await client.post(
        "/api/v1/care-plans",
        headers=admin,
        json={
            "patient_id": patient["id"],
            "template_id": templates["diabetes-t2"],
            "period_start": "2026-11-01",
            "structured": DIABETES,
            "staff_note": "Prefers morning calls",
        },
    )
    assert created.status_code == 201, created.text
    plan = created.json()
    assert plan["title"] == "Diabetes - type 2" and plan["status"] == "draft" and plan["version"] == 1
    assert len(plan["goals"]) == 3 and len(plan["activities"]) == 4  # from the template

    activated = await client.patch(
        f"/api/v1/care-plans/{plan['id']}", headers=admin, json={"status": "active", "version": 1}
    )
    assert activated.status_code == 200, activated.text
    assert activated.json()["version"] == 2

    stale = await client.patch(f"/api/v1/care-plans/{plan['id']}", headers=admin, json={"title": "X", "version": 1})
    assert stale.status_code == 409 and stale.json()["errors"][0]["field"] == "version"

    goal = plan["goals"][0]
    achieved = await client.patch(
        f"/api/v1/care-plans/{plan['id']}/goals/{goal['id']}", headers=admin, json={"achievement_status": "improving"}
    )
    assert achieved.status_code == 200 and achieved.json()["version"] == 3

    task = await client.post(
        "/api/v1/tasks",
        headers=admin,
        json={"patient_id": patient["id"], "title": "Order HbA1c", "care_plan_id": plan["id"]},
    )
    assert task.status_code == 201, task.text
    linked = await client.post(
        f"/api/v1/care-plans/{plan['id']}/activities",
        headers=admin,
        json={"kind": "task", "description": "HbA1c in 3 months", "task_id": task.json()["id"]},
    )
    assert linked.status_code == 201 and linked.json()["version"] == 4

    history = (await client.get(f"/api/v1/care-plans/{plan['id']}/versions", headers=admin)).json()
    assert [v["version"] for v in history] == [1, 2, 3, 4]
    assert all(v["changed_by_name"] == "admin_a" for v in history)
    assert history[1]["changes"] == [{"op": "set", "field": "status", "from": "draft", "to": "active"}]
    assert history[2]["changes"][0]["field"] == "achievement_status"
    # Earlier versions stay readable as they were.
    first = (await client.get(f"/api/v1/care-plans/{plan['id']}/versions/1", headers=admin)).json()
    assert first["plan"]["status"] == "draft" and first["plan"]["goals"][0]["achievement_status"] == "in-progress"
    assert (await client.get(f"/api/v1/care-plans/{plan['id']}/versions/9", headers=admin)).status_code == 404

    # Completed plans are closed; illegal status moves are refused.
    back = await client.patch(f"/api/v1/care-plans/{plan['id']}", headers=admin, json={"status": "draft"})
    assert back.status_code == 409
    assert back.json()["detail"] == "a plan that is active cannot become draft (allowed: completed, on-hold, revoked)"
    done = await client.patch(f"/api/v1/care-plans/{plan['id']}", headers=admin, json={"status": "completed"})
    assert done.status_code == 200
    closed = await client.post(
        f"/api/v1/care-plans/{plan['id']}/goals", headers=admin, json={"description": "Too late"}
    )
    assert closed.status_code == 409

    listed = (await client.get(f"/api/v1/care-plans?patient_id={patient['id']}", headers=admin)).json()
    assert [p["id"] for p in listed["items"]] == [plan["id"]]


async def test_template_validation_names_every_failing_path(client: AsyncTestClient[Any], world: World) -> None:
    admin, patient, templates = await _setup(client, world)
    bad = {
        "hba1c_target_percent": 15,
        "monitoring": {"glucose_checks_per_day": "twice"},
        "medications": [{"name": "metformin"}],
        "screening": {"retinal_exam_due": "next spring"},
        "mood": "good",
    }
    refused = await client.post(
        "/api/v1/care-plans",
        headers=admin,
        json={"patient_id": patient["id"], "template_id": templates["diabetes-t2"], "structured": bad},
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    fields = {e["field"] for e in refused.json()["errors"]}
    assert {
        "structured.hba1c_target_percent",
        "structured.monitoring.glucose_checks_per_day",
        "structured.medications[0].dose",
        "structured.screening.retinal_exam_due",
        "structured",  # the unexpected "mood"
    } <= fields
    missing = await client.post(
        "/api/v1/care-plans",
        headers=admin,
        json={"patient_id": patient["id"], "template_id": templates["heart-failure-discharge"], "structured": {}},
    )
    assert {e["field"] for e in missing.json()["errors"]} == {
        "structured.discharge_date",
        "structured.dry_weight_kg",
        "structured.ejection_fraction_percent",
    }
    # Nothing was written.
    listed = (await client.get(f"/api/v1/care-plans?patient_id={patient['id']}", headers=admin)).json()
    assert listed["items"] == []

    # A later edit is checked against the template too.
    plan = (
        await client.post(
            "/api/v1/care-plans",
            headers=admin,
            json={"patient_id": patient["id"], "template_id": templates["diabetes-t2"], "structured": DIABETES},
        )
    ).json()
    edit = await client.patch(
        f"/api/v1/care-plans/{plan['id']}",
        headers=admin,
        json={"structured": {**DIABETES, "hba1c_target_percent": "7"}},
    )
    assert edit.status_code == 422 and edit.json()["errors"][0]["field"] == "structured.hba1c_target_percent"
    assert (await client.get(f"/api/v1/care-plans/{plan['id']}", headers=admin)).json()["version"] == 1


async def test_templates_must_be_valid_json_schema(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    base = {"code": "custom", "name": "Custom"}
    not_schema = await client.post(
        "/api/v1/care-plan-templates",
        headers=admin,
        json={**base, "structured_schema": {"type": "object", "minProperties": "x"}},
    )
    assert not_schema.status_code == 422 and not_schema.json()["errors"][0]["field"].startswith("structured_schema")
    remote = await client.post(
        "/api/v1/care-plan-templates",
        headers=admin,
        json={**base, "structured_schema": {"type": "object", "properties": {"a": {"$ref": "https://evil.example/s"}}}},
    )
    assert remote.status_code == 422 and remote.json()["errors"][0]["field"] == "structured_schema.properties.a.$ref"
    good = await client.post(
        "/api/v1/care-plan-templates",
        headers=admin,
        json={**base, "structured_schema": {"type": "object"}, "goals": [{"description": "Feel better"}]},
    )
    assert good.status_code == 201
    retired = await client.patch(
        f"/api/v1/care-plan-templates/{good.json()['id']}", headers=admin, json={"active": False}
    )
    assert retired.status_code == 200 and retired.json()["active"] is False
    listed = (await client.get("/api/v1/care-plan-templates", headers=admin)).json()
    assert good.json()["id"] not in {t["id"] for t in listed}
    patient = (await client.post("/api/v1/patients", json=patient_body("CP-9"), headers=admin)).json()
    from_retired = await client.post(
        "/api/v1/care-plans", headers=admin, json={"patient_id": patient["id"], "template_id": good.json()["id"]}
    )
    assert from_retired.status_code == 422 and from_retired.json()["errors"][0]["field"] == "template_id"
    dup = await client.post(
        "/api/v1/care-plan-templates", headers=admin, json={**base, "structured_schema": {"type": "object"}}
    )
    assert dup.status_code == 409
    # Clinicians read templates but do not author them.
    doc = await login(client, "doc.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/care-plan-templates", headers=doc)).status_code == 200
    denied = await client.post(
        "/api/v1/care-plan-templates", headers=doc, json={**base, "code": "x", "structured_schema": {"type": "object"}}
    )
    assert denied.status_code == 403


async def test_plan_links_stay_within_the_patient(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    one = (await client.post("/api/v1/patients", json=patient_body("CP-2"), headers=admin)).json()
    two = (await client.post("/api/v1/patients", json=patient_body("CP-3"), headers=admin)).json()
    task = (await client.post("/api/v1/tasks", headers=admin, json={"patient_id": two["id"], "title": "Call"})).json()
    refused = await client.post(
        "/api/v1/care-plans",
        headers=admin,
        json={
            "patient_id": one["id"],
            "title": "Plan",
            "activities": [{"kind": "task", "description": "x", "task_id": task["id"]}],
        },
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "activities[0].task_id"
    no_title = await client.post("/api/v1/care-plans", headers=admin, json={"patient_id": one["id"]})
    assert no_title.status_code == 422 and no_title.json()["errors"][0]["field"] == "title"
    backwards = await client.post(
        "/api/v1/care-plans",
        headers=admin,
        json={"patient_id": one["id"], "title": "P", "period_start": "2026-12-01", "period_end": "2026-11-01"},
    )
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["field"] == "period_end"
