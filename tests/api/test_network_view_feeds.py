"""Clinical records from EHR feeds (encounters, conditions, observations) in the network view.

Hospital A's feed reports, for one person who also has a record at Clinic B: heart failure (a condition, an
inpatient stay with that diagnosis and a potassium result), opioid dependence labelled substance use disorder
(a condition, an emergency visit whose only label is that diagnosis, a drug screen), and a psychiatric stay
labelled behavioural health whose diagnoses include the opioid dependence. They are applied by the plugin host
as a feed's would be; Clinic B's clinician looks through the network view.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from core.db import make_engine, make_sessionmaker
from core.plugins.effects import Applier
from core.settings import Settings
from plugin_sdk import Manifest
from plugin_sdk import effects as fx
from plugin_sdk.payloads import Coding, ConditionRecord, EncounterRecord, Identifier, ObservationRecord, PatientRef
from tenants.context import tenant_context
from tests.api.test_consent_sharing import consent
from tests.consent_world import Net, build_net, person_in

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
HEART_FAILURE = Coding(system=ICD10, code="I50.9", display="Heart failure")
OPIOIDS = Coding(system=ICD10, code="F11.20", display="Opioid dependence")
DEPRESSION = Coding(system=ICD10, code="F32.9", display="Major depressive disorder")
FEED = Manifest(
    name="ehr_test",
    version="1",
    sdk=">=1.0,<2",
    title="t",
    data_categories=("demographics", "clinical_results", "behavioral_health", "substance_use_disorder"),
)
NOW = datetime.now(UTC) - timedelta(hours=1)
# What A holds besides the demographics: 2 conditions, 3 encounters, 2 observations.
FEED_ITEMS = 7
# The opioid dependence, the emergency visit it is the diagnosis of, and the drug screen: (type, code).
PART2_RECORDS = {("condition", "F11.20"), ("encounter", "F11.20"), ("lab_result", "19659-8")}


@pytest.fixture
async def net(settings: Settings) -> Net:
    return await build_net(settings)


def _feed(ref: PatientRef) -> list[fx.Effect]:
    def condition(external_id: str, code: Coding, label: Any = None) -> fx.Effect:
        return fx.RecordCondition(
            condition=ConditionRecord(external_id=external_id, patient=ref, code=code, data_category=label)
        )

    def encounter(external_id: str, kind: Any, diagnoses: tuple[Coding, ...], label: Any = None) -> fx.Effect:
        return fx.RecordEncounter(
            encounter=EncounterRecord(
                external_id=external_id,
                patient=ref,
                kind=kind,
                status="finished",
                admitted_at=NOW - timedelta(days=3),
                discharged_at=NOW - timedelta(days=1),
                disposition="home_health",
                diagnoses=diagnoses,
                location="Ward 4B",
                data_category=label,
            )
        )

    def observation(external_id: str, code: Coding, value: str, label: Any = None) -> fx.Effect:
        return fx.AddObservation(
            observation=ObservationRecord(
                external_id=external_id,
                patient=ref,
                code=code,
                value=value,
                interpretation="high",
                effective_at=NOW,
                data_category=label,
            )
        )

    return [
        condition("C-1", HEART_FAILURE),
        condition("C-2", OPIOIDS, "substance_use_disorder"),
        encounter("V-1", "inpatient", (HEART_FAILURE,)),
        encounter("V-2", "emergency", (OPIOIDS,)),
        encounter("V-3", "inpatient", (DEPRESSION, OPIOIDS), "behavioral_health"),
        observation("O-1", Coding(system="http://loinc.org", code="2823-3", display="Potassium"), "5.4"),
        observation(
            "O-2",
            Coding(system="http://loinc.org", code="19659-8", display="Drug screen"),
            "positive",
            "substance_use_disorder",
        ),
    ]


async def person_with_feed(
    client: AsyncTestClient[Any], net: Net, settings: Settings, *, cancelled: bool = False
) -> dict[str, str]:
    """The person in Hospital A and Clinic B (tenant key -> patient id), A's feed applied; with ``cancelled``,
    also an admission the feed then cancelled (entered in error)."""
    shared = f"NET-{uuid.uuid4().hex[:10]}"
    ids = await person_in(client, net, "ab", network_id=shared)
    ref = PatientRef(identifiers=(Identifier(system="urn:carehub:network-id", value=shared),))
    effects = _feed(ref)
    if cancelled:
        error = EncounterRecord(external_id="V-9", patient=ref, kind="emergency", status="cancelled", admitted_at=NOW)
        effects.append(fx.RecordEncounter(encounter=error))
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(net.tenants["a"]):
            async with make_sessionmaker(engine)() as session, session.begin():
                await Applier(session, FEED).apply_all(effects)
    finally:
        await engine.dispose()
    return ids


async def _view(client: AsyncTestClient[Any], net: Net, who: str, patient: str) -> Any:
    response = await client.get(
        f"/api/v1/patients/{patient}/network-view",
        params={"purpose": "treatment"},
        headers=await net.headers(client, who),
    )
    assert response.status_code == 200, response.text
    return response.json()


def _from_a(view: Any) -> dict[str, dict[str, Any]]:
    """Hospital A's categories in the view: category -> the category as answered (basis, ids, items)."""
    return {
        c["category"]: c
        for s in view["sources"]
        if not s["own"] and s["tenant_name"] == "Hospital A"
        for c in s["categories"]
    }


def _codes(category: dict[str, Any]) -> set[tuple[str, str]]:
    """(type, code) of each item: a condition's or result's code, an encounter's diagnoses joined."""
    return {
        (i["type"], i.get("code") or "+".join(d["code"] for d in i.get("diagnoses", []))) for i in category["items"]
    }


async def _consent(client: AsyncTestClient[Any], net: Net, patient_a: str, categories: list[str]) -> str:
    recorded = await client.post(
        f"/api/v1/patients/{patient_a}/consents",
        json=consent(str(net.tenants["b"]), categories),
        headers=await net.headers(client, "admin.a"),
    )
    assert recorded.status_code == 201, recorded.text
    return str(recorded.json()["id"])


async def test_without_consent_nothing_of_the_feed_crosses(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_with_feed(client, net, settings)
    view = await _view(client, net, "doc.b", ids["b"])
    assert _from_a(view) == {}
    assert view["withheld"]["items"] == 1 + FEED_ITEMS  # A's demographics and every feed record
    text = str(view)
    assert "I50.9" not in text and "Potassium" not in text and "Ward 4B" not in text and "F11.20" not in text


async def test_a_clinical_consent_shows_the_unlabelled_records_with_source_and_basis(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_with_feed(client, net, settings)
    consent_id = await _consent(client, net, ids["a"], ["clinical_results"])
    view = await _view(client, net, "doc.b", ids["b"])
    shared = _from_a(view)
    assert list(shared) == ["clinical_results"]
    clinical = shared["clinical_results"]
    assert (clinical["basis"], clinical["consent_id"]) == ("consent", consent_id)
    assert _codes(clinical) == {("condition", "I50.9"), ("encounter", "I50.9"), ("lab_result", "2823-3")}
    stay = next(i for i in clinical["items"] if i["type"] == "encounter")
    assert (stay["kind"], stay["status"], stay["disposition"], stay["location"]) == (
        "inpatient",
        "finished",
        "home_health",
        "Ward 4B",
    )
    assert stay["admitted_at"] and stay["discharged_at"] and stay["feed"] == "ehr_test"
    assert stay["diagnoses"] == [{"system": ICD10, "code": "I50.9", "display": "Heart failure"}]
    potassium = next(i for i in clinical["items"] if i["type"] == "lab_result")
    assert (potassium["flag"], potassium["interpretation"], potassium["feed"]) == ("high", "abnormal", "ehr_test")
    # The opioid dependence is nowhere: not its condition, not the visit it is the diagnosis of, not the screen.
    assert "F11.20" not in str(view) and "Drug screen" not in str(view)
    assert view["withheld"]["items"] == 1 + 4

    # Both sides audited, with the number of records shared.
    inbound = await client.get(
        "/api/v1/access-report", params={"limit": 100}, headers=await net.headers(client, "privacy.a")
    )
    assert inbound.status_code == 200, inbound.text
    rows = [r for r in inbound.json()["items"] if r["category"] == "clinical_results"]
    assert [(r["outcome"], r["items"], r["consent_id"]) for r in rows] == [("success", 3, consent_id)]
    outbound = await client.get(
        "/api/v1/access-report", params={"limit": 100}, headers=await net.headers(client, "admin.b")
    )
    sent = [r for r in outbound.json()["items"] if r["direction"] == "outbound"]
    assert [(r["category"], r["items"]) for r in sent] == [("clinical_results", 3)]


async def test_labelled_records_need_the_matching_consent(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_with_feed(client, net, settings)
    await _consent(client, net, ids["a"], ["clinical_results"])
    # Behavioural health alone: the psychiatric stay also names the opioid dependence, so it stays withheld.
    await _consent(client, net, ids["a"], ["behavioral_health"])
    shared = _from_a(await _view(client, net, "doc.b", ids["b"]))
    assert set(shared) == {"clinical_results"} and "F11.20" not in str(shared)

    # A consent naming Clinic B for Part 2 records: the condition, the visit and the screen, and (with the
    # behavioural health consent) the psychiatric stay, listed under its most protective label.
    await _consent(client, net, ids["a"], ["substance_use_disorder"])
    view = await _view(client, net, "doc.b", ids["b"])
    shared = _from_a(view)
    assert _codes(shared["substance_use_disorder"]) == PART2_RECORDS | {("encounter", "F32.9+F11.20")}
    assert "behavioral_health" not in shared and view["withheld"]["items"] == 1


async def test_part2_without_behavioural_consent_keeps_the_psychiatric_stay(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_with_feed(client, net, settings)
    await _consent(client, net, ids["a"], ["substance_use_disorder"])
    view = await _view(client, net, "doc.b", ids["b"])
    shared = _from_a(view)
    assert _codes(shared["substance_use_disorder"]) == PART2_RECORDS
    assert "F32.9" not in str(view)
    assert view["withheld"]["items"] == 1 + 3 + 1  # demographics, the unlabelled three, the psychiatric stay


async def test_break_the_glass_opens_the_unlabelled_records_only_and_is_audited(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_with_feed(client, net, settings)
    opened = await client.post(
        f"/api/v1/patients/{ids['b']}/break-glass",
        json={"reason": "unconscious in the ED, need recent stays"},
        headers=await net.headers(client, "doc.b"),
    )
    assert opened.status_code == 201, opened.text
    grant = opened.json()["id"]
    view = await _view(client, net, "doc.b", ids["b"])
    shared = _from_a(view)
    assert set(shared) == {"demographics", "clinical_results"}
    assert {(c["basis"], c["break_glass_id"]) for c in shared.values()} == {("break_the_glass", grant)}
    assert _codes(shared["clinical_results"]) == {
        ("condition", "I50.9"),
        ("encounter", "I50.9"),
        ("lab_result", "2823-3"),
    }
    assert "F11.20" not in str(view) and "F32.9" not in str(view)
    rows = await client.get(
        "/api/v1/access-report", params={"limit": 100}, headers=await net.headers(client, "privacy.a")
    )
    glass = [r for r in rows.json()["items"] if r["category"] == "clinical_results"]
    assert [(r["basis"], r["flagged"], r["items"], r["break_glass_id"]) for r in glass] == [
        ("break_the_glass", True, 3, grant)
    ]


async def test_another_tenants_clinical_records_answer_404_like_missing_ones(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_with_feed(client, net, settings)
    doc_a, doc_b = await net.headers(client, "doc.a"), await net.headers(client, "doc.b")
    for listing in ("encounters", "conditions", "results"):
        # Hospital A's own staff read every record, labelled or not: in a tenant, roles decide.
        own = await client.get(f"/api/v1/patients/{ids['a']}/{listing}", headers=doc_a)
        assert own.status_code == 200, own.text
        body = own.json()
        assert len(body if isinstance(body, list) else body["items"]) in (2, 3)
        foreign = await client.get(f"/api/v1/patients/{ids['a']}/{listing}", headers=doc_b)
        missing = await client.get(f"/api/v1/patients/{uuid.uuid4()}/{listing}", headers=doc_b)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["detail"] == missing.json()["detail"]
    result_id = (await client.get(f"/api/v1/patients/{ids['a']}/results", headers=doc_a)).json()["items"][0]["id"]
    foreign = await client.get(f"/api/v1/results/{result_id}", headers=doc_b)
    missing = await client.get(f"/api/v1/results/{uuid.uuid4()}", headers=doc_b)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]
