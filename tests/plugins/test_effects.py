"""The host applies a plugin's effects in the tenant's transaction: records keyed by (plugin, external id) so a
repeat changes nothing twice, a discharge and a critical result raising the events the rules act on, a merge that
moves records, and a batch refused whole (naming the effect) when one effect is wrong."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from core.audit import AuditEvent
from core.db import make_engine, make_sessionmaker
from core.encounters.models import Encounter
from core.outbox import OutboxEvent
from core.patients.models import Patient
from core.plugins.effects import Applier, EffectRejected
from core.results.models import LabResult
from core.settings import Settings
from core.tasks.models import Task
from plugin_sdk import Manifest
from plugin_sdk import effects as fx
from plugin_sdk.payloads import (
    Coding,
    ConditionRecord,
    EncounterRecord,
    Identifier,
    ObservationRecord,
    PatientRecord,
    PatientRef,
)
from tenants.context import tenant_context
from tests.conftest import World

MRN = Identifier(system="urn:oid:1.2.3.4.5|mrn", value="FEED-1001")
OTHER = Identifier(system="urn:oid:1.2.3.4.5|mrn", value="FEED-2002")
REF = PatientRef(identifiers=(MRN,))
MANIFEST = Manifest(
    name="feed_test",
    version="1",
    sdk=">=1.0,<2",
    title="t",
    data_categories=("demographics", "clinical_results", "tasks_appointments"),
)
NOW = datetime.now(UTC) - timedelta(hours=1)


def patient(ident: Identifier = MRN, given: str = "Robin") -> fx.UpsertPatient:
    return fx.UpsertPatient(
        patient=PatientRecord(
            identifiers=(ident,), given_name=given, family_name="Feedson", birth_date=date(1970, 3, 4)
        )
    )


def critical_potassium() -> fx.AddObservation:
    return fx.AddObservation(
        observation=ObservationRecord(
            external_id="OBR-77/1",
            patient=REF,
            code=Coding(system="http://loinc.org", code="2823-3", display="Potassium"),
            value="6.9",
            unit="mmol/L",
            reference_range="3.5-5.1",
            interpretation="critical_high",
            effective_at=NOW,
        )
    )


def discharge() -> fx.RecordEncounter:
    return fx.RecordEncounter(
        encounter=EncounterRecord(
            external_id="V-1",
            patient=REF,
            kind="inpatient",
            status="finished",
            admitted_at=NOW - timedelta(days=3),
            discharged_at=NOW,
            disposition="home",
            diagnoses=(Coding(system="http://hl7.org/fhir/sid/icd-10-cm", code="I50.9"),),
        )
    )


async def _apply(settings: Settings, world: World, effects: list[fx.Effect]) -> int:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(world.tenant_a):
            async with make_sessionmaker(engine)() as session, session.begin():
                return await Applier(session, MANIFEST).apply_all(effects)
    finally:
        await engine.dispose()


async def _count(settings: Settings, world: World, query: object) -> int:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(world.tenant_a):
            async with make_sessionmaker(engine)() as session:
                return int(await session.scalar(query) or 0)  # type: ignore[call-overload]
    finally:
        await engine.dispose()


async def test_a_repeated_batch_changes_nothing_twice(settings: Settings, world: World) -> None:
    batch: list[fx.Effect] = [patient(), critical_potassium(), discharge()]
    assert await _apply(settings, world, batch) == 3
    assert await _apply(settings, world, batch) == 3
    assert await _count(settings, world, select(func.count()).select_from(Patient)) == 1
    assert await _count(settings, world, select(func.count()).select_from(LabResult)) == 1
    assert await _count(settings, world, select(func.count()).select_from(Encounter)) == 1
    events = select(func.count()).select_from(OutboxEvent)
    assert await _count(settings, world, events.where(OutboxEvent.topic == "lab_result.critical_received")) == 1
    assert await _count(settings, world, events.where(OutboxEvent.topic == "encounter.discharged")) == 1
    flagged = (
        select(func.count())
        .select_from(LabResult)
        .where(
            LabResult.interpretation == "critical", LabResult.flag == "critical_high", LabResult.source == "feed_test"
        )
    )
    assert await _count(settings, world, flagged) == 1
    by_plugin = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "result.record")
    assert await _count(settings, world, by_plugin) == 2  # each application audited, as the plugin


async def test_a_batch_with_one_wrong_effect_is_refused_whole(settings: Settings, world: World) -> None:
    stranger = fx.AddObservation(
        observation=ObservationRecord(
            external_id="X",
            patient=PatientRef(identifiers=(OTHER,)),
            code=Coding(system="http://loinc.org", code="1"),
            value="1",
            effective_at=NOW,
        )
    )
    with pytest.raises(EffectRejected) as refused:
        await _apply(settings, world, [patient(), stranger])
    assert refused.value.index == 1 and "FEED-2002" in refused.value.reason
    assert await _count(settings, world, select(func.count()).select_from(Patient)) == 0  # rolled back
    undeclared = patient()
    narrow = Manifest(name="feed_test", version="1", sdk=">=1.0", title="t", data_categories=("clinical_results",))
    engine = make_engine(settings.database_url)
    with tenant_context(world.tenant_a), pytest.raises(EffectRejected, match="demographics"):
        async with make_sessionmaker(engine)() as session, session.begin():
            await Applier(session, narrow).apply_all([undeclared])
    await engine.dispose()


async def test_a_merge_moves_the_records_and_a_task_is_made_once(settings: Settings, world: World) -> None:
    await _apply(settings, world, [patient(MRN), patient(OTHER, given="Robyn"), discharge()])
    merge = fx.MergePatient(surviving=PatientRef(identifiers=(OTHER,)), merged=REF)
    await _apply(settings, world, [merge])
    engine = make_engine(settings.database_url)
    with tenant_context(world.tenant_a):
        async with make_sessionmaker(engine)() as session:
            survivor = await session.scalar(select(Patient).where(Patient.mrn == "FEED-2002"))
            merged = await session.scalar(select(Patient).where(Patient.mrn == "FEED-1001"))
            assert survivor is not None and merged is not None and not merged.active
            assert {i.value for i in survivor.identifiers} == {"FEED-1001", "FEED-2002"}
            stay = await session.scalar(select(Encounter))
            assert stay is not None and stay.patient_id == survivor.id
    await engine.dispose()
    call = fx.CreateTask(patient=PatientRef(identifiers=(OTHER,)), title="Call about device alert", dedupe_key="r-9")
    await _apply(settings, world, [call])
    await _apply(settings, world, [call])
    made = select(func.count()).select_from(Task).where(Task.title == "Call about device alert")
    assert await _count(settings, world, made) == 1


async def test_what_a_feed_brought_is_readable_in_the_api(settings: Settings, world: World, client: object) -> None:
    from litestar.testing import AsyncTestClient

    from tests.conftest import login

    assert isinstance(client, AsyncTestClient)
    condition = fx.RecordCondition(
        condition=ConditionRecord(
            external_id="Condition/9",
            patient=REF,
            code=Coding(system="http://hl7.org/fhir/sid/icd-10-cm", code="E11.9", display="Type 2 diabetes"),
        )
    )
    await _apply(settings, world, [patient(), discharge(), condition, critical_potassium()])
    doctor = await login(client, "doc.a@test.example", "hospital-a")
    found = await client.get("/api/v1/patients?limit=5", headers=doctor)
    [row] = [p for p in found.json()["items"] if p["mrn"] == "FEED-1001"]
    conditions = (await client.get(f"/api/v1/patients/{row['id']}/conditions", headers=doctor)).json()
    assert [(c["code"], c["source"]) for c in conditions] == [("E11.9", "feed_test")]
    [stay] = (await client.get(f"/api/v1/patients/{row['id']}/encounters", headers=doctor)).json()
    assert stay["source"] == "feed_test" and stay["diagnoses"][0]["code"] == "I50.9" and stay["disposition"] == "home"
    results = (await client.get(f"/api/v1/patients/{row['id']}/results", headers=doctor)).json()["items"]
    assert results[0]["interpretation"] == "critical"
    # Another tenant: the same 404 as a patient that does not exist.
    other = await login(client, "doc.b@test.example", "hospital-b")
    assert (await client.get(f"/api/v1/patients/{row['id']}/conditions", headers=other)).status_code == 404


async def test_an_upsert_keeping_missing_fields_leaves_the_contact_details(settings: Settings, world: World) -> None:
    """An HL7 result's PID seldom repeats the phone and address: with keep_missing they stay; a FHIR Patient is
    the whole record, so without it what the record leaves out is cleared."""
    full = PatientRecord(
        identifiers=(MRN,),
        given_name="Robin",
        family_name="Feedson",
        birth_date=date(1970, 3, 4),
        phone="+15550100",
        address={"line": "1 Harbor St", "city": "Harbor"},
        language="es",
    )
    bare = PatientRecord(identifiers=(MRN,), given_name="Robin", family_name="Feedson", birth_date=date(1970, 3, 4))
    await _apply(settings, world, [fx.UpsertPatient(patient=full)])
    await _apply(settings, world, [fx.UpsertPatient(patient=bare, keep_missing=True)])
    kept = select(func.count()).select_from(Patient).where(Patient.phone == "+15550100", Patient.language == "es")
    assert await _count(settings, world, kept) == 1
    await _apply(settings, world, [fx.UpsertPatient(patient=bare)])
    cleared = select(func.count()).select_from(Patient).where(Patient.phone.is_(None), Patient.language.is_(None))
    assert await _count(settings, world, cleared) == 1
