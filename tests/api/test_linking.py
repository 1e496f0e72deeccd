"""One person, many records: automatic links by shared identifier, demographic suggestions that an administrator
confirms (without seeing any other tenant's values), unlink, and the migration that links existing records."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from litestar.testing import AsyncTestClient

from core import migrate
from core.consent.matching import birth_date_variants, name_similarity
from core.settings import Settings
from tests.conftest import base_settings
from tests.consent_world import Net, build_net, person_in
from tests.factories import patient_body


@pytest.fixture
async def net(settings: Settings) -> Net:
    return await build_net(settings)


A_ADDRESS = {"line": ["77 Wisteria Lane"], "city": "Fairview", "postal_code": "Q9R 2T7", "country": "US"}
C_ADDRESS = {"line": ["3 Oak Rd"], "city": "Lakeside", "postal_code": "Q9R2T7", "country": "US"}


async def _create(client: AsyncTestClient[Any], net: Net, who: str, **fields: Any) -> str:
    body = patient_body(f"MRN-{uuid.uuid4().hex[:8]}", **fields)
    response = await client.post("/api/v1/patients", json=body, headers=await net.headers(client, who))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _link(client: AsyncTestClient[Any], net: Net, who: str, patient_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/patients/{patient_id}/link", headers=await net.headers(client, who))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _audit(client: AsyncTestClient[Any], net: Net, who: str, action: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/audit-events?action={action}", headers=await net.headers(client, who))
    assert response.status_code == 200, response.text
    return [e for e in response.json()["items"] if e["outcome"] == "success"]


async def _typo_in_c(client: AsyncTestClient[Any], net: Net) -> tuple[dict[str, str], str]:
    """Ada Lovelace in A and B (shared network id), and in C as "Ada" "Lovelase" with names swapped."""
    records = await person_in(client, net, "ab", given_name="Ada", family_name="Lovelace", address=A_ADDRESS)
    in_c = await _create(
        client, net, "admin.c", given_name="Lovelase", family_name="Ada", address=C_ADDRESS, identifiers=[]
    )
    return records, in_c


async def test_records_sharing_an_identifier_share_a_person(client: AsyncTestClient[Any], net: Net) -> None:
    records = await person_in(client, net, "ab")
    in_a = await _link(client, net, "doc.a", records["a"])
    in_b = await _link(client, net, "doc.b", records["b"])
    assert in_a["other_records"] == 1
    assert in_b["other_records"] == 1
    assert in_a["person_id"] == in_b["person_id"]
    assert in_a["method"] == "new"
    assert in_b["method"] == "identifier"
    assert "tenant" not in str(in_a).lower()
    alone = await _create(client, net, "admin.c", identifiers=[])
    assert (await _link(client, net, "doc.c", alone))["other_records"] == 0


async def test_a_typo_and_swapped_names_are_suggested_without_other_tenants_values(
    client: AsyncTestClient[Any], net: Net
) -> None:
    records, in_c = await _typo_in_c(client, net)
    person = (await _link(client, net, "admin.a", records["a"]))["person_id"]
    admin_c = await net.headers(client, "admin.c")
    response = await client.get(f"/api/v1/patients/{in_c}/link-suggestions", headers=admin_c)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [s["id"] for s in items] == [person]
    assert items[0]["records"] == 2
    assert items[0]["agreement"] == {
        "name": "similar",
        "birth_date": "same",
        "sex": "same",
        "postal_code": "same",
    }
    assert 0.8 <= items[0]["score"] <= 1
    text = response.text.lower()
    for value in ("lovelace", "wisteria", "fairview", "q9r", "1961-12-10", "hospital", "clinic", "female"):
        assert value not in text, value
    assert records["a"] not in text and records["b"] not in text
    # A clinician may look at suggestions but not confirm them.
    doc_c = await net.headers(client, "doc.c")
    assert (await client.get(f"/api/v1/patients/{in_c}/link-suggestions", headers=doc_c)).status_code == 200
    refused = await client.post(f"/api/v1/patients/{in_c}/link", json={"person_id": person}, headers=doc_c)
    assert refused.status_code == 403
    assert (await _link(client, net, "admin.c", in_c))["other_records"] == 0


async def test_confirm_links_and_unlink_undoes_for_good(client: AsyncTestClient[Any], net: Net) -> None:
    records, in_c = await _typo_in_c(client, net)
    person = (await _link(client, net, "admin.a", records["a"]))["person_id"]
    admin_c = await net.headers(client, "admin.c")
    url = f"/api/v1/patients/{in_c}/link"
    own = (await _link(client, net, "admin.c", in_c))["person_id"]
    for not_suggested in (str(uuid.uuid4()), own):
        missing = await client.post(url, json={"person_id": not_suggested}, headers=admin_c)
        assert missing.status_code == 404, missing.text

    confirmed = await client.post(url, json={"person_id": person}, headers=admin_c)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["person_id"] == person
    assert confirmed.json()["method"] == "confirmed"
    assert confirmed.json()["other_records"] == 2
    assert (await _link(client, net, "admin.a", records["a"]))["other_records"] == 2
    linked = await _audit(client, net, "admin.c", "patient.link")
    assert [(e["patient_id"], e["detail"]["old_person_id"], e["detail"]["person_id"]) for e in linked] == [
        (in_c, own, person)
    ]
    assert linked[0]["actor_user_id"] == str(net.users["admin.c"])
    # Linked now, the person is no longer a suggestion.
    again = await client.get(f"/api/v1/patients/{in_c}/link-suggestions", headers=admin_c)
    assert again.json()["items"] == []

    unlinked = await client.delete(url, headers=admin_c)
    assert unlinked.status_code == 200, unlinked.text
    assert unlinked.json()["method"] == "unlinked"
    assert unlinked.json()["other_records"] == 0
    assert unlinked.json()["person_id"] not in (person, own)
    assert (await _link(client, net, "admin.a", records["a"]))["other_records"] == 1
    undone = await _audit(client, net, "admin.c", "patient.unlink")
    assert [(e["detail"]["old_person_id"], e["detail"]["person_id"]) for e in undone] == [
        (person, unlinked.json()["person_id"])
    ]
    # Nothing left to undo; and no automatic (identifier) link nor a suggestion joins it back.
    assert (await client.delete(url, headers=admin_c)).status_code == 409
    shared = (await client.get(f"/api/v1/patients/{records['a']}", headers=await net.headers(client, "admin.a"))).json()
    changed = await client.patch(
        f"/api/v1/patients/{in_c}", json={"identifiers": shared["identifiers"], "language": "fr"}, headers=admin_c
    )
    assert changed.status_code == 200, changed.text
    after = await _link(client, net, "admin.c", in_c)
    assert after["person_id"] == unlinked.json()["person_id"]
    assert after["other_records"] == 0
    suggested = await client.get(f"/api/v1/patients/{in_c}/link-suggestions", headers=admin_c)
    assert suggested.json()["items"] == []


async def test_a_record_alone_on_its_person_cannot_be_unlinked(client: AsyncTestClient[Any], net: Net) -> None:
    alone = await _create(client, net, "admin.a", identifiers=[])
    refused = await client.delete(f"/api/v1/patients/{alone}/link", headers=await net.headers(client, "admin.a"))
    assert refused.status_code == 409
    assert (await _audit(client, net, "admin.a", "patient.unlink")) == []


async def test_another_tenants_patient_is_absent_on_every_route(client: AsyncTestClient[Any], net: Net) -> None:
    records = await person_in(client, net, "ab")
    admin_c = await net.headers(client, "admin.c")
    person = (await _link(client, net, "admin.a", records["a"]))["person_id"]
    for foreign in (records["a"], str(uuid.uuid4())):
        base = f"/api/v1/patients/{foreign}"
        assert (await client.get(f"{base}/link", headers=admin_c)).status_code == 404
        assert (await client.get(f"{base}/link-suggestions", headers=admin_c)).status_code == 404
        assert (await client.post(f"{base}/link", json={"person_id": person}, headers=admin_c)).status_code == 404
        assert (await client.delete(f"{base}/link", headers=admin_c)).status_code == 404
    assert (await _link(client, net, "admin.a", records["a"]))["other_records"] == 1


async def test_bad_confirmation_bodies_name_the_field(client: AsyncTestClient[Any], net: Net) -> None:
    patient = await _create(client, net, "admin.a", identifiers=[])
    admin = await net.headers(client, "admin.a")
    for body, field in (({}, "person_id"), ({"person_id": "not-a-uuid"}, "person_id"), ({"x": 1}, "x")):
        response = await client.post(f"/api/v1/patients/{patient}/link", json=body, headers=admin)
        assert 400 <= response.status_code < 500 and response.status_code != 404, response.text
        assert field in [e["field"] for e in response.json()["errors"]], response.text


async def test_different_people_are_not_suggested(client: AsyncTestClient[Any], net: Net) -> None:
    await person_in(client, net, "a", given_name="Ada", family_name="Lovelace", birth_date="1961-12-10")
    await person_in(client, net, "b", given_name="Grace", family_name="Hopper", birth_date="1961-12-10")
    await person_in(client, net, "b", given_name="Ada", family_name="Lovelace", birth_date="1975-03-02")
    mine = await _create(client, net, "admin.c", given_name="Ada", family_name="Lovelace", identifiers=[])
    found = await client.get(f"/api/v1/patients/{mine}/link-suggestions", headers=await net.headers(client, "admin.c"))
    assert found.status_code == 200
    assert len(found.json()["items"]) == 1
    assert found.json()["items"][0]["agreement"]["name"] == "same"


def test_matching_tolerates_typos_order_and_near_miss_birth_dates() -> None:
    assert name_similarity("ada", "lovelace", "lovelase", "ada") > 0.9
    assert name_similarity("jon", "smyth", "john", "smith") > 0.85
    assert name_similarity("ada", "lovelace", "grace", "hopper") < 0.7
    variants = birth_date_variants(date(1961, 12, 10))
    assert date(1961, 10, 12) in variants  # day and month swapped
    assert date(1961, 12, 11) in variants and date(1971, 12, 10) in variants  # one digit off
    assert date(1961, 12, 10) not in variants and date(1962, 1, 10) not in variants


def test_migration_links_existing_records_sharing_an_identifier(tmp_path: Path) -> None:
    db_file = tmp_path / "m.sqlite3"
    settings = base_settings(database_url=f"sqlite+aiosqlite:///{db_file}")
    config = migrate.alembic_config(settings.owner_database_url)
    command.upgrade(config, "0004")
    now = "2026-01-01 00:00:00.000000"
    network, tenant_a, tenant_b = (uuid.uuid4().hex for _ in range(3))
    patients = {tenant_a: uuid.uuid4().hex, tenant_b: uuid.uuid4().hex}
    lonely = uuid.uuid4().hex
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO networks (id, slug, name, created_at, updated_at) VALUES (?, 'net', 'Net', ?, ?)",
            (network, now, now),
        )
        for slug, tenant in (("a", tenant_a), ("b", tenant_b)):
            conn.execute(
                "INSERT INTO tenants (id, network_id, slug, name, kind, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'clinic', 'active', ?, ?)",
                (tenant, network, slug, slug.upper(), now, now),
            )
        for tenant, patient in [*patients.items(), (tenant_a, lonely)]:
            conn.execute(
                "INSERT INTO patients (id, tenant_id, mrn, given_name, family_name, birth_date, sex, address, active,"
                " created_at, updated_at) VALUES (?, ?, ?, 'Ada', 'Lovelace', '1961-12-10', 'female', NULL, 1, ?, ?)",
                (patient, tenant, f"MRN-{patient[:6]}", now, now),
            )
        for tenant, patient in patients.items():
            conn.execute(
                "INSERT INTO patient_identifiers (id, tenant_id, patient_id, system, value)"
                " VALUES (?, ?, ?, 'urn:carehub:network-id', 'NET-SHARED')",
                (uuid.uuid4().hex, tenant, patient),
            )
    conn.close()
    command.upgrade(config, "head")
    with sqlite3.connect(db_file) as conn:
        rows = dict(conn.execute("SELECT patient_id, person_id FROM patient_links").fetchall())
        persons = {r[0] for r in conn.execute("SELECT id FROM persons").fetchall()}
    conn.close()
    assert len(rows) == 3
    shared = {rows[patients[tenant_a]], rows[patients[tenant_b]]}
    assert len(shared) == 1
    assert rows[lonely] not in shared
    assert set(rows.values()) <= persons


async def test_only_the_networks_linking_systems_link_records(client: AsyncTestClient[Any], net: Net) -> None:
    """A tenant's own identifier system shared by chance never links records; the network administrator decides
    which systems (network id, insurers' member ids) do."""
    member = {"system": "urn:oid:2.16.840.1.113883.3.payer-x", "value": "M-778899"}

    async def create(key: str, mrn: str) -> str:
        body = patient_body(mrn, identifiers=[member])
        response = await client.post("/api/v1/patients", json=body, headers=await net.headers(client, f"admin.{key}"))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    first_a, first_b = await create("a", "LS-A1"), await create("b", "LS-B1")
    admin_b = await net.headers(client, "admin.b")
    link = await client.get(f"/api/v1/patients/{first_b}/link", headers=admin_b)
    assert link.json()["other_records"] == 0

    net_admin = await net.headers(client, "net")
    refused = await client.put(
        "/api/v1/network/link-systems",
        json={"systems": [f"urn:carehub:tenant:{net.tenants['a']}:mrn"]},
        headers=net_admin,
    )
    assert refused.status_code == 422 and "systems[0]" in refused.text
    assert (await client.put("/api/v1/network/link-systems", json={"systems": []}, headers=admin_b)).status_code == 403
    changed = await client.put(
        "/api/v1/network/link-systems",
        json={"systems": ["urn:carehub:network-id", member["system"]]},
        headers=net_admin,
    )
    assert changed.status_code == 200, changed.text
    # The next change of B's record links it to A's (the one other record with that member id).
    patched = await client.patch(f"/api/v1/patients/{first_b}", json={"phone": "+1 555 0199"}, headers=admin_b)
    assert patched.status_code == 200, patched.text
    link = await client.get(f"/api/v1/patients/{first_b}/link", headers=admin_b)
    assert (link.json()["other_records"], link.json()["method"]) == (1, "identifier")
    assert first_a
