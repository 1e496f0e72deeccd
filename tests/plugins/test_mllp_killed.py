"""The real ``carehub mllp`` process, killed with SIGKILL right after its ACKs: every acknowledged message is in
the database (applied, or with ``--ack stored`` stored as received), and the next listener of the tenant applies
what was stored before it listens. Nothing acknowledged is lost, in either mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.db import make_engine, make_sessionmaker
from core.encounters.models import Encounter
from core.plugins import mllp
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.results.models import LabResult
from core.settings import Settings
from tenants.context import tenant_context
from tests.conftest import World

CORPUS = Path(__file__).parent / "hl7"
MESSAGES = ("epic_adt_a01_admit_v251.hl7", "epic_oru_r01_cbc_v251.hl7", "epic_adt_a03_discharge_home_v251.hl7")
EPIC = {
    "timezone": "America/New_York",
    "assigning_authority_systems": {
        "GOODHOSP": "urn:oid:2.16.840.1.113883.3.9999.1",
        "EPI": "urn:oid:2.16.840.1.113883.3.9999.2",
    },
}


def _port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listen(settings: Settings, slug: str, ack: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _port()
    env = {**os.environ, "CAREHUB_DATABASE_URL": settings.database_url, "CAREHUB_ENV": "test"}
    if settings.migration_database_url:
        env["CAREHUB_MIGRATION_DATABASE_URL"] = settings.migration_database_url
    carehub = os.path.join(os.path.dirname(sys.executable), "carehub")
    argv = [carehub, "mllp", "--tenant", slug, "--host", "127.0.0.1", "--port", str(port), "--ack", ack]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process, port


async def _ready(process: subprocess.Popen[bytes], port: int) -> None:
    for _ in range(300):
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"carehub mllp exited: {output}")
        with contextlib.closing(socket.socket()) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("carehub mllp did not listen")


async def _send(port: int) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    codes = []
    framer = mllp.Framer()
    for name in MESSAGES:
        writer.write(mllp.START + (CORPUS / name).read_bytes() + mllp.END)
        await writer.drain()
        replies: list[bytes] = []
        while not replies:
            replies = framer.feed(await asyncio.wait_for(reader.read(65536), 20))
        msa = next(line for line in replies[0].decode().split("\r") if line.startswith("MSA|"))
        codes.append(msa.split("|")[1])
    writer.close()
    return codes


async def _count(settings: Settings, world: World, query: Any) -> int:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(world.tenant_a):
            async with make_sessionmaker(engine)() as session:
                return int(await session.scalar(query) or 0)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("ack", ["applied", "stored"])
async def test_a_listener_killed_after_its_acks_loses_nothing(settings: Settings, world: World, ack: str) -> None:
    engine = make_engine(settings.database_url)
    with tenant_context(world.tenant_a):
        async with make_sessionmaker(engine)() as session, session.begin():
            session.add(PluginEnablement(plugin="ehr_hl7v2", enabled=True, config=EPIC))
    await engine.dispose()

    process, port = _listen(settings, world.slug_a, ack)
    try:
        await _ready(process, port)
        assert await _send(port) == ["AA", "AA", "AA"]
    finally:
        process.send_signal(signal.SIGKILL)  # no drain, no shutdown: what the ACKs promised must already be kept
        process.wait(10)
    stored = select(func.count()).select_from(InboundMessageRecord)
    assert await _count(settings, world, stored.where(InboundMessageRecord.status.in_(("accepted", "received")))) == 3

    nxt, port = _listen(settings, world.slug_a, "applied")
    try:
        await _ready(nxt, port)  # it applies what is stored before it listens
    finally:
        nxt.send_signal(signal.SIGTERM)
        nxt.wait(20)
    assert await _count(settings, world, stored.where(InboundMessageRecord.status == "accepted")) == 3
    discharged = select(func.count()).select_from(Encounter).where(Encounter.discharged_at.is_not(None))
    assert await _count(settings, world, discharged) == 1
    assert await _count(settings, world, select(func.count()).select_from(LabResult)) >= 2
