"""Sharing across tenants under the patient's consent, for a person with records in three tenants.

Hospital A holds a care plan, a lab result and a substance use disorder (Part 2) care plan; Clinic B and Clinic
C hold records of the same person (shared network identifier). Everything is checked through the API as the
clinicians would see it: the network view of their own patient.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import update

from core.consent.models import BreakGlass
from core.db import make_engine, make_sessionmaker
from core.settings import Settings
from tests.consent_world import Net, build_net, person_in

START = "2026-01-01T00:00:00Z"


@pytest.fixture
async def net(settings: Settings) -> Net:
    return await build_net(settings)


def consent(grantee: str | None, categories: list[str], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "grantee": {"kind": "tenant", "tenant_id": grantee} if grantee else {"kind": "treating"},
        "categories": categories,
        "purposes": ["treatment"],
        "period_start": START,
        "source_kind": "scanned_form",
        "source_reference": "scan://consent-forms/2026/0042.pdf",
    }
    body.update(fields)
    return body


async def _records_in_a(client: AsyncTestClient[Any], net: Net, patient_a: str) -> None:
    """A care plan, a lab result and a Part 2 (substance use disorder) care plan in Hospital A's record."""
    doc_a = await net.headers(client, "doc.a")
    for body in (
        {"patient_id": patient_a, "title": "Heart failure follow-up", "status": "active"},
        {
            "patient_id": patient_a,
            "title": "Opioid use disorder treatment",
            "status": "active",
            "data_category": "substance_use_disorder",
        },
    ):
        created = await client.post("/api/v1/care-plans", json=body, headers=doc_a)
        assert created.status_code == 201, created.text
    result = await client.post(
        f"/api/v1/patients/{patient_a}/results",
        json={
            "code": "33762-6",
            "display": "NT-proBNP",
            "value": "1800",
            "unit": "pg/mL",
            "interpretation": "abnormal",
            "status": "final",
            "effective_at": (datetime.now(UTC) - timedelta(hours=3)).isoformat(),
        },
        headers=doc_a,
    )
    assert result.status_code == 201, result.text


async def _view(client: AsyncTestClient[Any], net: Net, who: str, patient: str, purpose: str = "treatment") -> Any:
    response = await client.get(
        f"/api/v1/patients/{patient}/network-view", params={"purpose": purpose}, headers=await net.headers(client, who)
    )
    assert response.status_code == 200, response.text
    return response.json()


def _shared(view: Any) -> dict[str, dict[str, list[Any]]]:
    """What the view shows from other tenants: tenant name -> category -> items."""
    return {
        source["tenant_name"]: {c["category"]: c["items"] for c in source["categories"]}
        for source in view["sources"]
        if not source["own"]
    }


async def test_nothing_crosses_without_consent_under_opt_in(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net)
    await _records_in_a(client, net, ids["a"])
    view = await _view(client, net, "doc.b", ids["b"])
    assert _shared(view) == {}
    # The clinician learns that something is withheld (a total only: no tenant, no category), so they can ask.
    assert view["withheld"]["items"] >= 5  # A's and C's demographics, A's two plans and the result
    assert "Hospital A" not in str(view) and "Opioid" not in str(view) and "NT-proBNP" not in str(view)
    own = [s for s in view["sources"] if s["own"]]
    assert own and own[0]["tenant_name"] == "Clinic B"


async def test_consent_for_one_category_shares_that_category_only(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net)
    await _records_in_a(client, net, ids["a"])
    recorded = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json=consent(str(net.tenants["b"]), ["care_plan"]),
        headers=await net.headers(client, "admin.a"),
    )
    assert recorded.status_code == 201, recorded.text
    consent_id = recorded.json()["id"]
    assert recorded.json()["status"] == "active" and recorded.json()["grantee"]["tenant_name"] == "Clinic B"

    view = await _view(client, net, "doc.b", ids["b"])
    shared = _shared(view)
    assert list(shared) == ["Hospital A"]
    assert list(shared["Hospital A"]) == ["care_plan"]
    assert [p["title"] for p in shared["Hospital A"]["care_plan"]] == ["Heart failure follow-up"]
    category = next(s for s in view["sources"] if not s["own"])["categories"][0]
    assert category["basis"] == "consent" and category["consent_id"] == consent_id
    # Nothing else of A: not the result, not the Part 2 plan, not the demographics; nothing of C.
    text = str(view)
    assert "NT-proBNP" not in text and "Opioid" not in text and "Clinic C" not in text
    assert view["withheld"]["items"] >= 4

    # Clinic C is not the grantee: it sees nothing. For another purpose B sees nothing either.
    assert _shared(await _view(client, net, "doc.c", ids["c"])) == {}
    assert _shared(await _view(client, net, "cm.b", ids["b"], "care_coordination")) == {}


async def test_revocation_stops_access_on_the_next_request(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net)
    await _records_in_a(client, net, ids["a"])
    admin_a = await net.headers(client, "admin.a")
    consent_id = (
        await client.post(
            f"/api/v1/patients/{ids['a']}/consents", json=consent(str(net.tenants["b"]), ["care_plan"]), headers=admin_a
        )
    ).json()["id"]
    assert "care_plan" in _shared(await _view(client, net, "doc.b", ids["b"]))["Hospital A"]

    revoked = await client.post(
        f"/api/v1/consents/{consent_id}/revoke", json={"reason": "patient withdrew consent"}, headers=admin_a
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert _shared(await _view(client, net, "doc.b", ids["b"])) == {}
    again = await client.post(f"/api/v1/consents/{consent_id}/revoke", json={"reason": "twice"}, headers=admin_a)
    assert again.status_code == 409


async def test_expired_consent_denies(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net)
    await _records_in_a(client, net, ids["a"])
    admin_a = await net.headers(client, "admin.a")
    # The period ends in the past, written in another time zone than UTC: compared in UTC all the same.
    ended = (datetime.now(UTC) - timedelta(minutes=5)).astimezone(
        __import__("zoneinfo").ZoneInfo("America/Los_Angeles")
    )
    recorded = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json=consent(str(net.tenants["b"]), ["care_plan"], period_end=ended.isoformat()),
        headers=admin_a,
    )
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["status"] == "expired"
    assert _shared(await _view(client, net, "doc.b", ids["b"])) == {}
    # One still running (ends in an hour, given with a +05:30 offset) allows.
    running = (datetime.now(UTC) + timedelta(hours=1)).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Kolkata"))
    await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json=consent(str(net.tenants["b"]), ["care_plan"], period_end=running.isoformat()),
        headers=admin_a,
    )
    assert "care_plan" in _shared(await _view(client, net, "doc.b", ids["b"]))["Hospital A"]
    naive = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json=consent(str(net.tenants["b"]), ["care_plan"], period_start="2026-01-01T00:00:00"),
        headers=admin_a,
    )
    assert naive.status_code in (400, 422) and "period_start" in naive.text


async def test_part2_records_need_their_own_named_consent(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net)
    await _records_in_a(client, net, ids["a"])
    admin_a = await net.headers(client, "admin.a")
    # A consent to the class of treating facilities cannot carry Part 2 records.
    refused = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json=consent(None, ["care_plan", "substance_use_disorder"]),
        headers=admin_a,
    )
    assert refused.status_code == 422 and "categories" in refused.text and "42 CFR Part 2" in refused.text
    # A treating-facilities consent for care plans shares A's ordinary plan, never the Part 2 one.
    assert (
        await client.post(f"/api/v1/patients/{ids['a']}/consents", json=consent(None, ["care_plan"]), headers=admin_a)
    ).status_code == 201
    shared = _shared(await _view(client, net, "doc.b", ids["b"]))
    assert [p["title"] for p in shared["Hospital A"]["care_plan"]] == ["Heart failure follow-up"]
    assert "substance_use_disorder" not in shared["Hospital A"]
    # Under the network's opt-out default, Part 2 records still do not cross.
    network = await client.put(
        "/api/v1/network/consent-default", json={"consent_default": "opt_out"}, headers=await net.headers(client, "net")
    )
    assert network.status_code == 200, network.text
    shared = _shared(await _view(client, net, "doc.c", ids["c"]))
    assert "Opioid" not in str(shared) and "clinical_results" in shared["Hospital A"]
    # Only a consent naming Clinic B for Part 2 records lets B see them (and only B).
    named = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json=consent(str(net.tenants["b"]), ["substance_use_disorder"]),
        headers=admin_a,
    )
    assert named.status_code == 201, named.text
    shared = _shared(await _view(client, net, "doc.b", ids["b"]))
    assert [p["title"] for p in shared["Hospital A"]["substance_use_disorder"]] == ["Opioid use disorder treatment"]
    assert "Opioid" not in str(await _view(client, net, "doc.c", ids["c"]))


async def test_break_the_glass_once_audited_and_expires(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_in(client, net)
    await _records_in_a(client, net, ids["a"])
    doc_b = await net.headers(client, "doc.b")
    assert _shared(await _view(client, net, "doc.b", ids["b"])) == {}
    # Not for a role without emergency access, and a reason is required.
    assert (
        await client.post(
            f"/api/v1/patients/{ids['b']}/break-glass",
            json={"reason": "unconscious in the ED, need allergies"},
            headers=await net.headers(client, "cm.b"),
        )
    ).status_code == 403
    short = await client.post(f"/api/v1/patients/{ids['b']}/break-glass", json={"reason": "x"}, headers=doc_b)
    assert short.status_code in (400, 422) and "reason" in short.text

    opened = await client.post(
        f"/api/v1/patients/{ids['b']}/break-glass",
        json={"reason": "unconscious in the ED, need allergies"},
        headers=doc_b,
    )
    assert opened.status_code == 201, opened.text
    grant = opened.json()
    shared = _shared(await _view(client, net, "doc.b", ids["b"]))
    # Treatment categories only: the plan and the result, never the Part 2 plan.
    assert set(shared["Hospital A"]) == {"demographics", "care_plan", "clinical_results"}
    assert "Opioid" not in str(shared)
    basis = {
        c["basis"]
        for s in (await _view(client, net, "doc.b", ids["b"]))["sources"]
        if not s["own"]
        for c in s["categories"]
    }
    assert basis == {"break_the_glass"}
    # Only for treatment, and only for this clinician (not another clinician of the same clinic).
    assert _shared(await _view(client, net, "doc.b", ids["b"], "care_coordination")) == {}
    assert _shared(await _view(client, net, "doc2.b", ids["b"])) == {}
    opened_at, expires_at = (datetime.fromisoformat(grant[k]) for k in ("opened_at", "expires_at"))
    assert expires_at - opened_at == timedelta(hours=4)
    # Once: a second opening while it runs is refused.
    twice = await client.post(
        f"/api/v1/patients/{ids['b']}/break-glass", json={"reason": "again, same emergency"}, headers=doc_b
    )
    assert twice.status_code == 409

    # Flagged in A's audit log (the source), with the reason.
    audit = await client.get(
        "/api/v1/audit-events", params={"action": "break_glass.open"}, headers=await net.headers(client, "admin.a")
    )
    assert audit.status_code == 200, audit.text
    events = audit.json()["items"]
    assert events and events[0]["reason"] == "unconscious in the ED, need allergies"
    assert events[0]["detail"]["flag"] == "break_the_glass"

    # Expiry: move the grant's end into the past (as four hours passing would), and the access is gone.
    engine = make_engine(settings.owner_database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await session.execute(
                update(BreakGlass)
                .where(BreakGlass.id == uuid.UUID(grant["id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()
    assert _shared(await _view(client, net, "doc.b", ids["b"])) == {}


async def test_other_tenants_patients_and_consents_are_absent(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net)
    admin_a, admin_b = await net.headers(client, "admin.a"), await net.headers(client, "admin.b")
    consent_id = (
        await client.post(
            f"/api/v1/patients/{ids['a']}/consents", json=consent(str(net.tenants["b"]), ["care_plan"]), headers=admin_a
        )
    ).json()["id"]
    # B (even the grantee) cannot read or revoke A's consent record, nor use A's patient id: 404 like absent.
    assert (await client.get(f"/api/v1/consents/{consent_id}", headers=admin_b)).status_code == 404
    assert (
        await client.post(f"/api/v1/consents/{consent_id}/revoke", json={"reason": "no"}, headers=admin_b)
    ).status_code == 404
    assert (await client.get(f"/api/v1/patients/{ids['a']}/network-view", headers=admin_b)).status_code == 404
    assert (await client.get(f"/api/v1/patients/{ids['a']}/consents", headers=admin_b)).status_code == 404
    listed = await client.get(f"/api/v1/patients/{ids['b']}/consents", headers=admin_b)
    assert listed.status_code == 200 and listed.json() == []
    # A consent's grantee must be a tenant of the network, not the recording tenant itself.
    for grantee, status in ((str(net.tenants["a"]), 422), ("00000000-0000-0000-0000-000000000001", 422)):
        bad = await client.post(
            f"/api/v1/patients/{ids['a']}/consents", json=consent(grantee, ["care_plan"]), headers=admin_a
        )
        assert bad.status_code == status and "grantee.tenant_id" in bad.text
    ends_first = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json=consent(str(net.tenants["b"]), ["care_plan"], period_end="2025-12-31T00:00:00Z"),
        headers=admin_a,
    )
    assert ends_first.status_code == 422 and "period_end" in ends_first.text


async def test_patient_gives_and_revokes_consent_in_the_portal(client: AsyncTestClient[Any], net: Net) -> None:
    from tests.conftest import portal_login

    ids = await person_in(client, net)
    await _records_in_a(client, net, ids["a"])
    portal = await portal_login(
        client, await net.headers(client, "admin.a"), ids["a"], "ada@patients.example", "hospital-a"
    )
    given = await client.post(
        "/api/v1/portal/consents",
        json=consent(str(net.tenants["c"]), ["care_plan"], source_kind="portal"),
        headers=portal,
    )
    assert given.status_code == 201, given.text
    assert given.json()["source_kind"] == "portal"
    assert "care_plan" in _shared(await _view(client, net, "doc.c", ids["c"]))["Hospital A"]
    mine = await client.get("/api/v1/portal/consents", headers=portal)
    assert [c["id"] for c in mine.json()] == [given.json()["id"]]
    revoked = await client.post(
        f"/api/v1/portal/consents/{given.json()['id']}/revoke", json={"reason": "changed my mind"}, headers=portal
    )
    assert revoked.status_code == 200, revoked.text
    assert _shared(await _view(client, net, "doc.c", ids["c"])) == {}
    # Staff cannot claim a portal click.
    staff = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json=consent(str(net.tenants["c"]), ["care_plan"], source_kind="portal"),
        headers=await net.headers(client, "admin.a"),
    )
    assert staff.status_code == 422 and "source_kind" in staff.text


async def test_an_undone_link_takes_its_consents_along(client: AsyncTestClient[Any], net: Net) -> None:
    """A consent recorded through a record belongs to that record's human: when an administrator undoes a wrong
    link, the consent goes with the record and no longer opens the other records of the person it left."""
    ids = await person_in(client, net)
    admin_a = await net.headers(client, "admin.a")
    recorded = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json={**consent(None, ["care_plan"]), "grantee": {"kind": "network"}},
        headers=admin_a,
    )
    assert recorded.status_code == 201, recorded.text
    plan = await client.post(
        "/api/v1/care-plans",
        json={"patient_id": ids["b"], "title": "Clinic B diabetes plan", "status": "active"},
        headers=await net.headers(client, "doc.b"),
    )
    assert plan.status_code == 201, plan.text
    assert "Clinic B diabetes plan" in str(_shared(await _view(client, net, "doc.c", ids["c"])))

    undone = await client.delete(f"/api/v1/patients/{ids['a']}/link", headers=admin_a)
    assert undone.status_code in (200, 204), undone.text
    assert _shared(await _view(client, net, "doc.c", ids["c"])) == {}
    # The consent is still A's, on A's record.
    listed = await client.get(f"/api/v1/patients/{ids['a']}/consents", headers=admin_a)
    assert [c["id"] for c in listed.json()] == [recorded.json()["id"]]


async def test_the_own_record_in_the_view_follows_the_callers_roles(client: AsyncTestClient[Any], net: Net) -> None:
    """A user's own tenant's items are governed by their roles: a community health worker, who cannot read lab
    results in the staff API, does not find them in the network view either, labelled or not."""
    ids = await person_in(client, net, "b")
    labelled = await client.post(
        f"/api/v1/patients/{ids['b']}/results",
        json={
            "code": "3349-9",
            "display": "Buprenorphine [Presence] in Urine",
            "value": "positive",
            "interpretation": "abnormal",
            "status": "final",
            "effective_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "data_category": "substance_use_disorder",
        },
        headers=await net.headers(client, "doc.b"),
    )
    assert labelled.status_code == 201, labelled.text
    chw = await net.headers(client, "chw.b")
    assert (await client.get(f"/api/v1/patients/{ids['b']}/results", headers=chw)).status_code == 403
    view = await _view(client, net, "chw.b", ids["b"], "care_coordination")
    assert "Buprenorphine" not in str(view)
    assert "Buprenorphine" in str(await _view(client, net, "doc.b", ids["b"]))
