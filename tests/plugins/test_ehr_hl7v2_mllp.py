"""The bundled HL7 v2 plugin behind the real MLLP listener, over a TCP socket: every message of the corpus
(in 7-byte pieces, so frames split across reads) is answered with the ACK code the corpus expects once stored,
what was accepted is in the tenant's record, what was not is kept with its raw text, and the whole corpus sent a
second time changes nothing (each control id applied once); in both acknowledgement modes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.db import make_engine, make_sessionmaker
from core.encounters.models import Encounter
from core.outbox import OutboxEvent
from core.plugins import mllp
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.plugins.registry import registry
from core.results.models import LabResult
from core.settings import Settings
from plugin_sdk.payloads import TenantInfo
from tenants.context import tenant_context
from tests.conftest import World
from tests.plugins.conftest import listening

CORPUS = Path(__file__).parent / "hl7"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def _port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["applied", "stored"])
async def feed(settings: Settings, world: World, request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, Any, Any]]:
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    plugin = registry().get("ehr_hl7v2")
    assert plugin is not None, "ehr_hl7v2 is bundled"
    tenant = TenantInfo(id=str(world.tenant_a), slug="hospital-a", name="Hospital A", kind="hospital")
    port, stop = _port(), asyncio.Event()
    listener = mllp.Feed(db, settings, tenant, plugin, ack=request.param)
    task = asyncio.create_task(mllp.serve(listener, "127.0.0.1", port, stop))
    await listening(port, task)

    async def configure(config: dict[str, Any]) -> None:
        await listener.drain()  # with --ack stored: what was acknowledged is applied with the config it came in
        with tenant_context(world.tenant_a):
            async with db() as session, session.begin():
                row = await session.scalar(select(PluginEnablement).where(PluginEnablement.plugin == "ehr_hl7v2"))
                if row is None:
                    session.add(PluginEnablement(plugin="ehr_hl7v2", enabled=True, config=config))
                else:
                    row.config = config

    yield port, configure, listener.drain
    stop.set()
    await asyncio.wait_for(task, 5)
    await engine.dispose()


async def _send_all(port: int, names: list[str]) -> list[str]:
    """Send the messages in 7-byte pieces on one connection; the MSA-1 of each reply, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = b"".join(mllp.START + (CORPUS / name).read_bytes() + mllp.END for name in names)
    for start in range(0, len(stream), 7):
        writer.write(stream[start : start + 7])
    await writer.drain()
    framer, replies = mllp.Framer(), []
    while len(replies) < len(names):
        replies += framer.feed(await asyncio.wait_for(reader.read(65536), 10))
    writer.close()
    codes = []
    for reply in replies:
        msa = next(line for line in reply.decode().split("\r") if line.startswith("MSA|"))
        codes.append(msa.split("|")[1])
    return codes


async def _count(settings: Settings, world: World, query: Any) -> int:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(world.tenant_a):
            async with make_sessionmaker(engine)() as session:
                return int(await session.scalar(query) or 0)
    finally:
        await engine.dispose()


async def test_the_corpus_over_a_socket(settings: Settings, world: World, feed: tuple[int, Any, Any]) -> None:
    port, configure, settle = feed  # settle: wait until what was acknowledged is applied (--ack stored)
    by_config: dict[str, list[str]] = {}
    for name, expected in sorted(EXPECTED["messages"].items()):
        by_config.setdefault(expected["config"], []).append(name)
    for config, names in by_config.items():
        await configure(EXPECTED["configs"][config])
        codes = await _send_all(port, names)
        assert dict(zip(names, codes, strict=True)) == {n: EXPECTED["messages"][n]["ack"] for n in names}
    await settle()
    stored = select(func.count()).select_from(InboundMessageRecord)
    accepted = await _count(settings, world, stored.where(InboundMessageRecord.status == "accepted"))
    kept = await _count(settings, world, stored.where(InboundMessageRecord.status == "error"))
    plan = EXPECTED["messages"].values()
    assert accepted == sum(1 for m in plan if m["ack"] == "AA")
    assert kept == sum(1 for m in plan if m["ack"] in ("AE", "AR"))  # unreadable ones too, with their raw text
    encounters = await _count(settings, world, select(func.count()).select_from(Encounter))
    results = await _count(settings, world, select(func.count()).select_from(LabResult))
    discharges = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.topic == "encounter.discharged")
    criticals = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.topic == "lab_result.critical_received")
    assert encounters > 0 and results > 0
    assert await _count(settings, world, discharges) > 0 and await _count(settings, world, criticals) > 0
    events_before = await _count(settings, world, select(func.count()).select_from(OutboxEvent))

    # The sender resends everything (it lost our ACKs): each control id is answered again, applied once.
    for config, names in by_config.items():
        await configure(EXPECTED["configs"][config])
        await _send_all(port, [n for n in names if EXPECTED["messages"][n]["ack"] == "AA"])
    await settle()
    assert await _count(settings, world, select(func.count()).select_from(Encounter)) == encounters
    assert await _count(settings, world, select(func.count()).select_from(LabResult)) == results
    assert await _count(settings, world, select(func.count()).select_from(OutboxEvent)) == events_before
