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
