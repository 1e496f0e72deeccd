"""Access transparency: the privacy officer's access report (with CSV) and the patient's portal access log.

One person has records in Hospital A, Clinic B and Clinic C. A records the patient's consent for Clinic B to see
the care plan for treatment; Clinic B's clinician opens the network view; Clinic C's clinician opens emergency
(break-the-glass) access and then the network view. Everything is checked as the privacy officers and the patient
would see it, through the API.
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from core.settings import Settings
from tests.conftest import portal_login
from tests.consent_world import Net, build_net, person_in

REPORT = "/api/v1/access-report"
CSV_REPORT = "/api/v1/access-report.csv"
PORTAL_LOG = "/api/v1/portal/access-log"
REASON = "unconscious in ED, allergy check"


@pytest.fixture
async def net(settings: Settings) -> Net:
    return await build_net(settings)


async def _consent_for_b(client: AsyncTestClient[Any], net: Net, patient_a: str) -> str:
    response = await client.post(
        f"/api/v1/patients/{patient_a}/consents",
        json={
            "grantee": {"kind": "tenant", "tenant_id": str(net.tenants["b"])},
            "categories": ["care_plan"],
            "purposes": ["treatment"],
            "period_start": "2026-01-01T00:00:00Z",
            "source_kind": "scanned_form",
        },
        headers=await net.headers(client, "admin.a"),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _view(client: AsyncTestClient[Any], net: Net, who: str, patient: str) -> None:
    response = await client.get(
        f"/api/v1/patients/{patient}/network-view",
        params={"purpose": "treatment"},
        headers=await net.headers(client, who),
    )
    assert response.status_code == 200, response.text


async def _break_glass(client: AsyncTestClient[Any], net: Net, who: str, patient: str, reason: str) -> None:
    response = await client.post(
        f"/api/v1/patients/{patient}/break-glass", json={"reason": reason}, headers=await net.headers(client, who)
    )
    assert response.status_code == 201, response.text


async def _report(client: AsyncTestClient[Any], net: Net, who: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(REPORT, params={"limit": 100, **params}, headers=await net.headers(client, who))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


class Story:
    """The scenario's ids and the moment between Clinic B's accesses and Clinic C's."""

    def __init__(self, ids: dict[str, str], other: dict[str, str], consent_id: str, between: datetime) -> None:
        self.ids = ids
        self.other = other
        self.consent_id = consent_id
        self.between = between


@pytest.fixture
async def story(client: AsyncTestClient[Any], net: Net) -> Story:
    ids = await person_in(client, net)
    other = await person_in(client, net, "ab")
    plan = await client.post(
        "/api/v1/care-plans",
        json={"patient_id": ids["a"], "title": "Heart failure follow-up", "status": "active"},
        headers=await net.headers(client, "doc.a"),
    )
    assert plan.status_code == 201, plan.text
    consent_id = await _consent_for_b(client, net, ids["a"])
    await _view(client, net, "doc.b", ids["b"])
    # Another patient's record, looked at by the same clinician: never part of the first patient's log.
    await _view(client, net, "doc.b", other["b"])
    await asyncio.sleep(0.02)
    between = datetime.now(UTC)
    await asyncio.sleep(0.02)
    await _break_glass(client, net, "doc.c", ids["c"], REASON)
    await _view(client, net, "doc.c", ids["c"])
    return Story(ids, other, consent_id, between)


def _newest_first(rows: list[dict[str, Any]]) -> None:
    times = [datetime.fromisoformat(r["at"]) for r in rows]
    assert times == sorted(times, reverse=True)


async def test_privacy_officer_sees_inbound_accesses_with_their_basis(
    client: AsyncTestClient[Any], net: Net, story: Story
) -> None:
    rows = await _report(client, net, "privacy.a")
    assert rows
    _newest_first(rows)
    # Hospital A's staff read nothing of other tenants: only inbound rows, all on A's records.
    assert {r["direction"] for r in rows} == {"inbound"}
    assert {r["patient_id"] for r in rows} == {story.ids["a"], story.other["a"]}
    assert all(r["source_tenant"]["name"] == "Hospital A" for r in rows)

    from_b = [r for r in rows if r["requesting_tenant"]["name"] == "Clinic B" and r["patient_id"] == story.ids["a"]]
    allowed = [r for r in from_b if r["outcome"] == "success"]
    assert len(allowed) == 1
    plan = allowed[0]
    assert plan["category"] == "care_plan" and plan["purpose"] == "treatment"
    assert plan["basis"] == "consent" and plan["consent_id"] == story.consent_id
    assert story.consent_id in plan["reason"]
    assert plan["items"] == 1 and plan["flagged"] is False
    assert plan["user"] == {"id": str(net.users["doc.b"]), "name": "doc.b"}
    assert plan["requesting_tenant"]["id"] == str(net.tenants["b"])
    # Every other category was asked for and refused: no consent allows it, nothing released.
    denied = [r for r in from_b if r["outcome"] == "denied"]
    assert {r["category"] for r in denied} >= {"demographics", "clinical_results", "substance_use_disorder"}
    assert "care_plan" not in {r["category"] for r in denied}
    assert all(r["basis"] == "no_consent" and r["items"] == 0 and r["consent_id"] is None for r in denied)

    # Clinic C's emergency access: the opening and the reads under it are flagged.
    opened = [r for r in rows if r["action"] == "break_glass.open"]
    assert len(opened) == 1
    assert opened[0]["flagged"] is True and opened[0]["basis"] == "break_the_glass"
    assert opened[0]["reason"] == REASON and opened[0]["break_glass_id"]
    assert opened[0]["requesting_tenant"] == {"id": str(net.tenants["c"]), "name": "Clinic C"}
    assert opened[0]["user"]["name"] == "doc.c" and opened[0]["patient_id"] == story.ids["a"]
    under_glass = [r for r in rows if r["action"] == "network.access" and r["basis"] == "break_the_glass"]
    assert {r["category"] for r in under_glass} == {
        "demographics",
        "care_plan",
        "tasks_appointments",
        "clinical_results",
    }
    assert all(r["flagged"] and r["break_glass_id"] == opened[0]["break_glass_id"] for r in under_glass)
    assert not [r for r in rows if r["flagged"] and r["requesting_tenant"]["name"] != "Clinic C"]

    # Reading the report is itself in the audit log.
    audit = await client.get(
        "/api/v1/audit-events", params={"action": "access_report.read"}, headers=await net.headers(client, "privacy.a")
    )
    assert audit.status_code == 200, audit.text
    assert audit.json()["items"][0]["actor_user_id"] == str(net.users["privacy.a"])


async def test_report_filters_and_paging(client: AsyncTestClient[Any], net: Net, story: Story) -> None:
    everything = await _report(client, net, "privacy.a")

    glass = await _report(client, net, "privacy.a", basis="break_the_glass")
    assert glass and all(r["flagged"] for r in glass)
    assert {r["action"] for r in glass} == {"break_glass.open", "network.access"}
    assert glass == [r for r in everything if r["flagged"]]

    assert await _report(client, net, "privacy.a", direction="outbound") == []
    assert await _report(client, net, "privacy.a", direction="inbound") == everything

    denied = await _report(client, net, "privacy.a", outcome="denied")
    assert denied and all(r["outcome"] == "denied" for r in denied)
    assert len(denied) + len(await _report(client, net, "privacy.a", outcome="success")) == len(everything)

    consent = await _report(client, net, "privacy.a", basis="consent")
    assert [r["consent_id"] for r in consent] == [story.consent_id]

    since = await _report(client, net, "privacy.a", since=story.between.isoformat())
    assert since and {r["requesting_tenant"]["name"] for r in since} == {"Clinic C"}
    until = await _report(client, net, "privacy.a", until=story.between.isoformat())
    assert until and {r["requesting_tenant"]["name"] for r in until} == {"Clinic B"}
    assert len(since) + len(until) == len(everything)

    from_b = await _report(client, net, "privacy.a", requesting_tenant_id=str(net.tenants["b"]))
    assert from_b == until
    by_user = await _report(client, net, "privacy.a", user_id=str(net.users["doc.c"]))
    assert by_user == since
    other = await _report(client, net, "privacy.a", patient_id=story.other["a"])
    assert len(other) == 8 and all(r["outcome"] == "denied" for r in other)
    plans = await _report(client, net, "privacy.a", category="care_plan")
    assert {(r["requesting_tenant"]["name"], r["patient_id"]) for r in plans} == {
        ("Clinic B", story.ids["a"]),
        ("Clinic B", story.other["a"]),
        ("Clinic C", story.ids["a"]),
    }

    privacy_a = await net.headers(client, "privacy.a")
    first = await client.get(REPORT, params={"limit": 5}, headers=privacy_a)
    second = await client.get(REPORT, params={"limit": 5, "offset": 5}, headers=privacy_a)
    assert first.json()["page"]["next_offset"] == 5
    assert [r["id"] for r in first.json()["items"] + second.json()["items"]] == [r["id"] for r in everything[:10]]

    # Bad filters are refused, naming the field.
    for params, field in (
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"until": "2026-01-01T00:00:00"}, "until"),
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"direction": "sideways"}, "direction"),
        ({"outcome": "not_found"}, "outcome"),
        ({"basis": "own_tenant"}, "basis"),
        ({"category": "gossip"}, "category"),
        ({"patient_id": "not-an-id"}, "patient_id"),
    ):
        bad = await client.get(REPORT, params=params, headers=privacy_a)
        assert bad.status_code == 422, (params, bad.text)
        assert field in bad.text
        assert (await client.get(CSV_REPORT, params=params, headers=privacy_a)).status_code == 422


async def test_csv_export_has_a_header_and_the_same_rows(client: AsyncTestClient[Any], net: Net, story: Story) -> None:
    privacy_a = await net.headers(client, "privacy.a")
    rows = await _report(client, net, "privacy.a", since="2026-01-01T00:00:00Z")
    response = await client.get(CSV_REPORT, params={"since": "2026-01-01T00:00:00Z"}, headers=privacy_a)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "20260101" in disposition and ".csv" in disposition
    assert response.headers["x-row-cap"] == "50000" and response.headers["x-truncated"] == "false"
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0][:4] == ["id", "at", "action", "direction"]
    body = [dict(zip(table[0], line, strict=True)) for line in table[1:]]
    assert [line["id"] for line in body] == [r["id"] for r in rows]
    plan = next(line for line in body if line["basis"] == "consent")
    assert plan["consent_id"] == story.consent_id and plan["requesting_tenant_name"] == "Clinic B"
    assert plan["user_name"] == "doc.b" and plan["items"] == "1" and plan["flagged"] == "false"
    opened = next(line for line in body if line["action"] == "break_glass.open")
    assert opened["flagged"] == "true" and opened["reason"] == REASON

    filtered = await client.get(CSV_REPORT, params={"basis": "break_the_glass"}, headers=privacy_a)
    lines = list(csv.DictReader(io.StringIO(filtered.text)))
    assert lines and all(line["flagged"] == "true" for line in lines)


async def test_csv_cells_cannot_run_as_formulas(client: AsyncTestClient[Any], net: Net) -> None:
    ids = await person_in(client, net, "ab")
    await _break_glass(client, net, "doc.b", ids["b"], '=HYPERLINK("http://evil.example","open me") urgent')
    response = await client.get(CSV_REPORT, headers=await net.headers(client, "privacy.a"))
    assert response.status_code == 200, response.text
    (opened,) = list(csv.DictReader(io.StringIO(response.text)))
    assert opened["reason"].startswith("'=HYPERLINK(")
    # The JSON report keeps the text as given.
    (row,) = await _report(client, net, "privacy.a")
    assert row["reason"].startswith("=HYPERLINK(")


async def test_report_is_for_privacy_officers_and_admins_only(
    client: AsyncTestClient[Any], net: Net, story: Story
) -> None:
    for who in ("doc.a", "cm.a", "chw.a"):
        headers = await net.headers(client, who)
        assert (await client.get(REPORT, headers=headers)).status_code == 403
        assert (await client.get(CSV_REPORT, headers=headers)).status_code == 403
    assert await _report(client, net, "admin.a") == await _report(client, net, "privacy.a")
    # The refusal is audited too.
    audit = await client.get(
        "/api/v1/audit-events", params={"action": "access_report.read"}, headers=await net.headers(client, "admin.a")
    )
    assert any(
        e["outcome"] == "denied" and e["actor_user_id"] == str(net.users["doc.a"]) for e in audit.json()["items"]
    )


async def test_requesting_tenant_sees_its_own_outbound_rows(
    client: AsyncTestClient[Any], net: Net, story: Story
) -> None:
    outbound = await _report(client, net, "privacy.b", direction="outbound")
    assert outbound
    # B's own users' reads of other tenants' records, on B's records of the people.
    assert {r["requesting_tenant"]["id"] for r in outbound} == {str(net.tenants["b"])}
    assert {r["user"]["name"] for r in outbound} == {"doc.b"}
    assert {r["patient_id"] for r in outbound} <= {story.ids["b"], story.other["b"]}
    (plan,) = outbound
    assert plan["category"] == "care_plan" and plan["outcome"] == "success"
    assert plan["source_tenant"] == {"id": str(net.tenants["a"]), "name": "Hospital A"}
    assert plan["consent_id"] == story.consent_id
    # Nothing of Hospital A's log: B's report holds only rows on B's records, and inbound ones only from C.
    everything = await _report(client, net, "privacy.b")
    assert {r["patient_id"] for r in everything} <= {story.ids["b"], story.other["b"]}
    inbound = [r for r in everything if r["direction"] == "inbound"]
    assert inbound and {r["requesting_tenant"]["name"] for r in inbound} == {"Clinic C"}
    # C's report: its clinician's emergency opening, outbound and flagged.
    c_rows = await _report(client, net, "privacy.c", basis="break_the_glass", direction="outbound")
    assert {r["action"] for r in c_rows} == {"break_glass.open", "network.access"}
    assert all(r["user"]["name"] == "doc.c" for r in c_rows)


async def test_break_glass_review_alert_reaches_the_privacy_officer(
    client: AsyncTestClient[Any], net: Net, story: Story
) -> None:
    inbox = await client.get("/api/v1/alerts", headers=await net.headers(client, "privacy.a"))
    assert inbox.status_code == 200, inbox.text
    alerts = [a for a in inbox.json()["items"] if a["kind"] == "break_glass"]
    assert len(alerts) == 1
    assert "Clinic C" in alerts[0]["title"] and REASON in alerts[0]["body"]
    assert alerts[0]["patient_id"] == story.ids["a"]
    # The alert and the report's flagged opening name the same emergency access.
    (opened,) = [r for r in await _report(client, net, "privacy.a") if r["action"] == "break_glass.open"]
    assert alerts[0]["subject_id"] == opened["break_glass_id"]


async def test_patient_sees_who_accessed_their_records(client: AsyncTestClient[Any], net: Net, story: Story) -> None:
    admin_a = await net.headers(client, "admin.a")
    portal = await portal_login(client, admin_a, story.ids["a"], "pat@patients.example", "hospital-a")
    response = await client.get(PORTAL_LOG, params={"limit": 100}, headers=portal)
    assert response.status_code == 200, response.text
    rows = response.json()["items"]
    _newest_first(rows)
    # B's view asked each of 8 categories at A and at C; C's view asked them at A and at B; C's opening is
    # noted at A and B. The other patient's accesses are not here.
    assert len(rows) == 8 + 8 + 8 + 8 + 2
    seen = {(r["organisation"], r["record_organisation"]) for r in rows}
    assert seen == {
        ("Clinic B", "Hospital A"),
        ("Clinic B", "Clinic C"),
        ("Clinic C", "Hospital A"),
        ("Clinic C", "Clinic B"),
    }
    # The consent is the person's: it lets Clinic B see the care plan wherever it is held (only A has one).
    plan = [r for r in rows if r["organisation"] == "Clinic B" and r["allowed"]]
    assert {(r["record_organisation"], r["category_label"]) for r in plan} == {
        ("Hospital A", "care plan"),
        ("Clinic C", "care plan"),
    }
    assert all(r["user_name"] == "doc.b" and r["purpose_label"] == "to treat you" for r in plan)
    assert all(r["status"] == "allowed" and r["emergency"] is False for r in plan)
    refused = [r for r in rows if r["organisation"] == "Clinic B" and not r["allowed"]]
    assert refused and all(r["status"] == "refused" for r in refused)
    assert "lab results" in {r["category_label"] for r in refused}
    emergency = [r for r in rows if r["emergency"]]
    assert {r["organisation"] for r in emergency} == {"Clinic C"}
    openings = [r for r in emergency if r["status"] == "emergency access opened"]
    assert {r["record_organisation"] for r in openings} == {"Hospital A", "Clinic B"}
    assert all(REASON in r["summary"] for r in openings)

    page = await client.get(PORTAL_LOG, params={"limit": 10, "offset": 30}, headers=portal)
    assert page.json()["items"] == rows[30:40]

    # The other patient's portal shows only B's requests about their own record at Hospital A.
    theirs = await portal_login(client, admin_a, story.other["a"], "other@patients.example", "hospital-a")
    other_rows = (await client.get(PORTAL_LOG, params={"limit": 100}, headers=theirs)).json()["items"]
    assert len(other_rows) == 8
    assert {(r["organisation"], r["record_organisation"], r["allowed"]) for r in other_rows} == {
        ("Clinic B", "Hospital A", False)
    }
    # Staff have no portal access log.
    assert (await client.get(PORTAL_LOG, headers=await net.headers(client, "doc.a"))).status_code == 403
