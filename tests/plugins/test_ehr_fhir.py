"""The bundled ehr_fhir plugin, driven through the SDK's harness against a real local FHIR R4 server
(:mod:`tests.plugins.fhir_server`): SMART Backend Services with RS384 and ES384 keys made here, paged and
incremental pulls with their mapping, Retry-After, refused URLs and keys, bearer mode, and pushes back."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.task import Task
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import plugins.ehr_fhir as ehr_fhir
from plugin_sdk import (
    HOOK_NAMES,
    AddObservation,
    OutboundRefused,
    PullBatch,
    RecordCondition,
    RecordEncounter,
    UpsertPatient,
)
from plugin_sdk.payloads import CarePlanPayload, Identifier, PatientRef, TaskPayload
from plugin_sdk.testing import ConfigRefused, FakeClock, PluginHarness
from plugins.ehr_fhir import auth
from plugins.ehr_fhir.auth import TokenError
from plugins.ehr_fhir.transport import FhirError, RetryLater
from plugins.ehr_fhir.watermark import Watermark
from tests.fhir_validate import valid
from tests.plugins.fhir_server import ENTERPRISE_SYSTEM, MRN_SYSTEM, PATIENT_COUNT, FhirServer

LOOPBACK = ("127.0.0.0/8",)
CLIENT_ID = "carehub-riverside"
Jwks = dict[str, Any]


def jwks_pair(kind: str, kid: str) -> tuple[Jwks, Jwks]:
    """A fresh key as (private JWKS for the plugin, public JWKS for the EHR's registration)."""
    if kind == "RS384":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_jwk, public_jwk = (
            RSAAlgorithm.to_jwk(private, as_dict=True),
            RSAAlgorithm.to_jwk(private.public_key(), as_dict=True),
        )
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        private_jwk, public_jwk = (
            ECAlgorithm.to_jwk(key, as_dict=True),
            ECAlgorithm.to_jwk(key.public_key(), as_dict=True),
        )
    extra = {"kid": kid, "alg": kind, "use": "sig"}
    return {"keys": [{**private_jwk, **extra}]}, {"keys": [{**public_jwk, **extra}]}


@pytest.fixture(scope="module")
def rs384() -> tuple[Jwks, Jwks]:
    return jwks_pair("RS384", "rsa-2026")


@pytest.fixture(scope="module")
def es384() -> tuple[Jwks, Jwks]:
    return jwks_pair("ES384", "ec-2026")


@pytest.fixture(autouse=True)
def no_cached_tokens() -> Iterator[None]:
    auth.TOKENS.clear()
    yield
    auth.TOKENS.clear()


@pytest.fixture
def server(rs384: tuple[Jwks, Jwks], es384: tuple[Jwks, Jwks]) -> Iterator[FhirServer]:
    with FhirServer() as running:
        running.register_client(CLIENT_ID, {"keys": rs384[1]["keys"] + es384[1]["keys"]})
        running.add_bearer("static-test-token")
        yield running


def smart_config(server: FhirServer, jwks: Jwks, kid: str, alg: str = "RS384", **extra: Any) -> dict[str, Any]:
    return {
        "base_url": server.base_url,
        "auth": "smart_backend",
        "token_url": server.token_url,
        "client_id": CLIENT_ID,
        "private_jwks": jwks,
        "kid": kid,
        "alg": alg,
        "patient_identifier_system": MRN_SYSTEM,
        **extra,
    }


def harness(config: dict[str, Any], allow_networks: tuple[str, ...] = LOOPBACK) -> PluginHarness:
    # The clock starts now: a token server checks the assertion's exp against the real time.
    return PluginHarness(ehr_fhir, config=config, clock=FakeClock(datetime.now(UTC)), allow_networks=allow_networks)


@pytest.fixture
async def hub(server: FhirServer, rs384: tuple[Jwks, Jwks]) -> AsyncIterator[PluginHarness]:
    async with harness(smart_config(server, rs384[0], "rsa-2026", page_size=10)) as running:
        yield running


async def pull_all(hub: PluginHarness, hook: str, since: str | None = None) -> tuple[list[PullBatch], str | None]:
    batches: list[PullBatch] = []
    watermark = since
    for _ in range(30):
        batch = await hub.call(hook, since=watermark)
        batches.append(batch)
        watermark = batch.watermark
        if not batch.more:
            return batches, watermark
    raise AssertionError("the pull never finished")


def mrn(i: int) -> Identifier:
    return Identifier(system=MRN_SYSTEM, value=f"MRN{1000 + i}")


# -- manifest and configuration ----------------------------------------------------------------------------------


def test_manifest_is_sound() -> None:
    manifest = ehr_fhir.MANIFEST
    assert manifest.problems(set(HOOK_NAMES)) == [] and manifest.supports()
    assert manifest.sensitive_keys == ("private_jwks", "bearer_token")
    assert manifest.outbound_config_keys == ("base_url", "token_url")
    assert set(manifest.data_categories) == {"demographics", "clinical_results", "care_plan", "tasks_appointments"}


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"base_url": "https://ehr.example.org/fhir", "auth": "smart_backend", "client_id": "c",
          "private_jwks": {"keys": [{"kty": "RSA"}]}}, "token_url"),
        ({"base_url": "https://ehr.example.org/fhir", "auth": "bearer"}, "bearer_token"),
        ({"base_url": "ftp://ehr.example.org/fhir", "auth": "bearer", "bearer_token": "t"}, "base_url"),
        ({"base_url": "https://ehr.example.org/fhir", "auth": "basic", "bearer_token": "t"}, "auth"),
        ({"base_url": "https://ehr.example.org/fhir", "auth": "bearer", "bearer_token": "t", "proxy": "x"}, "proxy"),
        ({"base_url": "https://ehr.example.org", "auth": "bearer", "bearer_token": "t", "sync_interval_minutes": 0},
         "sync_interval_minutes"),
        ({"base_url": "https://ehr.example.org", "auth": "smart_backend", "token_url": "https://ehr.example.org/t",
          "client_id": "c", "private_jwks": {"keys": [{"kty": "RSA"}]}, "alg": "RS256"}, "alg"),
        ({"auth": "bearer", "bearer_token": "t"}, "base_url"),
    ],
)  # fmt: skip
def test_a_wrong_configuration_is_refused_at_its_path(config: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(ehr_fhir, config=config)
    assert path in [p.path for p in refused.value.problems], refused.value


def test_the_server_serves_valid_r4(server: FhirServer) -> None:
    valid(server.capability())
    for resources in server.resources.values():
        for resource in resources.values():
            valid(resource)
    answer = server.search("Encounter", {"_count": ["4"], "_include": ["Encounter:subject"]})
    assert answer.body is not None
    valid(answer.body)


# -- pulls -------------------------------------------------------------------------------------------------------


async def test_patients_are_imported_across_pages_with_an_rs384_assertion(
    hub: PluginHarness, server: FhirServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="carehub.plugin.ehr_fhir")
    batches, watermark = await pull_all(hub, "carehub_ehr_pull_patients")

    assert [b.more for b in batches] == [True, True, False]
    assert json.loads(batches[0].watermark or "")["next"].startswith(server.base_url + "/_page?token=")
    assert set(json.loads(watermark or "")) == {"v", "since"}
    upserts = [e for e in hub.effects if isinstance(e, UpsertPatient)]
    assert len(upserts) == len(hub.effects) == PATIENT_COUNT - 1  # p30 has no identifiers
    assert "1 patient without identifiers" in caplog.text
    first = upserts[0].patient
    assert first.identifiers == (mrn(1), Identifier(system=ENTERPRISE_SYSTEM, value="E700001"))  # MRN first
    assert (first.given_name, first.family_name, first.birth_date) == ("Ana", "Souza", date(1941, 2, 2))
    assert (first.sex, first.phone, first.email) == ("male", "+15550200001", "ana.souza@mail.example")
    assert first.address == {"line": "1 Harbor St, Apt 4", "city": "Harbor", "state": "ME", "postal_code": "04101",
                             "country": "US"}  # fmt: skip
    assert first.language == "es"
    assert first.active and not upserts[28].patient.active  # p29
    # One token for the whole run; the first search has no _lastUpdated filter.
    assert len(server.token_requests) == 1
    gets = server.paths()
    assert gets[0] == "/fhir/Patient?_count=10&_sort=_lastUpdated"
    assert all(path.startswith("/fhir/_page?token=") for path in gets[1:])


async def test_an_es384_assertion_is_accepted_and_each_assertion_is_fresh(
    server: FhirServer, es384: tuple[Jwks, Jwks]
) -> None:
    async with harness(smart_config(server, es384[0], "ec-2026", alg="ES384")) as hub:
        batch = await hub.call("carehub_ehr_pull_patients", since=None)
        auth.TOKENS.clear()
        await hub.call("carehub_ehr_pull_patients", since=None)
    assert len(batch.effects) == PATIENT_COUNT - 1 and not batch.more  # page_size 100: one page
    assertions = [r["client_assertion"] for r in server.token_requests]  # as the server saw them
    headers = [jwt.get_unverified_header(a) for a in assertions]
    claims = [jwt.decode(a, options={"verify_signature": False}) for a in assertions]
    assert headers[0] == {"alg": "ES384", "kid": "ec-2026", "typ": "JWT"}
    assert claims[0]["iss"] == claims[0]["sub"] == CLIENT_ID and claims[0]["aud"] == server.token_url
    assert 0 < claims[0]["exp"] - time.time() <= 300
    assert claims[0]["jti"] != claims[1]["jti"]
    assert (
        server.token_requests[0]["scope"].split()
        == ehr_fhir.MANIFEST.config_schema["properties"]["scope"]["default"].split()
    )


async def test_encounters_are_mapped_with_their_patients(hub: PluginHarness, server: FhirServer) -> None:
    await pull_all(hub, "carehub_ehr_pull_encounters")
    encounters = {e.encounter.external_id: e.encounter for e in hub.effects if isinstance(e, RecordEncounter)}
    assert set(encounters) == {f"Encounter/e{n}" for n in (1, 2, 3, 4, 6, 7, 9)}  # e5 ambulatory, e8 no identifiers
    e1 = encounters["Encounter/e1"]
    assert (e1.kind, e1.status, e1.disposition, e1.location) == (
        "inpatient",
        "finished",
        "skilled_nursing",
        "4 West, Room 12",
    )
    assert e1.admitted_at == datetime(2026, 11, 1, 15, 0, tzinfo=UTC)
    assert e1.discharged_at == datetime(2026, 11, 4, 20, 30, tzinfo=UTC)
    assert {(c.system, c.code) for c in e1.diagnoses} == {
        ("http://hl7.org/fhir/sid/icd-10-cm", "I50.9"),
        ("http://snomed.info/sct", "84114007"),
    }
    assert e1.patient == PatientRef(identifiers=(mrn(1), Identifier(system=ENTERPRISE_SYSTEM, value="E700001")))
    kinds = {k: (e.kind, e.status, e.disposition) for k, e in encounters.items()}
    assert kinds["Encounter/e2"] == ("inpatient", "in-progress", None)
    assert kinds["Encounter/e3"] == ("emergency", "finished", "home")
    assert kinds["Encounter/e4"] == ("observation", "finished", "home_health")
    assert kinds["Encounter/e6"][2] == "rehabilitation" and kinds["Encounter/e7"][2] == "other"
    assert kinds["Encounter/e9"] == ("emergency", "in-progress", None)
    # Every record's patient is upserted before it, in the same batch; the patients came with _include.
    seen: set[tuple[Identifier, ...]] = set()
    for effect in hub.effects:
        if isinstance(effect, UpsertPatient):
            seen.add(effect.patient.identifiers)
        else:
            assert isinstance(effect, RecordEncounter) and effect.encounter.patient.identifiers in seen
    assert not [p for p in server.paths() if p.startswith("/fhir/Patient/")]


async def test_without_include_the_patients_are_read(hub: PluginHarness, server: FhirServer) -> None:
    server.include_supported = False
    await pull_all(hub, "carehub_ehr_pull_encounters")
    reads = [p for p in server.paths() if p.startswith("/fhir/Patient/")]
    assert sorted(reads) == sorted(f"/fhir/Patient/p{i}" for i in (1, 2, 3, 4, 5, 6, 7, PATIENT_COUNT, 8))
    assert len([e for e in hub.effects if isinstance(e, RecordEncounter)]) == 7


async def test_conditions_are_mapped(hub: PluginHarness) -> None:
    await pull_all(hub, "carehub_ehr_pull_conditions")
    conditions = {e.condition.external_id: e.condition for e in hub.effects if isinstance(e, RecordCondition)}
    assert set(conditions) == {"Condition/c1", "Condition/c2", "Condition/c3", "Condition/c6"}  # c4 error, c5 ETH
    c1, c3 = conditions["Condition/c1"], conditions["Condition/c3"]
    assert (c1.code.system, c1.code.code, c1.clinical_status) == ("http://snomed.info/sct", "84114007", "active")
    assert c1.onset == datetime(2024, 3, 1, tzinfo=UTC)
    assert conditions["Condition/c2"].code.code == "E11.9"
    assert (c3.clinical_status, c3.abatement) == ("resolved", datetime(2026, 9, 20, tzinfo=UTC))
    assert conditions["Condition/c6"].clinical_status == "remission"


async def test_observations_are_mapped(hub: PluginHarness) -> None:
    await pull_all(hub, "carehub_ehr_pull_observations")
    found = {e.observation.external_id: e.observation for e in hub.effects if isinstance(e, AddObservation)}
    assert "Observation/o9" not in found  # social history: not this plugin's
    shown = {
        k.removeprefix("Observation/"): (o.code.code, o.value, o.unit, o.reference_range, o.interpretation)
        for k, o in found.items()
    }
    assert shown == {
        "o1": ("2823-3", "6.8", "mmol/L", "3.5-5.1 mmol/L", "critical_high"),
        "o2": ("2951-2", "128", "mmol/L", "136-145 mmol/L", "low"),
        "o3": ("2345-7", "95", "mg/dL", "70-99 mg/dL", "normal"),
        "o4": ("718-7", "5.9", "g/dL", "12.0-16.0 g/dL", "critical_low"),
        "o5": ("10839-9", "<0.01", "ng/mL", "<0.04 ng/mL", "normal"),
        "o6": ("94500-6", "Not detected", None, None, "normal"),
        "o7": ("8867-4", "88", "beats/minute", None, "normal"),
        "o8": ("85354-9", "142/91", "mm[Hg]", None, "high"),
        "o10": ("600-7", "No growth at 48 hours", None, None, "normal"),
        "o11": ("6690-2", "52.3", "10*3/uL", "4.5-11.0 10*3/uL", "critical"),
        "o12": ("2160-0", "1.9", "mg/dL", "0.6-1.2 mg/dL", "high"),
    }
    o1 = found["Observation/o1"]
    assert (o1.code.system, o1.status, o1.category) == ("http://loinc.org", "final", "laboratory")
    assert o1.effective_at == datetime(2026, 11, 2, 12, 1, tzinfo=UTC)
    assert found["Observation/o7"].category == "vital-signs"
    assert found["Observation/o10"].status == "preliminary" and found["Observation/o12"].status == "corrected"


async def test_an_incremental_pull_returns_only_what_changed(hub: PluginHarness, server: FhirServer) -> None:
    _, watermark = await pull_all(hub, "carehub_ehr_pull_patients")
    hub.effects.clear()
    server.touch("Patient/p7", name=[{"use": "official", "family": "Pereira-Lima", "given": ["Gustavo"]}])

    batch = await hub.call("carehub_ehr_pull_patients", since=watermark)

    assert not batch.more
    assert [e.patient.family_name for e in batch.effects if isinstance(e, UpsertPatient)] == ["Pereira-Lima"]
    assert "_lastUpdated=gt" in server.paths()[-1]
    # Next time: at most the overlap's repeat of the same patient, nothing else.
    again = await hub.call("carehub_ehr_pull_patients", since=batch.watermark)
    assert {e.patient.identifiers[0] for e in again.effects if isinstance(e, UpsertPatient)} <= {mrn(7)}


async def test_what_changes_during_a_run_is_pulled_by_the_next(hub: PluginHarness, server: FhirServer) -> None:
    first = await hub.call("carehub_ehr_pull_patients", since=None)
    server.touch("Patient/p3", gender="female")  # on the page already read
    server.touch("Patient/p25", gender="female")  # on a page to come: the run's snapshot has its old version
    _, watermark = await pull_all(hub, "carehub_ehr_pull_patients", first.watermark)
    hub.effects.clear()

    _, _ = await pull_all(hub, "carehub_ehr_pull_patients", watermark)

    changed = {e.patient.identifiers[0]: e.patient.sex for e in hub.effects if isinstance(e, UpsertPatient)}
    assert changed == {mrn(3): "female", mrn(25): "female"}


async def test_retry_after_is_honoured(server: FhirServer) -> None:
    async with harness({"base_url": server.base_url, "auth": "bearer", "bearer_token": "static-test-token"}) as hub:
        soon = datetime.now(UTC) + timedelta(seconds=1)
        server.fail_next(1, 429, "1")
        server.fail_next(1, 503, format_datetime(soon, usegmt=True))
        started = time.monotonic()
        batch = await hub.call("carehub_ehr_pull_conditions", since=None)
    assert time.monotonic() - started >= 1.0
    assert len(server.paths()) == 3 and batch.effects


async def test_a_busy_server_fails_the_call_and_the_same_watermark_works_later(
    hub: PluginHarness, server: FhirServer
) -> None:
    first = await hub.call("carehub_ehr_pull_patients", since=None)
    server.fail_next(1, 429, "120")  # longer than a hook may wait: not waited for at all
    with pytest.raises(RetryLater, match="retried later"):
        await hub.call("carehub_ehr_pull_patients", since=first.watermark)
    server.fail_next(3, 503, "0")
    with pytest.raises(RetryLater, match="3 time"):
        await hub.call("carehub_ehr_pull_patients", since=first.watermark)

    second = await hub.call("carehub_ehr_pull_patients", since=first.watermark)
    assert second.more and len(second.effects) == 10


async def test_a_refused_cached_token_is_replaced_once(hub: PluginHarness, server: FhirServer) -> None:
    server.token_lifetime = 10
    first = await hub.call("carehub_ehr_pull_patients", since=None)
    server.revoke_tokens()
    second = await hub.call("carehub_ehr_pull_patients", since=first.watermark)
    assert len(second.effects) == 10 and len(server.token_requests) == 2
    # A token past its useful life is not even tried: a new one is asked for.
    hub.clock.advance(seconds=9)  # 10 s tokens are used for 8 s
    await hub.call("carehub_ehr_pull_patients", since=second.watermark)
    assert len(server.token_requests) == 3


async def test_a_key_the_ehr_does_not_know_is_refused(server: FhirServer) -> None:
    stranger, _ = jwks_pair("RS384", "rsa-2026")  # the registered kid, another key
    async with harness(smart_config(server, stranger, "rsa-2026")) as hub:
        with pytest.raises(TokenError, match=r"refused client 'carehub-riverside' \(HTTP 401, invalid_client"):
            await hub.call("carehub_ehr_pull_patients", since=None)
        health = await hub.call("carehub_health_check")
    assert not health.ok and "invalid_client" in (health.detail or "")
    assert server.paths() == []  # nothing but the token endpoint was called


async def test_bearer_mode(server: FhirServer) -> None:
    config = {"base_url": server.base_url, "auth": "bearer", "bearer_token": "static-test-token", "page_size": 5}
    async with harness(config) as hub:
        batch = await hub.call("carehub_ehr_pull_observations", since=None)
        assert batch.more and batch.effects
    assert server.token_requests == []
    async with harness({**config, "bearer_token": "wrong"}) as hub:
        with pytest.raises(FhirError, match="refused carehub's access token"):
            await hub.call("carehub_ehr_pull_observations", since=None)


async def test_health_check(hub: PluginHarness, server: FhirServer) -> None:
    health = await hub.call("carehub_health_check")
    assert health.ok and health.detail == "FHIR 4.0.1 (carehub test FHIR server)"
    assert "/fhir/Patient?_summary=count" in server.paths()


# -- refused calls -----------------------------------------------------------------------------------------------


async def test_loopback_is_refused_without_allow_networks(server: FhirServer, rs384: tuple[Jwks, Jwks]) -> None:
    async with harness(smart_config(server, rs384[0], "rsa-2026"), allow_networks=()) as hub:
        with pytest.raises(OutboundRefused, match="loopback"):
            await hub.call("carehub_ehr_pull_patients", since=None)
    assert server.requests == []


@pytest.mark.parametrize("origin", ["http://attacker.example", "http://127.0.0.1:9"])
async def test_a_next_link_to_another_origin_is_refused(hub: PluginHarness, server: FhirServer, origin: str) -> None:
    server.next_origin = origin
    with pytest.raises(OutboundRefused, match="outside the base URL's origin"):
        await hub.call("carehub_ehr_pull_patients", since=None)
    assert hub.effects == []
    # A watermark naming another origin is not followed either.
    forged = Watermark(run=datetime.now(UTC), next=f"{origin}/fhir/_page?token=x").encode()
    with pytest.raises(OutboundRefused):
        await hub.call("carehub_ehr_pull_patients", since=forged)
    assert len(server.paths()) == 1


async def test_an_expired_page_starts_the_run_again(hub: PluginHarness, server: FhirServer) -> None:
    stale = Watermark(run=datetime.now(UTC), next=f"{server.base_url}/_page?token=gone").encode()
    batch = await hub.call("carehub_ehr_pull_patients", since=stale)
    assert batch.more and len(batch.effects) == 10
    assert server.paths()[-1] == "/fhir/Patient?_count=10&_sort=_lastUpdated"


# -- pushes ------------------------------------------------------------------------------------------------------


async def test_a_care_plan_is_created_then_updated(hub: PluginHarness, server: FhirServer) -> None:
    plan = CarePlanPayload(
        id="6f1c1c1e-0001-4000-8000-000000000001",
        patient=PatientRef(identifiers=(Identifier(system="urn:carehub:other", value="x"), mrn(1))),
        title="Heart failure: after discharge",
        status="active",
        period_start=date(2026, 11, 5),
        period_end=date(2027, 2, 5),
        goals=("Weight within 2 kg of dry weight", "No readmission within 30 days"),
        activities=("Daily weight log", "Cardiology follow-up within 7 days"),
        updated_at=datetime(2026, 11, 5, 9, 0, tzinfo=UTC),
    )
    created = await hub.call("carehub_ehr_push_care_plan", care_plan=plan)
    updated = await hub.call("carehub_ehr_push_care_plan", care_plan=msgspec_replace(plan, status="completed"))

    assert created.external_id == updated.external_id == "CarePlan/careplan-1"
    assert created.location == f"{server.base_url}/CarePlan/careplan-1/_history/1"
    assert updated.location == f"{server.base_url}/CarePlan/careplan-1/_history/2"
    assert len(server.resources["CarePlan"]) == 1
    sent = server.pushed[0]
    CarePlan.model_validate(sent)  # R4 (R4B's CarePlan is R4's)
    valid(server.resources["CarePlan"]["careplan-1"])  # as stored, with its id
    assert sent["identifier"] == [{"system": "urn:carehub:careplan", "value": plan.id}]
    assert (sent["status"], sent["intent"], sent["subject"]) == ("active", "plan", {"reference": "Patient/p1"})
    assert sent["period"] == {"start": "2026-11-05", "end": "2027-02-05"}
    assert [g["description"]["text"] for g in sent["contained"]] == list(plan.goals)
    assert [a["detail"]["description"] for a in sent["activity"]] == list(plan.activities)
    assert server.pushed[1]["status"] == "completed"
    assert "/fhir/Patient?identifier=" in " ".join(server.paths())


async def test_a_task_is_pushed(hub: PluginHarness, server: FhirServer) -> None:
    task = TaskPayload(
        id="task-42",
        patient=PatientRef(identifiers=(mrn(2),)),
        title="Call the patient about the sodium result",
        description="Sodium 128 mmol/L on 5 Nov; recheck within 48 h",
        status="in_progress",
        priority="urgent",
        due_at=datetime(2026, 11, 7, 17, 0, tzinfo=UTC),
        updated_at=datetime(2026, 11, 5, 9, 0, tzinfo=UTC),
    )
    result = await hub.call("carehub_ehr_push_task", task=task)
    unassigned = await hub.call("carehub_ehr_push_task", task=msgspec_replace(task, id="task-43", patient=None))

    assert result.external_id == "Task/task-1" and unassigned.external_id == "Task/task-2"
    sent = server.pushed[0]
    Task.model_validate(sent)
    assert (sent["status"], sent["intent"], sent["priority"]) == ("in-progress", "order", "urgent")
    assert sent["for"] == {"reference": "Patient/p2"} and "for" not in server.pushed[1]
    assert sent["restriction"] == {"period": {"end": "2026-11-07T17:00:00.000Z"}}
    assert sent["description"] == task.title and sent["note"] == [{"text": task.description}]


async def test_a_push_for_a_patient_the_ehr_lacks_fails(hub: PluginHarness, server: FhirServer) -> None:
    task = TaskPayload(
        id="task-9",
        patient=PatientRef(identifiers=(Identifier(system=MRN_SYSTEM, value="NOPE"),)),
        title="Follow up",
        status="requested",
        updated_at=datetime(2026, 11, 5, 9, 0, tzinfo=UTC),
    )
    with pytest.raises(FhirError, match="no patient in the EHR"):
        await hub.call("carehub_ehr_push_task", task=task)
    assert server.pushed == []


def msgspec_replace(value: Any, **changes: Any) -> Any:
    return msgspec.structs.replace(value, **changes)
