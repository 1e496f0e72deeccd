"""The OpenAPI document is a true contract: schemathesis drives every operation and checks each answer against it.

A small world (two hospitals, a patient with a care team, plan, task, appointment, thread, consent and a portal
account) is seeded once; secured operations get a real token minted as the app mints them, and path ids are
often ids that exist, so that the checks see the 2xx bodies as well as the 4xx problems.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from litestar.testing import TestClient
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import select

from api.app import create_app
from api.errors import MEDIA_TYPE as PROBLEM
from api.tokens import TokenService
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tests.conftest import _build_world, base_settings
from tests.factories import patient_body

# A few examples per operation keep the run near a minute on two cores for ~140 operations.
EXAMPLES = 3


async def _accounts(hub_settings: Settings) -> dict[str, tuple[uuid.UUID, int]]:
    """Every user's id and token version, by e-mail."""
    from tenants.context import network_scope
    from tenants.models import User

    engine = make_engine(hub_settings.database_url)
    try:
        with network_scope("contract test seed"):
            async with make_sessionmaker(engine)() as session:
                rows = (await session.execute(select(User.email, User.id, User.token_version))).all()
    finally:
        await engine.dispose()
    return {email: (user_id, version) for email, user_id, version in rows}


def _seed(hub_settings: Settings) -> dict[str, str]:
    """Create the records whose ids the run puts into paths, and a bearer header per kind of caller."""
    world = asyncio.run(_build_world(hub_settings))
    tokens = TokenService(hub_settings)

    def bearer(email: str, tenant: uuid.UUID | None) -> str:
        user_id, version = asyncio.run(_accounts(hub_settings))[email]
        return f"Bearer {tokens.issue(user_id, tenant, version)[0]}"

    staff = {"Authorization": bearer("admin.a@test.example", world.tenant_a)}
    net = {"Authorization": bearer("net@test.example", None)}
    with TestClient(app=create_app(hub_settings)) as client:

        def post(path: str, body: dict[str, Any], headers: dict[str, str] = staff) -> dict[str, Any]:
            response = client.post(path, json=body, headers=headers)
            assert response.status_code < 300, (path, response.text)
            return response.json() if response.content else {}

        me = client.get("/api/v1/auth/me", headers=staff).json()
        patient = post("/api/v1/patients", patient_body("CT-0"))
        team = post(
            f"/api/v1/patients/{patient['id']}/care-team",
            {"members": [{"user_id": me["user_id"], "role": "care_manager"}]},
        )
        template = post(
            "/api/v1/care-plan-templates", {"code": "ct", "name": "C", "structured_schema": {"type": "object"}}
        )
        task = post("/api/v1/tasks", {"patient_id": patient["id"], "title": "t"})
        plan = post(
            "/api/v1/care-plans",
            {
                "patient_id": patient["id"],
                "title": "p",
                "goals": [{"description": "g"}],
                "activities": [{"kind": "other", "description": "a"}],
            },
        )
        appointment = post(
            "/api/v1/appointments",
            {
                "patient_id": patient["id"],
                "participant_id": me["user_id"],
                "kind": "phone",
                "start_at": "2030-01-01T09:00:00Z",
                "end_at": "2030-01-01T09:30:00Z",
            },
        )
        thread = post(
            "/api/v1/threads",
            {
                "patient_id": patient["id"],
                "subject": "s",
                "body": "b",
                "include_patient": True,
                "attachments": [{"name": "a.txt", "content_type": "text/plain", "data": "aGk="}],
            },
        )
        message = client.get(f"/api/v1/threads/{thread['id']}/messages", headers=staff).json()["items"][0]
        consent = post(
            f"/api/v1/patients/{patient['id']}/consents",
            {
                "grantee": {"kind": "network"},
                "categories": ["demographics"],
                "purposes": ["treatment"],
                "period_start": "2026-01-01T00:00:00Z",
                "source_kind": "verbal",
            },
        )
        result = post(
            f"/api/v1/patients/{patient['id']}/results",
            {
                "code": "2345-7",
                "display": "G",
                "value": "99",
                "interpretation": "normal",
                "status": "final",
                "effective_at": "2026-01-01T00:00:00Z",
            },
        )
        invitation_id = post("/api/v1/invitations", {"email": "new@test.example", "roles": ["chw"]})["id"]
        tenant = post("/api/v1/network/tenants", {"slug": "ct-0", "name": "C", "kind": "partner"}, net)
        invitation = post(f"/api/v1/patients/{patient['id']}/portal-invitation", {"email": "ct@patient.example"})
        post("/api/v1/invitations/accept", {"token": invitation["token"], "full_name": "P", "password": "x" * 20})
    return {
        "staff": staff["Authorization"],
        "network": net["Authorization"],
        "portal": bearer("ct@patient.example", world.tenant_a),
        "patient_id": patient["id"],
        # Operations on a user (deactivate, change roles) get a colleague, not the caller whose token the run uses.
        "user_id": str(asyncio.run(_accounts(hub_settings))["chw.a@test.example"][0]),
        # Signing out and changing a password revoke the caller's tokens: a caller of their own does those.
        "own_session": bearer("doc.b@test.example", world.tenant_b),
        "care_team_id": team["id"],
        "member_id": team["members"][0]["id"],
        "template_id": template["id"],
        "plan_id": plan["id"],
        "goal_id": plan["goals"][0]["id"],
        "activity_id": plan["activities"][0]["id"],
        "task_id": task["id"],
        "appointment_id": appointment["id"],
        "thread_id": thread["id"],
        "message_id": message["id"],
        "attachment_id": message["attachments"][0]["id"],
        "result_id": result["id"],
        "invitation_id": invitation_id,
        "consent_id": consent["id"],
        "tenant_id": tenant["id"],
    }


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> tuple[Any, dict[str, str]]:
    db_file = tmp_path_factory.mktemp("contract") / "contract.sqlite3"
    shutil.copy(sqlite_template, db_file)
    hub_settings = base_settings(database_url=f"sqlite+aiosqlite:///{db_file}")
    ids = _seed(hub_settings)
    schema = schemathesis.openapi.from_asgi("/schema/openapi.json", create_app(hub_settings))
    # NUL characters are refused everywhere before decoding (tests/api/test_hardening.py); strings without them
    # reach the checks the contract describes.
    schema.config.generation.update(allow_x00=False, with_security_parameters=False)
    # 422 is the server's answer to well-formed input it cannot accept (a participant who is not staff, a time
    # before 1900): a schema-valid request may get it; a 400 means the document failed to say what is refused.
    schema.config.checks.positive_data_acceptance.expected_statuses.append("422")
    return schema, ids


def _caller(path: str, ids: dict[str, str]) -> str:
    if path in ("/api/v1/auth/logout", "/api/v1/auth/password"):
        return ids["own_session"]
    if path.startswith("/api/v1/network/"):
        return ids["network"]
    if path.startswith("/api/v1/portal/"):
        return ids["portal"]
    return ids["staff"]


def _check(operation: Any, mode: GenerationMode, ids: dict[str, str], failures: list[str]) -> None:
    turn = itertools.count()
    # A FHIR search needs `patient` or `_id`: a pair OpenAPI parameters cannot require, so a schema-valid search
    # with neither gets its documented 400.
    search = operation.method.upper() == "GET" and operation.path.startswith("/fhir/") and operation.query
    excluded = [positive_data_acceptance] if search else []

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        # Every other case puts ids that exist into the path, so that found records are checked too.
        if mode is GenerationMode.POSITIVE and case.path_parameters and next(turn) % 2 == 0:
            for name in case.path_parameters:
                known = ids.get(name)
                if known:
                    case.path_parameters[name] = known
        headers = {"Authorization": _caller(case.path, ids)}
        response = case.call(headers=headers)
        try:
            case.validate_response(response, headers=headers, excluded_checks=excluded)
        except FailureGroup as group:
            failures.extend(
                f"{mode} {operation.label}: {failure.title}: {failure.message[:400]} "
                f"(sent query {case.query} body {str(case.body)[:200]}; answered {response.status_code} "
                f"{response.text[:400]})"
                for failure in group.exceptions
            )

    try:
        run()
    except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters, no body, public)
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_every_answer_matches_the_contract(contract: tuple[Any, dict[str, str]]) -> None:
    schema, ids = contract
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _check(operation, mode, ids, failures)
    assert len(operations) > 100
    assert not failures, "\n".join(sorted(set(failures)))


def test_public_operations_and_error_bodies_are_described(contract: tuple[Any, dict[str, str]]) -> None:
    """The routes the middleware lets through without a token say so; every error names its problem schema."""
    document = contract[0].raw_schema
    paths = document["paths"]
    for path, method in (
        ("/api/v1/auth/token", "post"),
        ("/api/v1/invitations/accept", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/fhir/metadata", "get"),
    ):
        assert paths[path][method]["security"] == [], path
    assert "security" not in paths["/api/v1/patients"]["get"]  # the document's default: a bearer token
    for path, item in paths.items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and (path, status) != ("/readyz", "503"):  # readyz: its own body
                    (media_type, content), *_ = response["content"].items()
                    name = "OperationOutcome" if path.startswith("/fhir") else "Problem"
                    assert content["schema"] == {"$ref": f"#/components/schemas/{name}"}, (method, path, status)
                    assert media_type == ("application/fhir+json" if name == "OperationOutcome" else PROBLEM)
    assert document["paths"]["/api/v1/patients"]["post"]["responses"].keys() >= {"201", "400", "401", "403", "413"}
    assert document["components"]["schemas"]["PatientCreate"]["additionalProperties"] is False
