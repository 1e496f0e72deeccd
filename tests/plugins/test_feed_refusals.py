"""What a second review found in the feed, the sync's kept records and the diagnosis labels, each now a test: a
refused page's audit event kept when the next page is refused too, a value the database refuses (too long for its
column) kept for review in the stored feed and the sync instead of retried for ever, and a transfer without
diagnoses leaving the stay's label as it was."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from core.audit import AuditEvent
from core.db import make_engine, make_sessionmaker
from core.encounters.models import Encounter
from core.plugins import sync
from core.plugins.effects import Applier, EffectRejected
from core.plugins.feed import Feed
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.plugins.registry import registry
from core.settings import Settings
from plugin_sdk import effects as fx
from plugin_sdk.payloads import EncounterRecord, Identifier, PatientRecord, PatientRef, TenantInfo
from tenants.context import tenant_context
from tests.conftest import World
from tests.plugins.test_ehr_hl7v2 import CONFIGS, corpus_text

SYSTEM = "urn:test:second-review"


def _upsert(value: str, born: date = date(1970, 1, 1)) -> fx.UpsertPatient:
    record = PatientRecord(
        identifiers=(Identifier(system=SYSTEM, value=value),), given_name="Sam", family_name="Review", birth_date=born
    )
    return fx.UpsertPatient(patient=record)


# -- the sync's refused pages --------------------------------------------------------------------------------------


async def test_the_audit_of_a_refused_page_survives_the_next_refused_page(
    settings: Settings,
    world: World,
    json_feed: Any,
    db: Any,
) -> None:
    """What ``_pull`` does for two pages in a row that each hold a refused record: page 1 goes through
    ``keep_refused`` (its ``plugin.records_refused`` audit row is appended outside any savepoint, as a pending
    plain row), then page 2 is tried whole in a savepoint, which is refused and rolled back. The pending audit row
    of page 1 is written by page 2's first statement, inside page 2's savepoint, and rolled back with it."""
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == "json_feed"))
            hook = "carehub_ehr_pull_patients"
            future = date(2099, 1, 1)
            await sync.keep_refused(session, row, json_feed, hook, [_upsert("K-1"), _upsert("K-2", future)])
            with pytest.raises(EffectRejected):  # page 2, whole, as _pull tries it first
                async with session.begin_nested():
                    await Applier(session, json_feed.manifest).apply_all([_upsert("K-3"), _upsert("K-4", future)])
            await sync.keep_refused(session, row, json_feed, hook, [_upsert("K-3"), _upsert("K-4", future)])
    with tenant_context(world.tenant_a):
        async with db() as session:
            kept = await session.scalar(
                select(func.count()).select_from(InboundMessageRecord).where(InboundMessageRecord.status == "error")
            )
            audited = await session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "plugin.records_refused")
            )
    assert kept == 2
    assert audited == 2, "the first page's plugin.records_refused audit event was rolled back with the next page"


async def test_a_record_the_database_refuses_is_kept_and_does_not_fail_the_sync(
    settings: Settings,
    world: World,
    json_feed: Any,
    db: Any,
) -> None:
    """A pulled stay whose location is longer than the column (PostgreSQL refuses it, SQLite does not check
    lengths): the refusal is kept for review like the host's own, and the sync job does not fail (it used to,
    at every tick on the same page)."""
    stay = fx.RecordEncounter(
        encounter=EncounterRecord(
            external_id="V-LONG",
            patient=PatientRef(identifiers=(Identifier(system=SYSTEM, value="L-1"),)),
            kind="inpatient",
            admitted_at=datetime(2026, 1, 5, 8, tzinfo=UTC),
            location="X" * 300,
        )
    )
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == "json_feed"))
            await sync.keep_refused(session, row, json_feed, "carehub_ehr_pull_encounters", [_upsert("L-1"), stay])


# -- labels --------------------------------------------------------------------------------------------------------


@pytest.fixture
async def hl7(settings: Settings, world: World) -> AsyncIterator[Feed]:
    engine = make_engine(settings.database_url)
    maker = make_sessionmaker(engine)
    plugin = registry().get("ehr_hl7v2")
    assert plugin is not None
    with tenant_context(world.tenant_a):
        async with maker() as session, session.begin():
            session.add(PluginEnablement(plugin="ehr_hl7v2", enabled=True, config=CONFIGS["epic"]))
    tenant = TenantInfo(id=str(world.tenant_a), slug="hospital-a", name="Hospital A", kind="hospital")
    yield Feed(maker, settings, tenant, plugin, ack="applied")
    await engine.dispose()


async def test_a_transfer_without_diagnoses_keeps_the_stays_label(hl7: Feed, world: World) -> None:
    """A01 admits visit V20260105001 for an opioid dependence (labelled substance_use_disorder); the A02 transfer
    of the same visit carries no DG1 (as the corpus's own does): adt.encounter sets data_category None and
    ``record_encounter`` overwrites the stay's label, so the Part 2 stay is shared as an ordinary clinical
    record from then on."""
    admit = corpus_text("epic_adt_a01_admit_v251.hl7").replace(
        "DG1|2||E11.9^Type 2 diabetes mellitus without complications^I10", "DG1|2||F11.20^Opioid dependence^I10"
    )
    assert "|AA|" in (await hl7.receive(admit, None)).replace("\r", "|")

    async def label() -> str | None:
        with tenant_context(world.tenant_a):
            async with hl7.db() as session:
                stay = await session.scalar(select(Encounter).where(Encounter.external_id == "V20260105001"))
                assert stay is not None
                return stay.data_category

    assert await label() == "substance_use_disorder"
    transfer = corpus_text("epic_adt_a02_transfer_v251.hl7")
    assert "DG1" not in transfer
    assert "|AA|" in (await hl7.receive(transfer, None)).replace("\r", "|")
    assert await label() == "substance_use_disorder"


_ = uuid


async def test_a_stored_message_postgres_refuses_as_too_long_does_not_hold_back_the_feed(
    settings: Settings,
    world: World,
    json_feed: Any,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stored mode: S-1 (acknowledged AA) carries a stay whose location is too long for its column. asyncpg's
    error reaches carehub as a plain DBAPIError (SQLSTATE 22001); it used to be retried for ever, holding S-2
    back. Now the batch is applied one by one and S-1 kept in error."""
    import asyncio

    import msgspec

    from core.plugins import feed as feed_module
    from plugin_sdk import InboundResult

    monkeypatch.setattr(feed_module, "RETRY_SECONDS", 0.01)
    stay = fx.RecordEncounter(
        encounter=EncounterRecord(
            external_id="V-S1",
            patient=PatientRef(identifiers=(Identifier(system=SYSTEM, value="S-1"),)),
            kind="inpatient",
            admitted_at=datetime(2026, 1, 5, 8, tzinfo=UTC),
            location="X" * 300,
        )
    )
    tenant = TenantInfo(id=str(world.tenant_a), slug="hospital-a", name="Hospital A", kind="hospital")
    feed = Feed(db, settings, tenant, json_feed, ack="stored")
    for control, effects in (("S-1", [_upsert("S-1"), stay]), ("S-2", [_upsert("S-2")])):
        text = msgspec.json.encode(InboundResult(control_id=control, effects=effects)).decode()
        assert (await feed.receive(text, None)).startswith("ACK|accepted")
    try:
        await asyncio.wait_for(feed.catch_up(), 5)
    except TimeoutError:
        pass
    with tenant_context(world.tenant_a):
        async with db() as session:
            rows = dict(
                (await session.execute(select(InboundMessageRecord.control_id, InboundMessageRecord.status))).all()
            )
    # PostgreSQL refuses the value (the message is kept for review); SQLite does not check lengths and stores it.
    expected = "accepted" if settings.database_url.startswith("sqlite") else "error"
    assert rows == {"S-1": expected, "S-2": "accepted"}, rows
