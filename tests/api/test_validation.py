"""Bad input gets a 4xx problem+json naming the field, and nothing is stored or half-written."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.conftest import World, login
from tests.factories import patient_body


async def _counts(client: AsyncTestClient[Any], headers: dict[str, str]) -> tuple[int, int]:
    patients = (await client.get("/api/v1/patients?include_inactive=true&limit=100", headers=headers)).json()
    events = (await client.get("/api/v1/audit-events?limit=100&action=patient.create", headers=headers)).json()
    return len(patients["items"]), len(events["items"])


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        (patient_body(given_name=5), "given_name", 400),
        ({k: v for k, v in patient_body().items() if k != "family_name"}, "family_name", 400),
        (patient_body(given_name="x" * 101), "given_name", 400),
        (patient_body(unexpected="value"), "unexpected", 400),
        (patient_body(birth_date="2020-13-45"), "birth_date", 400),
        (patient_body(birth_date="2999-01-01"), "birth_date", 422),
        (patient_body(sex="robot"), "sex", 400),
        (patient_body(email="not-an-email"), "email", 400),
        (patient_body(address={"line": ["1 Elm St"], "planet": "Mars"}), "address.planet", 400),
        (patient_body(identifiers=[{"system": "urn:x"}]), "identifiers[0].value", 400),
        (
            patient_body(identifiers=[{"system": "urn:x", "value": "1"}, {"system": "urn:x", "value": "1"}]),
            "identifiers[1]",
            422,
        ),
        (patient_body(mrn="has spaces"), "mrn", 400),
        (patient_body(language="english!"), "language", 400),
    ],
)
async def test_bad_patient_input_names_the_field(
    client: AsyncTestClient[Any], world: World, body: dict[str, Any], field: str, status: int
) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    before = await _counts(client, admin)
    response = await client.post("/api/v1/patients", json=body, headers=admin)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await _counts(client, admin) == before, "nothing may be stored by a refused request"


async def test_bad_update_changes_nothing(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=admin)).json()
    # The first field is fine, the second is not: the whole update is refused.
    for body, field in (
        ({"language": "fr", "birth_date": "2999-01-01"}, "birth_date"),
        ({"language": "fr", "given_name": None}, "given_name"),
        ({"language": "fr", "identifiers": [{"system": "s", "value": "v"}] * 2}, "identifiers[1]"),
    ):
        response = await client.patch(f"/api/v1/patients/{patient['id']}", json=body, headers=admin)
        assert response.status_code in (400, 422), response.text
        assert field in [e["field"] for e in response.json()["errors"]]
    after = (await client.get(f"/api/v1/patients/{patient['id']}", headers=admin)).json()
    assert after["language"] == "en"
    assert after["identifiers"] == patient["identifiers"]
    updates = (await client.get("/api/v1/audit-events?action=patient.update", headers=admin)).json()["items"]
    assert updates == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/patients?limit=0", "limit"),
        ("/api/v1/patients?limit=abc", "limit"),
        ("/api/v1/patients?offset=-1", "offset"),
        ("/api/v1/patients?birth_date=yesterday", "birth_date"),
        ("/api/v1/patients?name=" + "n" * 101, "name"),
        ("/api/v1/audit-events?since=not-a-time", "since"),
        ("/api/v1/audit-events?since=2026-01-01T00:00:00", "since"),
    ],
)
async def test_bad_query_parameters(client: AsyncTestClient[Any], world: World, path: str, field: str) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    response = await client.get(path, headers=admin)
    assert 400 <= response.status_code < 500, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_malformed_json_and_oversized_bodies(client: AsyncTestClient[Any], world: World) -> None:
    admin = await login(client, "admin.a@test.example", world.slug_a)
    headers = {**admin, "content-type": "application/json"}
    broken = await client.post("/api/v1/patients", content=b'{"mrn": ', headers=headers)
    assert broken.status_code == 400
    assert broken.headers["content-type"].startswith("application/problem+json")
    huge = await client.post("/api/v1/patients", content=b"x" * 2_000_000, headers=headers)
    assert huge.status_code == 413
    assert (await client.get("/api/v1/patients/not-a-uuid", headers=admin)).status_code == 404
    wrong_method = await client.put("/api/v1/patients", json={}, headers=admin)
    assert wrong_method.status_code == 405


async def test_bad_input_on_onboarding_and_users(client: AsyncTestClient[Any], world: World) -> None:
    network = await login(client, "net@test.example", None)
    for body, field in (
        ({"slug": "Bad Slug!", "name": "X", "kind": "clinic"}, "slug"),
        ({"slug": "ok-slug", "name": "X", "kind": "spa"}, "kind"),
        ({"slug": "ok-slug", "name": ""}, "name"),
    ):
        response = await client.post("/api/v1/network/tenants", json=body, headers=network)
        assert response.status_code == 400, response.text
        assert field in [e["field"] for e in response.json()["errors"]]
    admin = await login(client, "admin.a@test.example", world.slug_a)
    for body, field in (
        (
            {
                "email": "x@test.example",
                "full_name": "X",
                "roles": ["network_admin"],
                "password": "long-enough-password",
            },
            "roles[0]",
        ),
        ({"email": "x@test.example", "full_name": "X", "roles": [], "password": "long-enough-pw"}, "roles"),
        ({"email": "x@test.example", "full_name": "X", "roles": ["chw"], "password": "short"}, "password"),
    ):
        response = await client.post("/api/v1/users", json=body, headers=admin)
        assert response.status_code == 400, response.text
        assert field in [e["field"] for e in response.json()["errors"]]
