"""Transition of care: a hospital discharge creates the primary care clinic's follow-up tasks when consent allows.

Hospital A discharges a person who also has records at Clinic B and Clinic C; Clinic C is their primary care.
Through the API and the real job pipeline (outbox, relay, broker, worker) on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.encounters.rules import add_business_days, transition_of_care
from core.jobs.handlers import Event
from core.settings import Settings
from tenants.context import tenant_context
from tests.consent_world import Net, build_net, person_in
from tests.test_jobs import Running, _process, db, jobs  # noqa: F401 - fixtures


@pytest.fixture
async def net(settings: Settings) -> Net:
    return await build_net(settings)


async def _discharge(client: AsyncTestClient[Any], net: Net, patient_a: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    response = await client.post(
        f"/api/v1/patients/{patient_a}/discharges",
        json={
            "admitted_at": (now - timedelta(days=3)).isoformat(),
            "discharged_at": (now - timedelta(hours=1)).isoformat(),
            "kind": "inpatient",
            "disposition": "home_health",
        },
        headers=await net.headers(client, "doc.a"),
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def _transition_tasks(client: AsyncTestClient[Any], net: Net, key: str, patient: str) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/v1/tasks",
        params={"queue": "all", "patient_id": patient},
        headers=await net.headers(client, f"admin.{key}"),
    )
    assert response.status_code == 200, response.text
    return [t for t in response.json()["items"] if (t["template_code"] or "").startswith("transition-")]


async def test_no_consent_no_transition_tasks_and_the_clinic_learns_nothing(
    client: AsyncTestClient[Any],
    net: Net,
    jobs: Running,  # noqa: F811
    db: async_sessionmaker[AsyncSession],  # noqa: F811
) -> None:
    ids = await person_in(client, net)
    marked = await client.put(
        f"/api/v1/patients/{ids['c']}/primary-care",
        json={"primary_care": True},
        headers=await net.headers(client, "admin.c"),
    )
    assert marked.status_code == 200 and marked.json()["primary_care"] is True
    await _discharge(client, net, ids["a"])
    await _process(db, jobs)
    assert await _transition_tasks(client, net, "c", ids["c"]) == []
    # The hospital's log shows the refused cross-tenant decision (for its privacy officer).
    events = (
        await client.get(
            "/api/v1/audit-events", params={"action": "network.access"}, headers=await net.headers(client, "admin.a")
        )
    ).json()["items"]
    assert [(e["outcome"], e["detail"]["requesting_tenant_name"]) for e in events] == [("denied", "Clinic C")]


async def test_consented_discharge_creates_the_primary_care_clinics_tasks_once(
    client: AsyncTestClient[Any],
    net: Net,
    jobs: Running,  # noqa: F811
    db: async_sessionmaker[AsyncSession],  # noqa: F811
) -> None:
    ids = await person_in(client, net)
    await client.put(
        f"/api/v1/patients/{ids['c']}/primary-care",
        json={"primary_care": True},
        headers=await net.headers(client, "admin.c"),
    )
    consent = await client.post(
        f"/api/v1/patients/{ids['a']}/consents",
        json={
            "grantee": {"kind": "tenant", "tenant_id": str(net.tenants["c"])},
            "categories": ["tasks_appointments"],
            "purposes": ["care_coordination"],
            "period_start": "2026-01-01T00:00:00Z",
            "source_kind": "scanned_form",
        },
        headers=await net.headers(client, "admin.a"),
    )
    assert consent.status_code == 201, consent.text
    encounter = await _discharge(client, net, ids["a"])
    await _process(db, jobs)

    tasks = await _transition_tasks(client, net, "c", ids["c"])
    assert sorted(t["title"] for t in tasks) == [
        "Transition of care: call the patient within 2 business days",
        "Transition of care: follow-up appointment within 7 days",
    ]
    discharged = datetime.fromisoformat(encounter["discharged_at"])
    visit = next(t for t in tasks if t["template_code"] == "transition-visit")
    assert datetime.fromisoformat(visit["due_at"]) == discharged + timedelta(days=7)
    assert all("Hospital A discharged the patient" in (t["description"] or "") for t in tasks)
    # Not for Clinic B (not the primary care), and nothing in the hospital's own queue.
    assert await _transition_tasks(client, net, "b", ids["b"]) == []
    assert await _transition_tasks(client, net, "a", ids["a"]) == []

    # Delivered again (a redelivered message): the tasks are found, not made twice.
    from sqlalchemy import select

    from core.outbox import OutboxEvent

    with tenant_context(net.tenants["a"]):
        async with db() as session, session.begin():
            row = await session.scalar(select(OutboxEvent).where(OutboxEvent.topic == "encounter.discharged"))
            assert row is not None
            event = Event(row.id, row.tenant_id, row.topic, row.payload, row.aggregate_id)
            await transition_of_care(session, event)
    assert len(await _transition_tasks(client, net, "c", ids["c"])) == 2


async def test_a_part2_stay_needs_its_own_named_consent(
    client: AsyncTestClient[Any],
    net: Net,
    jobs: Running,  # noqa: F811
    db: async_sessionmaker[AsyncSession],  # noqa: F811
) -> None:
    ids = await person_in(client, net, "ac")
    admin_a = await net.headers(client, "admin.a")
    body = {
        "grantee": {"kind": "tenant", "tenant_id": str(net.tenants["c"])},
        "categories": ["tasks_appointments"],
        "purposes": ["care_coordination"],
        "period_start": "2026-01-01T00:00:00Z",
        "source_kind": "scanned_form",
    }
    assert (await client.post(f"/api/v1/patients/{ids['a']}/consents", json=body, headers=admin_a)).status_code == 201
    now = datetime.now(UTC)
    stay = {
        "admitted_at": (now - timedelta(days=5)).isoformat(),
        "discharged_at": (now - timedelta(hours=2)).isoformat(),
        "data_category": "substance_use_disorder",
    }
    doc_a = await net.headers(client, "doc.a")
    assert (await client.post(f"/api/v1/patients/{ids['a']}/discharges", json=stay, headers=doc_a)).status_code == 201
    await _process(db, jobs)
    # The only clinic is C (primary care by default): a consent for tasks does not cover a Part 2 stay.
    assert await _transition_tasks(client, net, "c", ids["c"]) == []

    part2 = {**body, "categories": ["substance_use_disorder"]}
    assert (await client.post(f"/api/v1/patients/{ids['a']}/consents", json=part2, headers=admin_a)).status_code == 201
    assert (await client.post(f"/api/v1/patients/{ids['a']}/discharges", json=stay, headers=doc_a)).status_code == 201
    await _process(db, jobs)
    tasks = await _transition_tasks(client, net, "c", ids["c"])
    assert len(tasks) == 2 and {t["data_category"] for t in tasks} == {"substance_use_disorder"}


async def test_discharge_input_errors(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net, "ab")
    doc_a = await net.headers(client, "doc.a")
    now = datetime.now(UTC)
    backwards = await client.post(
        f"/api/v1/patients/{ids['a']}/discharges",
        json={"admitted_at": now.isoformat(), "discharged_at": (now - timedelta(days=1)).isoformat()},
        headers=doc_a,
    )
    assert backwards.status_code == 422 and "discharged_at" in backwards.text
    other = await client.post(
        f"/api/v1/patients/{ids['b']}/discharges",
        json={"admitted_at": (now - timedelta(days=1)).isoformat(), "discharged_at": now.isoformat()},
        headers=doc_a,
    )
    assert other.status_code == 404
    hospital = await client.put(
        f"/api/v1/patients/{ids['a']}/primary-care",
        json={"primary_care": True},
        headers=await net.headers(client, "admin.a"),
    )
    assert hospital.status_code == 422 and "primary_care" in hospital.text


def test_business_days_skip_the_weekend() -> None:
    friday = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    assert add_business_days(friday, 2, "UTC") == datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # Tuesday
    assert add_business_days(friday, 2, "America/New_York").weekday() == 1
