"""No request body can produce a 500: random JSON and random mutations of valid bodies get a 4xx at worst."""

from __future__ import annotations

import asyncio
import re
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

# Hundreds of generated bodies per test.
pytestmark = pytest.mark.slow


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
    ("POST", "/api/v1/patients/{patient}/portal-invitation"): {"email": "p@patient.example"},
    ("POST", "/api/v1/network/tenants"): {"slug": "fz-clinic", "name": "Fuzz Clinic", "kind": "clinic"},
    ("PUT", "/api/v1/plugins/{plugin}"): {
        "enabled": True,
        "config": {"base_url": "https://ehr.example.org/fhir", "auth": "bearer", "bearer_token": "t"},
    },
    ("PUT", "/api/v1/network/plugins/{plugin}"): {"allowed": True},
    ("POST", "/api/v1/network/tenants/{tenant}/activate"): {"reason": "checked"},
    ("POST", "/api/v1/network/tenants/{tenant}/suspend"): {"reason": "unpaid"},
    ("POST", "/api/v1/network/tenants/{tenant}/invitations"): {"email": "a@fz.example", "roles": ["tenant_admin"]},
    ("POST", "/api/v1/patients/{patient}/care-team"): {"members": [{"name": "Dr. X", "role": "specialist"}]},
    ("POST", "/api/v1/care-teams/{team}/members"): {"name": "Dr. Y", "role": "other", "phone": "+1 555 0101"},
    ("PATCH", "/api/v1/care-teams/{team}/members/{member}"): {"role": "caregiver", "is_lead": True},
    ("POST", "/api/v1/care-plan-templates"): {
        "code": "fz",
        "name": "Fuzz",
        "structured_schema": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}}},
        "goals": [{"description": "g"}],
    },
    ("PATCH", "/api/v1/care-plan-templates/{template}"): {"name": "N", "active": True, "condition": None},
    ("POST", "/api/v1/care-plans"): {
        "patient_id": "{patient}",
        "template_id": "{template}",
        "structured": {"a": 1},
        "period_start": "2026-11-01",
    },
    ("PATCH", "/api/v1/care-plans/{plan}"): {"structured": {"a": 2}, "status": "active", "period_end": "2027-01-01"},
    ("POST", "/api/v1/care-plans/{plan}/goals"): {"description": "d", "due_date": "2027-01-01"},
    ("PATCH", "/api/v1/care-plans/{plan}/goals/{goal}"): {"achievement_status": "achieved", "target_value": "7"},
    ("POST", "/api/v1/care-plans/{plan}/activities"): {"kind": "task", "description": "a", "task_id": "{task}"},
    ("PATCH", "/api/v1/care-plans/{plan}/activities/{activity}"): {"status": "completed"},
    ("POST", "/api/v1/tasks"): {
        "patient_id": "{patient}",
        "title": "t",
        "due_at": "2026-12-01T09:00:00Z",
        "priority": "stat",
        "assignee_id": "{user}",
    },
    ("PATCH", "/api/v1/tasks/{task}"): {"due_at": "2026-12-02T09:00:00+02:00", "assignee_id": None},
    ("POST", "/api/v1/tasks/{task}/transition"): {"status": "accepted", "reason": "r"},
    ("POST", "/api/v1/tasks/{task}/escalate"): {"reason": "r"},
    ("POST", "/api/v1/tasks/{task}/comments"): {"body": "b"},
    ("POST", "/api/v1/appointments"): {
        "patient_id": "{patient}",
        "participant_id": "{user}",
        "kind": "phone",
        "start_at": "2030-01-01T09:00:00Z",
        "end_at": "2030-01-01T09:30:00Z",
        "reminder": {"channels": ["sms"], "offsets_hours": [24]},
    },
    ("PATCH", "/api/v1/appointments/{appointment}"): {
        "start_at": "2030-01-02T09:00:00Z",
        "end_at": "2030-01-02T10:00:00Z",
    },
    ("POST", "/api/v1/appointments/{appointment}/status"): {"status": "cancelled", "reason": "r"},
    ("POST", "/api/v1/threads"): {
        "patient_id": "{patient}",
        "subject": "s",
        "body": "b",
        "participant_user_ids": ["{user}"],
        "include_patient": True,
        "attachments": [{"name": "a.txt", "content_type": "text/plain", "data": "aGk="}],
    },
    ("POST", "/api/v1/threads/{thread}/messages"): {"body": "b"},
    ("PATCH", "/api/v1/threads/{thread}/messages/{message}"): {"body": "y"},
    ("POST", "/api/v1/threads/{thread}/participants"): {"user_id": "{user}"},
    ("POST", "/api/v1/patients/{patient}/results"): {
        "code": "2345-7",
        "display": "Glucose",
        "value": "99",
        "unit": "mg/dL",
        "interpretation": "critical",
        "status": "final",
        "effective_at": "2026-01-01T00:00:00Z",
        "ordered_by": "{user}",
    },
    ("POST", "/api/v1/patients/{patient}/education"): {"title": "t", "url": "https://example.org/x"},
    ("POST", "/api/v1/portal/threads"): {"subject": "s", "body": "b"},
    ("PUT", "/api/v1/portal/notification-preferences"): {
        "channels": ["sms"],
        "phone": "+15551234567",
        "quiet_hours": {"start": "21:00", "end": "07:30"},
        "timezone": "America/Chicago",
    },
    ("PUT", "/api/v1/alert-settings"): {
        "timezone": "Europe/Paris",
        "overdue_escalation_minutes": [0, 30, 120],
        "critical_result_escalation_minutes": [15, 45],
        "patient_quiet_hours": {"start": "22:00", "end": "08:00"},
    },
    ("PUT", "/api/v1/me/notification-preferences"): {"channels": ["email"], "min_severity": "warning"},
    ("PUT", "/api/v1/patients/{patient}/notification-preferences"): {"channels": ["email"], "email": "p@x.example"},
    ("POST", "/api/v1/portal/threads/{portal_thread}/messages"): {"body": "b"},
    ("POST", "/api/v1/patients/{patient}/consents"): {
        "grantee": {"kind": "tenant", "tenant_id": "{tenant}"},
        "categories": ["care_plan"],
        "purposes": ["treatment"],
        "period_start": "2026-01-01T00:00:00Z",
        "source_kind": "scanned_form",
    },
    ("POST", "/api/v1/consents/{consent}/revoke"): {"reason": "r"},
    ("POST", "/api/v1/portal/consents"): {
        "grantee": {"kind": "tenant", "tenant_id": "{tenant}"},
        "categories": ["care_plan"],
        "purposes": ["treatment"],
        "period_start": "2026-01-01T00:00:00Z",
        "source_kind": "portal",
    },
    ("POST", "/api/v1/portal/consents/{consent}/revoke"): {"reason": "r"},
    ("POST", "/api/v1/patients/{patient}/break-glass"): {"reason": "an emergency reason"},
    ("PUT", "/api/v1/patients/{patient}/primary-care"): {"primary_care": False},
    ("POST", "/api/v1/patients/{patient}/discharges"): {
        "admitted_at": "2026-01-01T08:00:00Z",
        "discharged_at": "2026-01-02T08:00:00Z",
        "kind": "inpatient",
        "disposition": "home",
    },
    ("POST", "/api/v1/patients/{patient}/link"): {"person_id": "{user}"},
    ("PUT", "/api/v1/network/consent-default"): {"consent_default": "opt_in"},
    ("PUT", "/api/v1/network/link-systems"): {"systems": ["urn:carehub:network-id"]},
    ("POST", "/fhir/Consent"): {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/00000000-0000-4000-8000-000000000000"},
        "provision": {
            "type": "permit",
            "period": {"start": "2026-01-01T00:00:00Z"},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
                        ]
                    },
                    "reference": {"identifier": {"system": "urn:carehub:fhir:grantee-class", "value": "treating"}},
                }
            ],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
            "class": [{"system": "urn:carehub:fhir:data-category", "code": "care_plan"}],
        },
    },
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
        team = client.post(
            f"/api/v1/patients/{patient['id']}/care-team",
            json={"members": [{"user_id": user["user_id"], "role": "care_manager"}]},
            headers=headers,
        ).json()
        template = client.post(
            "/api/v1/care-plan-templates",
            json={"code": "fz-0", "name": "F", "structured_schema": {"type": "object"}},
            headers=headers,
        ).json()
        task = client.post("/api/v1/tasks", json={"patient_id": patient["id"], "title": "t"}, headers=headers).json()
        plan = client.post(
            "/api/v1/care-plans",
            json={
                "patient_id": patient["id"],
                "title": "p",
                "goals": [{"description": "g"}],
                "activities": [{"kind": "other", "description": "a"}],
            },
            headers=headers,
        ).json()
        appointment = client.post(
            "/api/v1/appointments",
            json={
                "patient_id": patient["id"],
                "participant_id": user["user_id"],
                "kind": "phone",
                "start_at": "2030-01-01T09:00:00Z",
                "end_at": "2030-01-01T09:30:00Z",
            },
            headers=headers,
        ).json()
        net = client.post("/api/v1/auth/token", json={"email": "net@test.example", "password": PASSWORD}).json()
        net_headers = {"Authorization": f"Bearer {net['access_token']}"}
        tenant = client.post(
            "/api/v1/network/tenants", json={"slug": "fz-0", "name": "F", "kind": "partner"}, headers=net_headers
        ).json()
        thread = client.post(
            "/api/v1/threads",
            json={"patient_id": patient["id"], "subject": "s", "body": "b", "participant_user_ids": []},
            headers=headers,
        ).json()
        portal_thread = client.post(
            "/api/v1/threads",
            json={"patient_id": patient["id"], "subject": "p", "body": "b", "include_patient": True},
            headers=headers,
        ).json()
        invitation = client.post(
            f"/api/v1/patients/{patient['id']}/portal-invitation", json={"email": "fz@patient.example"}, headers=headers
        ).json()
        client.post(
            "/api/v1/invitations/accept", json={"token": invitation["token"], "full_name": "P", "password": PASSWORD}
        )
        portal = client.post(
            "/api/v1/auth/token", json={"email": "fz@patient.example", "password": PASSWORD, "tenant": "hospital-a"}
        ).json()
        message = client.get(f"/api/v1/threads/{thread['id']}/messages", headers=headers).json()["items"][0]
        consent = client.post(
            f"/api/v1/patients/{patient['id']}/consents",
            json={
                "grantee": {"kind": "network"},
                "categories": ["demographics"],
                "purposes": ["treatment"],
                "period_start": "2026-01-01T00:00:00Z",
                "source_kind": "verbal",
            },
            headers=headers,
        ).json()
        yield (
            client,
            {
                "thread": thread["id"],
                "portal_thread": portal_thread["id"],
                "portal_auth": f"Bearer {portal['access_token']}",
                "plugin": "ehr_fhir",
                "message": message["id"],
                "tenant": tenant["id"],
                "net_auth": net_headers["Authorization"],
                "patient": patient["id"],
                "user": user["user_id"],
                "team": team["id"],
                "member": team["members"][0]["id"],
                "template": template["id"],
                "plan": plan["id"],
                "goal": plan["goals"][0]["id"],
                "activity": plan["activities"][0]["id"],
                "task": task["id"],
                "appointment": appointment["id"],
                "consent": consent["id"],
                "auth": headers["Authorization"],
            },
        )


def _fill(value: Any, ids: dict[str, str]) -> Any:
    """Put the fixture's ids into a body's "{name}" placeholders."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _send(client: TestClient[Any], ids: dict[str, str], method: str, path: str, body: Any) -> int:
    url = path.format(**ids)
    body = _fill(body, ids)
    auth = ids["auth"]
    if path.startswith("/api/v1/network/"):
        auth = ids["net_auth"]
    elif path.startswith("/api/v1/portal/"):
        auth = ids["portal_auth"]
    response = client.request(method, url, json=body, headers={"Authorization": auth})
    assert response.status_code < 500, (method, url, body, response.text)
    if response.status_code >= 400:
        # The FHIR endpoint answers errors as OperationOutcomes.
        expected = "application/fhir+json" if path.startswith("/fhir/") else "application/problem+json"
        assert response.headers["content-type"].startswith(expected)
    return response.status_code


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(sorted(VALID_BODIES)), body=json_values)
def test_random_json_never_errors(
    fuzz_client: tuple[TestClient[Any], dict[str, str]], endpoint: tuple[str, str], body: Any
) -> None:
    client, ids = fuzz_client
    _send(client, ids, endpoint[0], endpoint[1], body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(sorted(VALID_BODIES)), data=st.data())
def test_mutated_fields_never_error(
    fuzz_client: tuple[TestClient[Any], dict[str, str]], endpoint: tuple[str, str], data: st.DataObject
) -> None:
    client, ids = fuzz_client
    body = _fill(dict(VALID_BODIES[endpoint]), ids)
    field = data.draw(st.sampled_from(sorted(body)), label="field")
    body[field] = data.draw(json_values, label="value")
    status = _send(client, ids, endpoint[0], endpoint[1], body)
    if endpoint == ("POST", "/api/v1/auth/password"):
        assert status != 204, "a wrong current password never changes it"


def test_every_body_taking_route_is_fuzzed() -> None:
    """A new route that takes a JSON body must be added to VALID_BODIES (so that it is fuzzed too)."""

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{}", path).rstrip("/") or "/"

    app = create_app(base_settings())
    fuzzed = {(method, shape(path)) for method, path in VALID_BODIES}
    missing = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if "data" not in handler.parsed_fn_signature.parameters:
                continue
            for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                if (method, shape(route.path)) not in fuzzed:
                    missing.append(f"{method} {route.path}")
    assert not missing, f"add valid bodies for: {missing}"
