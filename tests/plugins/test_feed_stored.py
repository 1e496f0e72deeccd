"""The stored-mode feed and the batch Applier under what breaks them: the last message of a batch deciding, the
first identifier held deciding, a message the record refuses kept for review without holding back its batch, two
listeners of a tenant applying in arrival order and once, a database outage, tenants apart. The plugin is the
test's own: its messages are the JSON of an InboundResult, so each test says exactly which effects one carries."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select

from core.audit import AuditEvent
from core.patients.models import Patient, PatientIdentifier
from core.plugins import feed as feed_module
from core.plugins.feed import Feed
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.settings import Settings
from plugin_sdk import InboundResult
from plugin_sdk import effects as fx
from plugin_sdk.payloads import Identifier, PatientRecord, TenantInfo
from tenants.context import tenant_context
from tests.conftest import World

SYSTEM = "urn:test:review"


def _feed(db: Any, settings: Settings, world: World, plugin: Any, ack: str = "stored") -> Feed:
    tenant = TenantInfo(id=str(world.tenant_a), slug="hospital-a", name="Hospital A", kind="hospital")
    return Feed(db, settings, tenant, plugin, ack=ack)  # type: ignore[arg-type]


def _ident(value: str) -> Identifier:
    return Identifier(system=SYSTEM, value=value)


def _upsert(control: str, *idents: Identifier, given: str = "Robin", phone: str | None = None) -> str:
    record = PatientRecord(
        identifiers=idents, given_name=given, family_name="Review", birth_date=date(1970, 1, 1), phone=phone
    )
    return msgspec.json.encode(InboundResult(control_id=control, effects=[fx.UpsertPatient(patient=record)])).decode()


async def _patients(db: Any, world: World) -> dict[str, Patient]:
    """The tenant's patients by each identifier value they hold."""
    with tenant_context(world.tenant_a):
        async with db() as session:
            found = {}
            for patient in await session.scalars(select(Patient)):
                for held in patient.identifiers:
                    found[held.value] = patient
            return found


async def _statuses(db: Any, world: World) -> dict[str, str]:
    with tenant_context(world.tenant_a):
        async with db() as session:
            rows = await session.execute(select(InboundMessageRecord.control_id, InboundMessageRecord.status))
            return {control: status for control, status in rows}


# -- (3) the batch Applier's caches ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ack", ["applied", "stored"])
async def test_the_last_message_of_a_batch_sets_the_demographics(
    settings: Settings, world: World, json_feed: Any, db: Any, ack: str
) -> None:
    """Create (phone X), change (phone Y), change back (phone X): the patient ends with X in both modes. In one
    stored batch the third upsert is skipped: ``_unchanged_new`` compares it with the row as created, which the
    second upsert changed through the ORM object (the ``_created`` dict is never updated)."""
    feed = _feed(db, settings, world, json_feed, ack)
    mrn = _ident("R-1")
    for control, phone in (("D-1", "+15550001"), ("D-2", "+15550002"), ("D-3", "+15550001")):
        assert (await feed.receive(_upsert(control, mrn, phone=phone), None)).startswith(f"ACK|accepted|{control}")
    await feed.catch_up()  # stored: the three in one transaction, one Applier
    assert set((await _statuses(db, world)).values()) == {"accepted"}
    assert (await _patients(db, world))["R-1"].phone == "+15550001"


@pytest.mark.parametrize("ack", ["applied", "stored"])
async def test_a_batch_updates_the_patient_of_the_first_identifier_held(
    settings: Settings, world: World, json_feed: Any, db: Any, ack: str
) -> None:
    """Q holds B. Message 1 registers a new patient N with A; message 2 names [A, B] with a new name. Applied one by
    one, find_patient takes the first identifier held (A: N is renamed, Q untouched). In one stored batch N is
    only in ``_ids`` (appended as rows) while Q is in ``_patients`` (prefetched), so ``_find`` returns Q and the
    batch renames the wrong patient."""
    feed = _feed(db, settings, world, json_feed, ack)
    first = await feed.receive(_upsert("Q-0", _ident("B"), given="Quinn"), None)
    assert first.startswith("ACK|accepted")
    await feed.catch_up()
    await feed.receive(_upsert("Q-1", _ident("A"), given="Nina"), None)
    await feed.receive(_upsert("Q-2", _ident("A"), _ident("B"), given="Nina-Renamed"), None)
    await feed.catch_up()
    found = await _patients(db, world)
    assert found["B"].id != found["A"].id
    assert found["B"].given_name == "Quinn"
    assert found["A"].given_name == "Nina-Renamed"


# -- (1)/(5) a message the database refuses in stored mode ---------------------------------------------------------


async def test_a_message_the_database_refuses_does_not_hold_back_its_batch(
    settings: Settings, world: World, json_feed: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """P-2 names one identifier twice: refused (it was an IntegrityError at the batch's commit, retried for ever
    while later messages overtook it). Now the batch is applied one by one: P-1 and P-3, acknowledged AA, are
    applied, and P-2 is kept for review."""
    monkeypatch.setattr(feed_module, "RETRY_SECONDS", 0.0)
    feed = _feed(db, settings, world, json_feed)
    assert (await feed.receive(_upsert("P-1", _ident("T-1")), None)).startswith("ACK|accepted|P-1")
    assert (await feed.receive(_upsert("P-2", _ident("T-2"), _ident("T-2")), None)).startswith("ACK|accepted|P-2")
    assert (await feed.receive(_upsert("P-3", _ident("T-3")), None)).startswith("ACK|accepted|P-3")
    runner = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.drain(), 10)
        await feed.receive(_upsert("P-4", _ident("T-4")), None)
        await asyncio.wait_for(feed.drain(), 10)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    statuses = await _statuses(db, world)
    assert statuses["P-4"] == "accepted"
    # What a poison message should leave: the others applied, itself kept for review.
    assert (statuses["P-1"], statuses["P-3"]) == ("accepted", "accepted"), statuses
    assert statuses["P-2"] == "error"


# -- (1)/(6) two listeners of one tenant ---------------------------------------------------------------------------


class _Paused(Feed):
    """A listener that stops right after it selected its batch (before reading the first message again)."""

    reached: asyncio.Event
    go: asyncio.Event

    async def _read_again(self, session: Any, row: Any, config: Any, record: Any) -> Any:
        self.reached.set()
        await self.go.wait()
        return await super()._read_again(session, row, config, record)


async def test_two_listeners_of_a_tenant_apply_in_arrival_order_and_once(
    settings: Settings, world: World, json_feed: Any, db: Any
) -> None:
    """Listener A (stored) has M-1 stored when listener B starts and catches up (it takes M-1). Then M-2 arrives
    at A and A applies its queue. PostgreSQL: B holds M-1 FOR UPDATE, A skips it and applies M-2 first, then B
    applies M-1 over it. SQLite: FOR UPDATE is ignored and the SELECT runs outside a transaction, so A applies
    M-1 and M-2 and B applies M-1 a second time. Either way the patient ends with M-1's name."""
    a = _feed(db, settings, world, json_feed)
    tenant = TenantInfo(id=str(world.tenant_a), slug="hospital-a", name="Hospital A", kind="hospital")
    b = _Paused(db, settings, tenant, json_feed, ack="stored")
    b.reached, b.go = asyncio.Event(), asyncio.Event()
    await a.receive(_upsert("M-1", _ident("T-9"), given="First"), None)
    catching_up = asyncio.create_task(b.catch_up())
    await asyncio.wait_for(b.reached.wait(), 5)  # B holds the applier lock with M-1 taken
    receiving = asyncio.create_task(a.receive(_upsert("M-2", _ident("T-9"), given="Second"), None))
    applying = asyncio.create_task(a.apply_pending())  # waits for B's lock (on SQLite the store waits too)
    await asyncio.sleep(0.3)
    b.go.set()
    await asyncio.wait_for(catching_up, 15)
    assert (await asyncio.wait_for(receiving, 15)).startswith("ACK|accepted|M-2")
    await asyncio.wait_for(applying, 15)
    await asyncio.wait_for(a.apply_pending(), 15)  # M-2, if it was stored after A's first look
    name = (await _patients(db, world))["T-9"].given_name
    with tenant_context(world.tenant_a):
        async with db() as session:
            audits = list(
                await session.scalars(
                    select(AuditEvent.action).where(AuditEvent.action.like("patient.%")).order_by(AuditEvent.at)
                )
            )
    # one create (M-1) and one update (M-2), in that order
    assert (name, audits) == ("Second", ["patient.create", "patient.update"]), f"{name} {audits}"


# -- pinned: what was checked and holds ----------------------------------------------------------------------------


async def test_identifiers_are_not_shared_between_tenants_by_the_batch(
    settings: Settings, world: World, json_feed: Any, db: Any
) -> None:
    """The same identifier in two tenants' feeds: each tenant gets its own patient (the Applier's caches and the
    feed's readings belong to one tenant's Feed; find_patient is tenant-filtered)."""
    with tenant_context(world.tenant_b):
        async with db() as session, session.begin():
            session.add(PluginEnablement(plugin="json_feed", enabled=True, config={}))
    a = _feed(db, settings, world, json_feed)
    tenant_b = TenantInfo(id=str(world.tenant_b), slug="hospital-b", name="Hospital B", kind="hospital")
    b = Feed(db, settings, tenant_b, json_feed, ack="stored")
    await a.receive(_upsert("X-1", _ident("SAME"), given="Alpha"), None)
    await b.receive(_upsert("X-1", _ident("SAME"), given="Beta"), None)  # same control id: not a repeat there
    await a.catch_up()
    await b.catch_up()
    assert (await _patients(db, world))["SAME"].given_name == "Alpha"
    with tenant_context(world.tenant_b):
        async with db() as session:
            names = list(await session.scalars(select(Patient.given_name)))
            held = await session.scalar(select(func.count()).select_from(PatientIdentifier))
    assert names == ["Beta"] and held == 1


async def test_a_database_outage_keeps_the_messages_in_order_until_it_ends(
    settings: Settings, world: World, json_feed: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the database fails, stored messages stay received and are tried again (nothing younger applied
    before them); once it answers they are applied, and drain() returns."""
    monkeypatch.setattr(feed_module, "RETRY_SECONDS", 0.0)
    feed = _feed(db, settings, world, json_feed)
    await feed.receive(_upsert("F-1", _ident("F-1")), None)
    calls = 0
    real = feed._apply_batch

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise OSError("database gone")
        return await real()

    monkeypatch.setattr(feed, "_apply_batch", flaky)
    runner = asyncio.create_task(feed.run())
    await asyncio.wait_for(feed.drain(), 10)
    assert calls >= 4 and not runner.done()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert (await _statuses(db, world))["F-1"] == "accepted"


async def test_an_identifier_too_long_for_the_record_is_kept_for_review(
    settings: Settings, world: World, json_feed: Any, db: Any
) -> None:
    """A value longer than the record holds (PostgreSQL refused it at the batch's commit, SQLite stored it): the
    host refuses the effect on both, the message is kept in error, and the rest of the batch is applied."""
    feed = _feed(db, settings, world, json_feed)
    await feed.receive(_upsert("L-1", _ident("L-1")), None)
    await feed.receive(_upsert("L-2", _ident("X" * 101)), None)
    await feed.receive(_upsert("L-3", _ident("L-3")), None)
    await feed.catch_up()
    statuses = await _statuses(db, world)
    assert (statuses["L-1"], statuses["L-2"], statuses["L-3"]) == ("accepted", "error", "accepted")


async def test_admissions_and_their_stays_are_applied_together_in_one_transaction(
    settings: Settings, world: World, json_feed: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New patients (appended as plain rows) and their stays (ORM objects that refer to them) in one batch: the
    rows are written before the unit of work's, so the batch goes through whole (it used to break the stay's
    foreign key and fall back to one message a transaction, right but five times slower)."""
    from datetime import UTC, datetime

    from plugin_sdk.payloads import EncounterRecord, PatientRef

    feed = _feed(db, settings, world, json_feed)
    for n in range(3):
        stay = fx.RecordEncounter(
            encounter=EncounterRecord(
                external_id=f"V-{n}",
                patient=PatientRef(identifiers=(_ident(f"B-{n}"),)),
                kind="inpatient",
                admitted_at=datetime(2026, 1, 5, 8, tzinfo=UTC),
            )
        )
        admission = msgspec.json.decode(_upsert(f"B-{n}", _ident(f"B-{n}")).encode(), type=InboundResult)
        text = msgspec.json.encode(InboundResult(control_id=f"B-{n}", effects=[*admission.effects, stay])).decode()
        await feed.receive(text, None)
    calls: list[int] = []
    real = feed._apply_oldest

    async def counted(limit: int) -> int:
        calls.append(limit)
        return await real(limit)

    monkeypatch.setattr(feed, "_apply_oldest", counted)
    assert await feed.catch_up() == 3
    assert calls == [feed_module.BATCH]  # one transaction, no refusal, no one-by-one
    assert set((await _statuses(db, world)).values()) == {"accepted"}
