"""No request body can produce a 500: random JSON and random mutations of valid bodies get a 4xx at worst."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from api.app import create_app
from tests.conftest import PASSWORD, _build_world, base_settings
from tests.factories import patient_body

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=12,
)

VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/patients"): patient_body("FZ-1"),
    ("PATCH", "/api/v1/patients/{patient}"): {"given_name": "Ada", "birth_date": "1961-12-10", "address": {}},
    ("POST", "/api/v1/users"): {
        "email": "f@test.example",
        "full_name": "F",
        "roles": ["chw"],
        "password": "long-enough-password",
    },
    ("PUT", "/api/v1/users/{user}/roles"): {"roles": ["chw"]},
    ("POST", "/api/v1/invitations"): {"email": "i@test.example", "roles": ["chw"]},
    ("POST", "/api/v1/auth/token"): {"email": "doc.a@test.example", "password": "x", "tenant": "hospital-a"},
    ("POST", "/api/v1/auth/password"): {"current_password": "wrong", "new_password": "long-enough-password"},
    ("POST", "/api/v1/invitations/accept"): {"token": "t" * 30, "full_name": "x", "password": "long-enough-pw"},
}


@pytest.fixture(scope="module")
def fuzz_client(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[TestClient[Any], dict[str, str]]]:
    db_file = tmp_path_factory.mktemp("fuzz") / "fuzz.sqlite3"
    shutil.copy(sqlite_template, db_file)
    hub_settings = base_settings(database_url=f"sqlite+aiosqlite:///{db_file}")
    asyncio.run(_build_world(hub_settings))
    with TestClient(app=create_app(hub_settings)) as client:
        token = client.post(
            "/api/v1/auth/token", json={"email": "admin.a@test.example", "password": PASSWORD, "tenant": "hospital-a"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        patient = client.post("/api/v1/patients", json=patient_body("FZ-0"), headers=headers).json()
        user = client.get("/api/v1/auth/me", headers=headers).json()
        yield client, {"patient": patient["id"], "user": user["user_id"], "auth": headers["Authorization"]}


def _send(client: TestClient[Any], ids: dict[str, str], method: str, path: str, body: Any) -> int:
    url = path.format(patient=ids["patient"], user=ids["user"])
    response = client.request(method, url, json=body, headers={"Authorization": ids["auth"]})
    assert response.status_code < 500, (method, url, body, response.text)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    return response.status_code


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(sorted(VALID_BODIES)), body=json_values)
def test_random_json_never_errors(
    fuzz_client: tuple[TestClient[Any], dict[str, str]], endpoint: tuple[str, str], body: Any
) -> None:
    client, ids = fuzz_client
    _send(client, ids, endpoint[0], endpoint[1], body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(sorted(VALID_BODIES)), data=st.data())
def test_mutated_fields_never_error(
    fuzz_client: tuple[TestClient[Any], dict[str, str]], endpoint: tuple[str, str], data: st.DataObject
) -> None:
    client, ids = fuzz_client
    body = dict(VALID_BODIES[endpoint])
    field = data.draw(st.sampled_from(sorted(body)), label="field")
    body[field] = data.draw(json_values, label="value")
    status = _send(client, ids, endpoint[0], endpoint[1], body)
    if endpoint == ("POST", "/api/v1/auth/password"):
        assert status != 204, "a wrong current password never changes it"
