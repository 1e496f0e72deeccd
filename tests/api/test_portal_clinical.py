"""The patient's own hospital stays, conditions and released results in the portal, as the EHR feed recorded them.

The person of the network-view tests: Hospital A's feed reported their stays, conditions and results (some
labelled sensitive); Clinic B holds a record of the same person.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from core.settings import Settings
from tests.api.test_network_view_feeds import person_with_feed
from tests.conftest import portal_login
from tests.consent_world import Net, build_net

PORTAL = "/api/v1/portal"


@pytest.fixture
async def net(settings: Settings) -> Net:
    return await build_net(settings)


async def _listed(client: AsyncTestClient[Any], portal: dict[str, str], listing: str) -> list[dict[str, Any]]:
    response = await client.get(f"{PORTAL}/{listing}", headers=portal)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_the_patient_sees_their_stays_conditions_and_released_results(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_with_feed(client, net, settings)
    admin_a = await net.headers(client, "admin.a")
    portal = await portal_login(client, admin_a, ids["a"], "ada@patients.example", "hospital-a")

    stays = await _listed(client, portal, "encounters")
    # Their own record, labels or not: the psychiatric stay and the emergency visit are theirs to see.
    assert sorted(s["kind"] for s in stays) == ["emergency", "inpatient", "inpatient"]
    first = next(s for s in stays if s["diagnoses"][0]["code"] == "I50.9")
    assert (first["status"], first["disposition"], first["location"]) == ("finished", "home_health", "Ward 4B")
    assert first["admitted_at"] and first["discharged_at"]
    assert "note" not in first and "data_category" not in first and "external_id" not in first
    conditions = await _listed(client, portal, "conditions")
    assert sorted(c["code"] for c in conditions) == ["F11.20", "I50.9"]
    assert {c["clinical_status"] for c in conditions} == {"active"}

    # Results keep their release rule: none until staff release one.
    assert await _listed(client, portal, "results") == []
    results = (await client.get(f"/api/v1/patients/{ids['a']}/results", headers=admin_a)).json()["items"]
    potassium = next(r for r in results if r["code"] == "2823-3")
    assert (await client.post(f"/api/v1/results/{potassium['id']}/release", headers=admin_a)).status_code == 200
    assert [r["display"] for r in await _listed(client, portal, "results")] == ["Potassium"]

    # Each reading is in the audit log, with the ids shown.
    audit = await client.get("/api/v1/audit-events", params={"action": "portal.encounters.read"}, headers=admin_a)
    assert audit.status_code == 200, audit.text
    assert sorted(audit.json()["items"][0]["detail"]["ids"]) == sorted(s["id"] for s in stays)


async def test_the_record_at_another_facility_shows_none_of_them(
    client: AsyncTestClient[Any], net: Net, settings: Settings
) -> None:
    ids = await person_with_feed(client, net, settings)
    portal_b = await portal_login(
        client, await net.headers(client, "admin.b"), ids["b"], "ada.b@patients.example", "clinic-b"
    )
    for listing in ("encounters", "conditions", "results"):
        assert await _listed(client, portal_b, listing) == [], listing


async def test_a_stay_entered_in_error_is_left_out(client: AsyncTestClient[Any], net: Net, settings: Settings) -> None:
    ids = await person_with_feed(client, net, settings, cancelled=True)
    portal = await portal_login(
        client, await net.headers(client, "admin.a"), ids["a"], "ada@patients.example", "hospital-a"
    )
    stays = await _listed(client, portal, "encounters")
    assert len(stays) == 3 and "cancelled" not in {s["status"] for s in stays}
