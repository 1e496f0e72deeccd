"""Patients through the HTTP API: create, read, update, search, deactivate, with audit."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import World, login
from tests.factories import patient_body


async def test_create_read_update_search_deactivate(client: AsyncTestClient[Any], world: World) -> None:
    headers = await login(client, "doc.a@test.example", world.slug_a)
    created = await client.post("/api/v1/patients", json=patient_body(), headers=headers)
    assert created.status_code == 201, created.text
    patient = created.json()
    assert patient["mrn"] == "MRN-1"
    assert patient["identifiers"] == [{"system": "urn:carehub:network-id", "value": "NET-MRN-1"}]

    read = await client.get(f"/api/v1/patients/{patient['id']}", headers=headers)
    assert read.status_code == 200
    assert read.json()["family_name"] == "Lovelace"

    updated = await client.patch(
        f"/api/v1/patients/{patient['id']}", json={"phone": None, "language": "fr"}, headers=headers
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["phone"] is None
    assert updated.json()["language"] == "fr"
    assert updated.json()["given_name"] == "Ada"

    for query in (
        "name=ada",
        "name=LOVE",
        "name=ada%20love",
        "birth_date=1961-12-10",
        "identifier=MRN-1",
        "identifier=urn:carehub:network-id|NET-MRN-1",
        "identifier=NET-MRN-1",
    ):
        found = await client.get(f"/api/v1/patients?{query}", headers=headers)
        assert found.status_code == 200, (query, found.text)
        assert [p["id"] for p in found.json()["items"]] == [patient["id"]], query
    missing = await client.get("/api/v1/patients?name=grace", headers=headers)
    assert missing.json()["items"] == []

    deactivated = await client.delete(f"/api/v1/patients/{patient['id']}", headers=headers)
    assert deactivated.status_code == 403, "a clinician may not deactivate"
    admin = await login(client, "admin.a@test.example", world.slug_a)
    deactivated = await client.delete(f"/api/v1/patients/{patient['id']}", headers=admin)
    assert deactivated.status_code == 200
    assert deactivated.json()["active"] is False
    listed = await client.get("/api/v1/patients", headers=headers)
    assert listed.json()["items"] == []
    listed = await client.get("/api/v1/patients?include_inactive=true", headers=headers)
    assert [p["id"] for p in listed.json()["items"]] == [patient["id"]]


async def test_duplicate_mrn_and_identifier_are_conflicts(client: AsyncTestClient[Any], world: World) -> None:
    headers = await login(client, "doc.a@test.example", world.slug_a)
    assert (await client.post("/api/v1/patients", json=patient_body("M1"), headers=headers)).status_code == 201
    again = await client.post("/api/v1/patients", json=patient_body("M1", identifiers=[]), headers=headers)
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "mrn"
    same_ident = patient_body("M2", identifiers=[{"system": "urn:carehub:network-id", "value": "NET-M1"}])
    clash = await client.post("/api/v1/patients", json=same_ident, headers=headers)
    assert clash.status_code == 409
    assert clash.json()["errors"][0]["field"] == "identifiers[0]"


async def test_the_same_mrn_may_exist_in_two_tenants(client: AsyncTestClient[Any], world: World) -> None:
    a = await login(client, "doc.a@test.example", world.slug_a)
    b = await login(client, "doc.b@test.example", world.slug_b)
    assert (await client.post("/api/v1/patients", json=patient_body("SAME"), headers=a)).status_code == 201
    assert (await client.post("/api/v1/patients", json=patient_body("SAME"), headers=b)).status_code == 201


async def test_identifiers_can_be_replaced(client: AsyncTestClient[Any], world: World) -> None:
    headers = await login(client, "doc.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body("M1"), headers=headers)).json()
    new_ids = [{"system": "urn:carehub:network-id", "value": "NET-M1"}, {"system": "urn:ins", "value": "INS-9"}]
    changed = await client.patch(f"/api/v1/patients/{patient['id']}", json={"identifiers": new_ids}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["identifiers"] == sorted(new_ids, key=lambda i: i["system"])
    found = await client.get("/api/v1/patients?identifier=urn:ins|INS-9", headers=headers)
    assert [p["id"] for p in found.json()["items"]] == [patient["id"]]


async def test_pagination_is_capped_and_continues(client: AsyncTestClient[Any], world: World) -> None:
    headers = await login(client, "doc.a@test.example", world.slug_a)
    for n in range(5):
        body = patient_body(f"P{n}", family_name=f"Fam{n}", identifiers=[])
        assert (await client.post("/api/v1/patients", json=body, headers=headers)).status_code == 201
    first = (await client.get("/api/v1/patients?limit=2", headers=headers)).json()
    assert [p["family_name"] for p in first["items"]] == ["Fam0", "Fam1"]
    assert first["page"]["next_offset"] == 2
    rest = (await client.get("/api/v1/patients?limit=2&offset=4", headers=headers)).json()
    assert [p["family_name"] for p in rest["items"]] == ["Fam4"]
    assert rest["page"]["next_offset"] is None
    too_many = await client.get("/api/v1/patients?limit=101", headers=headers)
    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["field"] == "limit"


async def test_chw_reads_but_cannot_write(client: AsyncTestClient[Any], world: World) -> None:
    chw = await login(client, "chw.a@test.example", world.slug_a)
    assert (await client.get("/api/v1/patients", headers=chw)).status_code == 200
    refused = await client.post("/api/v1/patients", json=patient_body(), headers=chw)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
