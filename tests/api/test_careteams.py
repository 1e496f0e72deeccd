"""Care teams: staff and outside members, one lead, one team per patient, tenant-scoped."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import World, login
from tests.factories import patient_body


async def _user_id(client: AsyncTestClient[Any], headers: dict[str, str], email: str) -> str:
    members = (await client.get("/api/v1/users", headers=headers)).json()["items"]
    return next(m["user_id"] for m in members if m["email"] == email)


async def test_care_team_workflow(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    doc_id = await _user_id(client, admin, "doc.a@test.example")
    chw_id = await _user_id(client, admin, "chw.a@test.example")
    patient = (await client.post("/api/v1/patients", json=patient_body("T-1"), headers=admin)).json()

    missing = await client.get(f"/api/v1/patients/{patient['id']}/care-team", headers=admin)
    assert missing.status_code == 404

    created = await client.post(
        f"/api/v1/patients/{patient['id']}/care-team",
        headers=admin,
        json={
            "members": [
                {"user_id": doc_id, "role": "primary_care", "is_lead": True},
                {
                    "name": "Dr. Rosa Diaz",
                    "organisation": "Riverside Cardiology",
                    "phone": "+1 555 0199",
                    "role": "specialist",
                },
            ]
        },
    )
    assert created.status_code == 201, created.text
    team = created.json()
    assert team["name"] == "Care team of Ada Lovelace"
    by_role = {m["role"]: m for m in team["members"]}
    assert by_role["primary_care"]["name"] == "doc_a" and by_role["primary_care"]["is_lead"]
    assert by_role["specialist"]["external"] and by_role["specialist"]["organisation"] == "Riverside Cardiology"

    again = await client.post(f"/api/v1/patients/{patient['id']}/care-team", headers=admin, json={})
    assert again.status_code == 409
    assert again.json()["errors"] == [{"field": "patient_id", "message": again.json()["detail"], "source": "path"}]

    # A new lead takes the lead from the old one.
    added = await client.post(
        f"/api/v1/care-teams/{team['id']}/members",
        headers=admin,
        json={"user_id": chw_id, "role": "chw", "is_lead": True},
    )
    assert added.status_code == 201, added.text
    leads = [m["name"] for m in added.json()["members"] if m["is_lead"]]
    assert leads == ["chw_a"]

    duplicate = await client.post(
        f"/api/v1/care-teams/{team['id']}/members", headers=admin, json={"user_id": chw_id, "role": "chw"}
    )
    assert duplicate.status_code == 409 and duplicate.json()["errors"][0]["field"] == "user_id"

    external = by_role["specialist"]
    changed = await client.patch(
        f"/api/v1/care-teams/{team['id']}/members/{external['id']}", headers=admin, json={"phone": "+1 555 0200"}
    )
    assert changed.status_code == 200
    assert next(m for m in changed.json()["members"] if m["id"] == external["id"])["phone"] == "+1 555 0200"

    removed = await client.delete(f"/api/v1/care-teams/{team['id']}/members/{external['id']}", headers=admin)
    assert removed.status_code == 200
    assert external["id"] not in {m["id"] for m in removed.json()["members"]}

    read = (await client.get(f"/api/v1/patients/{patient['id']}/care-team", headers=admin)).json()
    assert {m["role"] for m in read["members"]} == {"primary_care", "chw"}


async def test_bad_members_are_refused_naming_the_field(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    b_admin = await login(client, "admin.b@test.example", world.slug_b)
    b_doc = await _user_id(client, b_admin, "doc.b@test.example")
    patient = (await client.post("/api/v1/patients", json=patient_body("T-2"), headers=admin)).json()
    url = f"/api/v1/patients/{patient['id']}/care-team"

    neither = await client.post(url, headers=admin, json={"members": [{"role": "chw"}]})
    assert neither.status_code == 422 and neither.json()["errors"][0]["field"] == "members[0]"
    # A user of another tenant is as unknown as a made-up id.
    foreign = await client.post(url, headers=admin, json={"members": [{"user_id": b_doc, "role": "specialist"}]})
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["field"] == "members[0].user_id"
    staff_phone = await client.post(
        url,
        headers=admin,
        json={
            "members": [
                {
                    "user_id": await _user_id(client, admin, "doc.a@test.example"),
                    "role": "primary_care",
                    "phone": "+1 555 0100",
                }
            ]
        },
    )
    assert staff_phone.status_code == 422 and staff_phone.json()["errors"][0]["field"] == "members[0].phone"
    bad_role = await client.post(url, headers=admin, json={"members": [{"name": "X", "role": "wizard"}]})
    assert bad_role.status_code == 400
    # Nothing was half-written.
    assert (await client.get(url, headers=admin)).status_code == 404
