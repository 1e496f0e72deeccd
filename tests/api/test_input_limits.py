"""Bad input a new user or an attacker sends: over-deep or over-long JSON, unsafe emails and names, tokens
that live too long, a busy port. Each gets its 4xx (or a clear message), never a 500."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from litestar.testing import AsyncTestClient

from api.body_limits import json_limit_broken
from core.db import utcnow
from core.settings import SettingsError
from tests.conftest import World, base_settings, login
from tests.factories import patient_body

Client = AsyncTestClient[Any]


async def _doctor(client: Client) -> dict[str, str]:
    return await login(client, "doc.a@test.example", "hospital-a")


def _field_named(response: Any, field: str) -> bool:
    body = response.json()
    return any(error.get("field") == field for error in body.get("errors", [])) or field in body["detail"]


# --- JSON structure, before decoding -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"[" * 2048, b"[" * 1024 + b"]" * 1024, b'{"email":' * 300 + b"1" + b"}" * 300])
async def test_nested_brackets_on_the_token_endpoint_are_a_400_naming_the_limit(client: Client, body: bytes) -> None:
    response = await client.post("/api/v1/auth/token", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "max_json_depth" in response.json()["detail"]


async def test_nested_brackets_on_a_secured_route_and_in_fhir(client: Client, world: World) -> None:
    doctor = await _doctor(client)
    deep = {"given_name": "Ada"}
    for _ in range(40):
        deep = {"x": deep}
    body = patient_body(address=deep)
    response = await client.post("/api/v1/patients", json=body, headers=doctor)
    assert response.status_code == 400, response.text
    assert "nested deeper than 32" in response.json()["detail"]
    fhir = await client.post(
        "/fhir/Consent", content=b"[" * 5000, headers={**doctor, "content-type": "application/fhir+json"}
    )
    assert fhir.status_code == 400, fhir.text
    # Nothing was stored by the refused request.
    listed = await client.get("/api/v1/patients", headers=doctor)
    assert listed.json()["items"] == []


async def test_an_array_with_too_many_items_is_a_400(client: Client, world: World) -> None:
    doctor = await _doctor(client)
    body = patient_body()
    body["identifiers"] = [0] * 10_001
    response = await client.post("/api/v1/patients", json=body, headers=doctor)
    assert response.status_code == 400, response.text
    assert "max_json_array_items" in response.json()["detail"]


async def test_brackets_and_commas_inside_strings_are_text(client: Client, world: World) -> None:
    doctor = await _doctor(client)
    response = await client.post(
        "/api/v1/patients",
        json=patient_body(address={"line": ["[" * 60 + "," * 50], "city": "{{{{" * 10}),
        headers=doctor,
    )
    assert response.status_code == 201, response.text
    assert response.json()["address"]["line"] == ["[" * 60 + "," * 50]


def test_the_scan_counts_per_container() -> None:
    assert json_limit_broken(b"[" * 32 + b"]" * 32, 32, 100) is None
    assert json_limit_broken(b"[" * 33 + b"]" * 33, 32, 100) is not None
    assert json_limit_broken(b"[" + b"1," * 99 + b"1]", 32, 100) is None
    assert json_limit_broken(b"[" + b"1," * 100 + b"1]", 32, 100) is not None
    # Many small arrays are not one long one; commas of an object do not count as array items.
    assert json_limit_broken(b"[" + b"[1,2]," * 60 + b"[1]]", 32, 100) is None
    assert json_limit_broken(b"{" + b'"a":1,' * 200 + b'"b":2}', 32, 100) is None
    assert json_limit_broken(b'["a\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', 4, 100) is None


# --- emails ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    [
        "ada\x07@test.example",  # a control character
        "ada\u202e@test.example",  # a right-to-left override
        "<script>@test.example",  # markup
        "ada@test.example\n",  # a trailing line break
        '"Ada Lovelace" <ada@test.example>',  # a display name, not an address
        "ada@clinic.test",  # a special-use domain
    ],
)
async def test_unsafe_emails_are_refused_naming_the_field(client: Client, world: World, email: str) -> None:
    doctor = await _doctor(client)
    response = await client.post("/api/v1/patients", json=patient_body(email=email), headers=doctor)
    assert 400 <= response.status_code < 500, response.text
    assert _field_named(response, "email"), response.text
    listed = await client.get("/api/v1/patients", headers=doctor)
    assert listed.json()["items"] == []


async def test_emails_are_normalised_everywhere_they_enter(client: Client, world: World) -> None:
    doctor = await _doctor(client)
    admin = await login(client, "admin.a@test.example", "hospital-a")
    created = await client.post("/api/v1/patients", json=patient_body(email="Ada.L@Test.EXAMPLE"), headers=doctor)
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "Ada.L@test.example"
    patient_id = created.json()["id"]
    changed = await client.patch(f"/api/v1/patients/{patient_id}", json={"email": "a\u2066@x.example"}, headers=doctor)
    assert changed.status_code in (400, 422) and _field_named(changed, "email"), changed.text
    invited = await client.post(
        f"/api/v1/patients/{patient_id}/portal-invitation", json={"email": "bad\x00\x01@x.example"}, headers=admin
    )
    assert invited.status_code in (400, 422), invited.text
    user = await client.post(
        "/api/v1/users",
        json={
            "email": "new\u202e@test.example",
            "full_name": "New",
            "password": "correct-horse-battery",
            "roles": ["clinician"],
        },
        headers=admin,
    )
    assert user.status_code in (400, 422) and _field_named(user, "email"), user.text
    prefs = await client.put(
        "/api/v1/me/notification-preferences", json={"channels": [], "email": "me\x1b@test.example"}, headers=doctor
    )
    assert prefs.status_code in (400, 422) and _field_named(prefs, "email"), prefs.text


# --- names and free text --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Ada\u202eecalevol", "Ada\x1b[31m", "Ada\nLovelace", "Ada\u2067", "Ada\x85"])
async def test_names_refuse_control_and_bidi_characters(client: Client, world: World, name: str) -> None:
    doctor = await _doctor(client)
    response = await client.post("/api/v1/patients", json=patient_body(given_name=name), headers=doctor)
    assert response.status_code == 400, response.text
    assert _field_named(response, "given_name"), response.text


async def test_multi_line_text_keeps_line_breaks_but_not_overrides(client: Client, world: World) -> None:
    doctor = await _doctor(client)
    patient = (await client.post("/api/v1/patients", json=patient_body(), headers=doctor)).json()
    thread = {"patient_id": patient["id"], "subject": "Follow-up", "body": "Line one\nLine two\tindented"}
    created = await client.post("/api/v1/threads", json=thread, headers=doctor)
    assert created.status_code == 201, created.text
    hidden = {**thread, "body": "Take 10 mg\u202e01 not"}
    refused = await client.post("/api/v1/threads", json=hidden, headers=doctor)
    assert refused.status_code == 400 and _field_named(refused, "body"), refused.text
    subject = {**thread, "subject": "Two\nlines"}
    refused = await client.post("/api/v1/threads", json=subject, headers=doctor)
    assert refused.status_code == 400 and _field_named(refused, "subject"), refused.text


# --- token lifetime -------------------------------------------------------------------------------------------


def _token(client: Client, **times: Any) -> str:
    settings = client.app.state.hub.settings
    now = utcnow()
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(uuid.uuid4()),
        "tid": None,
        "ver": 0,
        "iat": now.timestamp(),
        "nbf": now,
        "exp": now + timedelta(days=3650),
        "jti": uuid.uuid4().hex,
        **times,
    }
    kid = settings.jwt_active_kid
    return jwt.encode(claims, settings.jwt_keys[kid], algorithm="HS256", headers={"kid": kid})


async def test_a_ten_year_token_is_refused(client: Client, world: World) -> None:
    response = await client.get("/api/v1/patients", headers={"Authorization": f"Bearer {_token(client)}"})
    assert response.status_code == 401, response.text
    assert "lifetime" in response.json()["detail"]
    # An issue time set late does not hide a long life either.
    late = _token(client, iat=(utcnow() + timedelta(days=3000)).timestamp())
    response = await client.get("/api/v1/patients", headers={"Authorization": f"Bearer {late}"})
    assert response.status_code == 401, response.text
    # The hub's own tokens are within the limit.
    doctor = await _doctor(client)
    assert (await client.get("/api/v1/patients", headers=doctor)).status_code == 200


def test_a_token_lifetime_above_the_maximum_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="CAREHUB_JWT_TTL_SECONDS"):
        base_settings(jwt_ttl_seconds=7200, jwt_max_lifetime_seconds=3600)


# --- a busy port ----------------------------------------------------------------------------------------------


def test_demo_on_a_busy_port_says_which_and_how_to_choose_another(tmp_path: Any) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "CAREHUB_DATA_DIR": str(tmp_path), "CAREHUB_PORT": str(port)}
        env["CAREHUB_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/demo.sqlite3"
        result = subprocess.run(
            [sys.executable, "-m", "api.cli", "demo"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert f"CAREHUB_PORT={port + 1} make run" in result.stderr
    assert not (tmp_path / "demo.sqlite3").exists()  # it stopped before touching anything


async def test_a_template_schema_may_nest_deeper_but_not_without_bound(client: Client, world: World) -> None:
    admin = await login(client, "admin.a@test.example", "hospital-a")
    body = b'{"code": "deep", "name": "deep", "structured_schema": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001
    response = await client.post(
        "/api/v1/care-plan-templates", content=body, headers={**admin, "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "nested deeper than 700" in response.json()["detail"]
