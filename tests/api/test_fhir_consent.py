"""FHIR R4 Consent: carehub's consents both ways (checked with the R4 definitions), served at /fhir/Consent with
create and conditional create; errors name the FHIR path of the problem."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from litestar.testing import AsyncTestClient

from core.consent.models import Consent
from core.errors import InvalidInput
from core.fhir.consent import (
    ACT_CODE,
    ACT_REASON,
    DATA_CATEGORY,
    EXT_CONSENT_SOURCE,
    EXT_CONSENT_STATUS,
    GRANTEE_CLASS,
    PARTICIPATION_TYPE,
    consent_from_fhir,
    consent_to_fhir,
)
from core.settings import Settings
from tests.consent_world import Net, build_net, person_in
from tests.fhir_validate import valid

FHIR_JSON = "application/fhir+json"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
async def net(settings: Settings) -> Net:
    return await build_net(settings)


def fhir_consent(patient: str, grantee: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A Consent as an outside client would post it."""
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": "2026-01-01T00:00:00Z"},
            "actor": [
                {"role": {"coding": [{"system": PARTICIPATION_TYPE, "code": "IRCP"}]}, "reference": grantee},
            ],
            "purpose": [{"system": ACT_REASON, "code": "TREAT"}],
            "class": [{"system": DATA_CATEGORY, "code": "care_plan"}],
        },
    }
    resource.update(changes)
    return resource


def org(tenant_id: uuid.UUID) -> dict[str, Any]:
    return {"reference": f"Organization/{tenant_id}"}


def _local(url: str) -> str:
    return urlsplit(url).path


# --- mapping, both ways, without a database ------------------------------------------------------------------------


def test_consent_to_fhir_and_back() -> None:
    patient, grantee, recorder = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    consent = Consent(
        id=uuid.uuid4(),
        person_id=uuid.uuid4(),
        decision="permit",
        grantee_kind="tenant",
        grantee_tenant_id=grantee,
        categories=["care_plan", "substance_use_disorder"],
        purposes=["treatment", "care_coordination"],
        period_start=NOW,
        period_end=NOW + timedelta(days=365),
        status="active",
        source_kind="scanned_form",
        source_reference="scan://consent-forms/2026/0042.pdf",
        note="Signed at discharge",
        recorded_tenant_id=recorder,
        recorded_patient_id=patient,
        recorded_at=NOW,
        identifier_system="urn:example:forms",
        identifier_value="F-42",
    )
    resource = valid(consent_to_fhir(consent, patient, {grantee: "Clinic B"}, NOW))
    assert resource["status"] == "active" and resource["patient"] == {"reference": f"Patient/{patient}"}
    assert resource["organization"] == [{"reference": f"Organization/{recorder}"}]
    assert resource["scope"]["coding"][0]["code"] == "patient-privacy"
    assert resource["category"][0]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "59284-0",
        "display": "Patient consent",
    }
    assert resource["policyRule"]["coding"][0]["code"] == "OPTIN"
    assert resource["sourceAttachment"] == {"url": "scan://consent-forms/2026/0042.pdf"}
    provision = resource["provision"]
    assert provision["actor"][0]["reference"] == {"reference": f"Organization/{grantee}", "display": "Clinic B"}
    assert provision["actor"][0]["role"]["coding"][0]["code"] == "IRCP"
    assert [p["code"] for p in provision["purpose"]] == ["TREAT", "CAREMGT"]
    assert [c["code"] for c in provision["class"]] == ["care_plan", "substance_use_disorder"]
    assert provision["securityLabel"] == [{"system": ACT_CODE, "code": "42CFRPart2", "display": "42 CFR Part2"}]
    assert provision["period"] == {"start": "2026-03-02T09:30:00Z", "end": "2027-03-02T09:30:00Z"}

    patient_id, data = consent_from_fhir(resource)
    assert patient_id == patient
    assert (data.decision, data.grantee.kind, data.grantee.tenant_id) == ("permit", "tenant", grantee)
    assert (data.categories, data.purposes) == (
        ["care_plan", "substance_use_disorder"],
        ["treatment", "care_coordination"],
    )
    assert (data.period_start, data.period_end) == (NOW, NOW + timedelta(days=365))
    assert (data.source_kind, data.source_reference, data.note) == (
        "scanned_form",
        "scan://consent-forms/2026/0042.pdf",
        "Signed at discharge",
    )
    assert data.identifier is not None and (data.identifier.system, data.identifier.value) == (
        "urn:example:forms",
        "F-42",
    )

    # A class of tenants, a refusal, a revoked consent and a source that is not a URI.
    consent.grantee_kind, consent.grantee_tenant_id, consent.decision = "treating", None, "deny"
    consent.categories, consent.status, consent.source_reference = ["messages"], "revoked", "Paper form, cabinet 3"
    resource = valid(consent_to_fhir(consent, patient, {}, NOW))
    assert resource["status"] == "inactive" and resource["policyRule"]["coding"][0]["code"] == "OPTOUT"
    assert {"url": EXT_CONSENT_STATUS, "valueCode": "revoked"} in resource["extension"]
    assert resource["provision"]["actor"][0]["reference"] == {
        "identifier": {"system": GRANTEE_CLASS, "value": "treating"}
    }
    assert (
        resource["sourceAttachment"] == {"title": "Paper form, cabinet 3"}
        and "securityLabel" not in resource["provision"]
    )
    _, data = consent_from_fhir({**resource, "status": "active"})  # a new consent is active
    assert (data.grantee.kind, data.decision, data.source_reference) == ("treating", "deny", "Paper form, cabinet 3")


def _fields(resource: dict[str, Any]) -> dict[str, Any]:
    """What a consent says, without what the server assigned (id, meta, recorded time, identifier)."""
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "dateTime", "identifier")}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"provision": {"type": "permit", "period": {"start": "2026-01-01T00:00:00Z"}}}, "Consent.provision.actor"),
        ({"status": "draft"}, "Consent.status"),
        ({"patient": {"reference": "Practitioner/1"}}, "Consent.patient.reference"),
        ({"scope": {"coding": [{"system": "urn:x", "code": "adr"}]}}, "Consent.scope"),
        ({"provision": "everything"}, "Consent.provision"),
        ({"resourceType": "Patient"}, "Consent.resourceType"),
        ({"provision": {"type": "permit", "period": {"start": "2026-01-01"}}}, "Consent.provision.period.start"),
        # Times whose UTC instant falls outside what a datetime can hold are refused, not a server error.
        (
            {"provision": {"type": "permit", "period": {"start": "0001-01-01T00:00:00+01:00"}}},
            "Consent.provision.period.start",
        ),
        (
            {"provision": {"type": "permit", "period": {"start": "9999-12-31T23:00:00-05:00"}}},
            "Consent.provision.period.start",
        ),
    ],
)
def test_reading_a_consent_names_the_fhir_path(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        consent_from_fhir({**fhir_consent(str(uuid.uuid4()), org(uuid.uuid4())), **change})
    assert raised.value.field == field


# --- the endpoint --------------------------------------------------------------------------------------------------


async def _post(
    client: AsyncTestClient[Any], headers: dict[str, str], resource: Any, status: int, **extra: str
) -> dict[str, Any]:
    response = await client.post(
        "/fhir/Consent", json=resource, headers={**headers, "Content-Type": FHIR_JSON, **extra}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    return valid(response.json())


async def test_round_trip_through_the_endpoint(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net, "ab")
    doc_a = await net.headers(client, "doc.a")
    sent = fhir_consent(
        ids["a"],
        org(net.tenants["b"]),
        identifier=[{"system": "urn:example:forms", "value": "RT-1"}],
        extension=[{"url": EXT_CONSENT_SOURCE, "valueCode": "scanned_form"}],
        sourceAttachment={"url": "scan://consent-forms/rt-1.pdf"},
    )
    sent["provision"]["period"]["end"] = "2027-01-01T00:00:00Z"
    sent["provision"]["purpose"].append({"system": ACT_REASON, "code": "CAREMGT"})
    sent["provision"]["class"].append({"system": DATA_CATEGORY, "code": "clinical_results"})
    response = await client.post("/fhir/Consent", json=sent, headers={**doc_a, "Content-Type": FHIR_JSON})
    assert response.status_code == 201, response.text
    created = valid(response.json())
    assert response.headers["location"].endswith(f"/fhir/Consent/{created['id']}")
    read = await client.get(_local(response.headers["location"]), headers=doc_a)
    assert read.status_code == 200 and read.headers["content-type"].startswith(FHIR_JSON)
    assert valid(read.json()) == created
    assert created["patient"] == {"reference": f"Patient/{ids['a']}"}
    assert created["organization"] == [{"reference": f"Organization/{net.tenants['a']}"}]
    assert created["identifier"] == [{"system": "urn:example:forms", "value": "RT-1"}]
    assert created["provision"]["actor"][0]["reference"]["reference"] == f"Organization/{net.tenants['b']}"
    assert {"url": EXT_CONSENT_SOURCE, "valueCode": "scanned_form"} in created["extension"]

    # The staff API sees the same consent.
    staff = (await client.get(f"/api/v1/consents/{created['id']}", headers=doc_a)).json()
    assert (staff["grantee"]["tenant_id"], staff["categories"], staff["purposes"]) == (
        str(net.tenants["b"]),
        ["care_plan", "clinical_results"],
        ["treatment", "care_coordination"],
    )
    assert (staff["source_kind"], staff["source_reference"], staff["status"]) == (
        "scanned_form",
        "scan://consent-forms/rt-1.pdf",
        "active",
    )

    # Posted back (as a new consent with its own identifier), it says the same.
    again = {k: v for k, v in created.items() if k not in ("id", "meta")}
    again["identifier"] = [{"system": "urn:example:forms", "value": "RT-2"}]
    copy = await _post(client, doc_a, again, 201)
    assert copy["id"] != created["id"] and _fields(copy) == _fields(created)

    # Recorded through the staff API, read as FHIR; a search by patient finds both.
    recorded = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json={
            "grantee": {"kind": "network"},
            "categories": ["demographics"],
            "purposes": ["care_coordination"],
            "period_start": "2026-01-01T00:00:00Z",
            "source_kind": "verbal",
        },
        headers=doc_a,
    )
    assert recorded.status_code == 201, recorded.text
    as_fhir = valid((await client.get(f"/fhir/Consent/{recorded.json()['id']}", headers=doc_a)).json())
    assert as_fhir["provision"]["actor"][0]["reference"] == {
        "identifier": {"system": GRANTEE_CLASS, "value": "network"}
    }
    assert {"url": EXT_CONSENT_SOURCE, "valueCode": "verbal"} in as_fhir["extension"]
    bundle = valid((await client.get("/fhir/Consent", params={"patient": ids["a"]}, headers=doc_a)).json())
    assert bundle["total"] == 3
    assert {e["resource"]["id"] for e in bundle["entry"]} == {created["id"], copy["id"], as_fhir["id"]}

    # Revoked: inactive (carehub's status in the extension).
    revoked = await client.post(f"/api/v1/consents/{created['id']}/revoke", json={"reason": "Withdrawn"}, headers=doc_a)
    assert revoked.status_code == 200, revoked.text
    after = valid((await client.get(f"/fhir/Consent/{created['id']}", headers=doc_a)).json())
    assert after["status"] == "inactive"
    assert {"url": EXT_CONSENT_STATUS, "valueCode": "revoked"} in after["extension"]

    # Expired: inactive too, its end in the period.
    old = fhir_consent(ids["a"], org(net.tenants["b"]))
    old["provision"]["period"] = {"start": "2025-01-01T00:00:00Z", "end": "2025-06-01T00:00:00Z"}
    expired = await _post(client, doc_a, old, 201)
    assert expired["status"] == "inactive" and expired["provision"]["period"]["end"] == "2025-06-01T00:00:00Z"
    assert {"url": EXT_CONSENT_STATUS, "valueCode": "expired"} in expired["extension"]


async def test_conditional_create_and_errors(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net, "ab")
    doc_a = await net.headers(client, "doc.a")
    body = fhir_consent(ids["a"], org(net.tenants["b"]), identifier=[{"system": "urn:example:forms", "value": "C-1"}])
    condition = {"If-None-Exist": "identifier=urn:example:forms|C-1"}
    first = await _post(client, doc_a, body, 201, **condition)
    same = await _post(client, doc_a, body, 200, **condition)
    assert same == first
    # Without the condition, the identifier is taken.
    taken = await _post(client, doc_a, body, 409)
    assert taken["issue"][0]["expression"] == ["Consent.identifier"]
    # Two of this tenant's consents match a value-only condition: 412.
    await _post(client, doc_a, {**body, "identifier": [{"system": "urn:example:other", "value": "C-1"}]}, 201)
    several = await _post(client, doc_a, body, 412, **{"If-None-Exist": "identifier=C-1"})
    assert several["issue"][0]["code"] == "multiple-matches"
    bad_condition = await _post(client, doc_a, body, 422, **{"If-None-Exist": "patient=x"})
    assert bad_condition["issue"][0]["expression"] == ["If-None-Exist"]

    def broken(**provision: Any) -> dict[str, Any]:
        """The consent with these provision elements changed (None: left out)."""
        resource = fhir_consent(ids["a"], org(net.tenants["b"]))
        merged = {**resource["provision"], **provision}
        resource["provision"] = {k: v for k, v in merged.items() if v is not None}
        return resource

    cases = [
        (broken(purpose=None), "Consent.provision.purpose"),
        (broken(purpose=[{"system": ACT_REASON, "code": "MARKT"}]), "Consent.provision.purpose[0]"),
        (broken(**{"class": [{"system": DATA_CATEGORY, "code": "genome"}]}), "Consent.provision.class[0]"),
        (broken(**{"class": None}), "Consent.provision.class"),
        (broken(type=None), "Consent.provision.type"),
        (
            broken(period={"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}),
            "Consent.provision.period.end",
        ),
        (
            broken(
                actor=[
                    {
                        "role": {"coding": [{"system": PARTICIPATION_TYPE, "code": "IRCP"}]},
                        "reference": org(net.tenants["a"]),
                    }
                ]
            ),
            "Consent.provision.actor",
        ),
        (
            broken(
                **{"class": [{"system": DATA_CATEGORY, "code": "substance_use_disorder"}]},
                actor=[
                    {
                        "role": {"coding": [{"system": PARTICIPATION_TYPE, "code": "IRCP"}]},
                        "reference": {"identifier": {"system": GRANTEE_CLASS, "value": "treating"}},
                    }
                ],
            ),
            "Consent.provision.class",
        ),
        (
            {
                **fhir_consent(ids["a"], org(net.tenants["b"])),
                "extension": [{"url": EXT_CONSENT_SOURCE, "valueCode": "portal"}],
            },
            "Consent.extension(source-kind)",
        ),
        ({**fhir_consent(ids["a"], org(net.tenants["b"])), "provision": {"bogus": 1}}, "Consent.provision.bogus"),
        (fhir_consent(str(uuid.uuid4()), org(net.tenants["b"])), "Consent.patient.reference"),
    ]
    for resource, field in cases:
        outcome = await _post(client, doc_a, resource, 422)
        assert outcome["issue"][0]["expression"] == [field], (field, outcome)
    not_json = await client.post("/fhir/Consent", content=b"[1, 2]", headers={**doc_a, "Content-Type": FHIR_JSON})
    assert not_json.status_code == 422 and not_json.json()["issue"][0]["expression"] == ["Consent"]

    # Reading consents needs the consent permission; recording them the write one.
    chw = await net.headers(client, "chw.a")
    refused = await _post(client, chw, fhir_consent(ids["a"], org(net.tenants["b"])), 403)
    assert refused["issue"][0]["code"] == "forbidden"
    assert (await client.get(f"/fhir/Consent/{first['id']}", headers=chw)).status_code == 200

    # Unknown includes are refused, naming the parameter.
    for params, name in (
        ({"patient": ids["a"], "_include": "Consent:actor"}, "_include"),
        ({"patient": ids["a"], "_revinclude": "Provenance:target"}, "_revinclude"),
        ({"_id": ids["a"], "_revinclude": "Consent:subject"}, "_revinclude"),
    ):
        path = "/fhir/Patient" if "_revinclude" in params else "/fhir/Consent"
        answer = await client.get(path, params=params, headers=doc_a)
        assert answer.status_code == 422, answer.text
        assert answer.json()["issue"][0]["expression"] == [name]
