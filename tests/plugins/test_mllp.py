"""The MLLP listener over a real TCP socket, with a small inbound plugin of the test's own: frames split across
reads and several in one read, each message stored and applied before its ACK, a repeated control id applied
once, a message the plugin cannot read kept with its raw text and answered AE, and nothing lost when the
listener stops right after an ACK."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import types
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from core.db import make_engine, make_sessionmaker
from core.patients.models import Patient
from core.plugins import mllp
from core.plugins.models import InboundMessageRecord, PluginEnablement
from core.plugins.registry import registry
from core.results.models import LabResult
from core.settings import Settings
from plugin_sdk import InboundResult, Manifest, hookimpl
from plugin_sdk import effects as fx
from plugin_sdk.payloads import (
    Coding,
    Identifier,
    InboundError,
    ObservationRecord,
    PatientRecord,
    PatientRef,
    TenantInfo,
)
from tenants.context import tenant_context
from tests.conftest import World
from tests.plugins.conftest import listening

SYSTEM = "urn:test:mrn"


def _read(context: Any, message: Any) -> InboundResult | None:
    """Lines ``CTRL=<id>``, ``PAT=<mrn>^<given>^<family>^<birth date>`` and ``OBX=<loinc>^<value>^<flag>``."""
    fields = dict(line.split("=", 1) for line in message.text.split("\r") if "=" in line)
    control = fields.get("CTRL")
    effects: list[Any] = []
    if "PAT" in fields:
        mrn, given, family, born = fields["PAT"].split("^")
        ref = PatientRef(identifiers=(Identifier(system=SYSTEM, value=mrn),))
        record = PatientRecord(
            identifiers=ref.identifiers, given_name=given, family_name=family, birth_date=date.fromisoformat(born)
        )
        effects.append(fx.UpsertPatient(patient=record))
    elif "REF" in fields:  # a result for a patient the sender registered in another message
        ref = PatientRef(identifiers=(Identifier(system=SYSTEM, value=fields["REF"]),))
    else:
        return InboundResult(control_id=control, error=InboundError(text="no PAT line", location="PAT"))
    if "OBX" in fields:
        code, value, flag = fields["OBX"].split("^")
        effects.append(
            fx.AddObservation(
                observation=ObservationRecord(
                    external_id=f"{control}/1",
                    patient=ref,
                    code=Coding(system="http://loinc.org", code=code),
                    value=value,
                    interpretation=flag,  # type: ignore[arg-type]
                    effective_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
                )
            )
        )
    return InboundResult(control_id=control, effects=effects, summary="test message")


def _reply(context: Any, message: Any, outcome: str, error: str | None) -> str:
    control = next((line[5:] for line in message.text.split("\r") if line.startswith("CTRL=")), "")
    return f"ACK|{outcome}|{control}|{error or ''}"


def _plugin() -> types.ModuleType:
    module = types.ModuleType("carehub_pipe_feed")
    _read.__name__, _reply.__name__ = "carehub_inbound_message", "carehub_inbound_reply"
    module.carehub_inbound_message = hookimpl(_read)  # type: ignore[attr-defined]
    module.carehub_inbound_reply = hookimpl(_reply)  # type: ignore[attr-defined]
    module.MANIFEST = Manifest(  # type: ignore[attr-defined]
        name="pipe_feed",
        version="1",
        sdk=">=1.0,<2",
        title="test feed",
        hooks=("carehub_inbound_message", "carehub_inbound_reply"),
        data_categories=("demographics", "clinical_results"),
    )
    return module


@pytest.fixture
def pipe_feed() -> Iterator[Any]:
    found = registry()
    module = _plugin()
    found.add(module, "test", "pipe_feed")
    yield found.installed["pipe_feed"]
    found.pm.unregister(module)
    del found.installed["pipe_feed"]


def _port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def listener(settings: Settings, world: World, pipe_feed: Any) -> AsyncIterator[tuple[int, asyncio.Event]]:
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            session.add(PluginEnablement(plugin="pipe_feed", enabled=True, config={}))
    tenant = TenantInfo(id=str(world.tenant_a), slug="hospital-a", name="Hospital A", kind="hospital")
    port, stop = _port(), asyncio.Event()
    task = asyncio.create_task(mllp.serve(mllp.Feed(db, settings, tenant, pipe_feed), "127.0.0.1", port, stop))
    await listening(port, task)
    yield port, stop
    stop.set()
    await asyncio.wait_for(task, 5)
    await engine.dispose()


async def _replies(reader: asyncio.StreamReader, n: int) -> list[str]:
    framer, got = mllp.Framer(), []
    while len(got) < n:
        got += [raw.decode() for raw in framer.feed(await asyncio.wait_for(reader.read(4096), 5))]
    return got


async def _count(settings: Settings, tenant: uuid.UUID, query: Any) -> int:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(tenant):
            async with make_sessionmaker(engine)() as session:
                return int(await session.scalar(query) or 0)
    finally:
        await engine.dispose()


def test_frames_split_and_joined() -> None:
    framer = mllp.Framer()
    one, two = mllp.frame("A=1"), mllp.frame("B=2")
    assert framer.feed(b"noise" + one[:3]) == []
    assert framer.feed(one[3:] + two[:-1]) == [b"A=1"]
    assert framer.feed(two[-1:]) == [b"B=2"]


async def test_each_message_is_stored_before_its_ack_and_applied_once(
    settings: Settings, world: World, listener: tuple[int, asyncio.Event]
) -> None:
    port, stop = listener
    good = "CTRL=M-1\rPAT=T-77^Casey^Framer^1966-05-04\rOBX=2823-3^6.8^critical_high"
    broken = "CTRL=M-2\rWHO=nobody"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = mllp.frame(good) + mllp.frame(good) + mllp.frame(broken)
    for start in range(0, len(stream), 7):  # the frames arrive in pieces of 7 bytes
        writer.write(stream[start : start + 7])
        await writer.drain()
    replies = await _replies(reader, 3)
    assert replies == ["ACK|accepted|M-1|", "ACK|accepted|M-1|", "ACK|error|M-2|no PAT line"]
    stop.set()  # the listener stops right after the ACKs: what they acknowledged is stored
    writer.close()
    tenant = world.tenant_a
    assert await _count(settings, tenant, select(func.count()).select_from(Patient)) == 1
    critical = select(func.count()).select_from(LabResult).where(LabResult.interpretation == "critical")
    assert await _count(settings, tenant, critical) == 1
    accepted = select(InboundMessageRecord.repeats).where(InboundMessageRecord.status == "accepted")
    assert await _count(settings, tenant, accepted) == 1  # one row, one repeat
    kept = (
        select(func.count())
        .select_from(InboundMessageRecord)
        .where(InboundMessageRecord.status == "error", InboundMessageRecord.text == broken)
    )
    assert await _count(settings, tenant, kept) == 1
    assert await _count(settings, world.tenant_b, select(func.count()).select_from(Patient)) == 0


async def test_a_result_before_its_patient_is_kept_and_replayed_by_an_admin(
    settings: Settings, world: World, listener: tuple[int, asyncio.Event], client: Any
) -> None:
    from tests.conftest import login

    port, _stop = listener
    early = "CTRL=R-1\rREF=T-88\rOBX=718-7^7.1^low"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mllp.frame(early))
    [answer] = await _replies(reader, 1)
    assert answer.startswith("ACK|error|R-1|") and "T-88" in answer
    admin = await login(client, "admin.a@test.example", "hospital-a")
    listed = await client.get("/api/v1/inbound-messages?status=error", headers=admin)
    [kept] = listed.json()
    assert kept["text"] == early and kept["control_id"] == "R-1"
    assert (await client.post(f"/api/v1/inbound-messages/{kept['id']}/replay", headers=admin)).status_code == 200
    assert (await client.get("/api/v1/inbound-messages?status=error", headers=admin)).json()[0]["status"] == "error"

    writer.write(mllp.frame("CTRL=A-1\rPAT=T-88^Sam^Later^1980-02-02"))
    assert await _replies(reader, 1) == ["ACK|accepted|A-1|"]
    writer.close()
    replayed = await client.post(f"/api/v1/inbound-messages/{kept['id']}/replay", headers=admin)
    assert replayed.status_code == 200 and replayed.json()["status"] == "replayed", replayed.text
    again = await client.post(f"/api/v1/inbound-messages/{kept['id']}/replay", headers=admin)
    assert again.status_code == 409  # applied once
    assert await _count(settings, world.tenant_a, select(func.count()).select_from(LabResult)) == 1
    other = await login(client, "admin.b@test.example", "hospital-b")
    assert (await client.post(f"/api/v1/inbound-messages/{kept['id']}/replay", headers=other)).status_code == 404
    assert (await client.get("/api/v1/inbound-messages", headers=other)).json() == []


def _feed(settings: Settings, db: Any, world: World, plugin: Any, ack: str) -> mllp.Feed:
    tenant = TenantInfo(id=str(world.tenant_a), slug="hospital-a", name="Hospital A", kind="hospital")
    return mllp.Feed(db, settings, tenant, plugin, ack=ack)  # type: ignore[arg-type]


async def test_acknowledged_once_stored_then_applied_in_order(
    settings: Settings, world: World, pipe_feed: Any, client: Any
) -> None:
    """With --ack stored the sender has its AA once the message is stored; the listener applies the stored
    messages in arrival order (a result after its patient's registration finds the patient), keeps the one whose
    effects it refuses for review without a NAK, and applies everything acknowledged before it stops."""
    from tests.conftest import login

    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            session.add(PluginEnablement(plugin="pipe_feed", enabled=True, config={}))
    port, stop = _port(), asyncio.Event()
    task = asyncio.create_task(mllp.serve(_feed(settings, db, world, pipe_feed, "stored"), "127.0.0.1", port, stop))
    await listening(port, task)
    messages = [
        "CTRL=S-1\rPAT=T-90^Ari^Stored^1971-01-01",
        "CTRL=S-2\rREF=T-90\rOBX=2823-3^6.9^critical_high",  # needs S-1 applied first
        "CTRL=S-3\rREF=T-404\rOBX=718-7^7.1^low",  # no such patient: refused after its AA
        "CTRL=S-1\rPAT=T-90^Ari^Stored^1971-01-01",  # a repeat
        "CTRL=S-4\rWHO=nobody",  # unreadable: still NAKed at once
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(mllp.frame(m) for m in messages))
    replies = await _replies(reader, len(messages))
    assert replies == [
        "ACK|accepted|S-1|",
        "ACK|accepted|S-2|",
        "ACK|accepted|S-3|",
        "ACK|accepted|S-1|",
        "ACK|error|S-4|no PAT line",
    ]
    writer.close()
    stop.set()
    await asyncio.wait_for(task, 10)  # drains: every AA'd message applied or kept before it returns
    await engine.dispose()
    tenant = world.tenant_a
    assert await _count(settings, tenant, select(func.count()).select_from(Patient)) == 1
    critical = select(func.count()).select_from(LabResult).where(LabResult.interpretation == "critical")
    assert await _count(settings, tenant, critical) == 1
    statuses = select(func.count()).select_from(InboundMessageRecord)
    assert await _count(settings, tenant, statuses.where(InboundMessageRecord.status == "accepted")) == 2
    assert await _count(settings, tenant, statuses.where(InboundMessageRecord.status == "received")) == 0
    admin = await login(client, "admin.a@test.example", "hospital-a")
    listed = await client.get("/api/v1/inbound-messages?status=error", headers=admin)
    kept = {m["control_id"]: m for m in listed.json()}
    assert set(kept) == {"S-3", "S-4"} and "T-404" in kept["S-3"]["error"]


async def test_messages_stored_by_a_stopped_listener_are_applied_by_the_next(
    settings: Settings, world: World, pipe_feed: Any
) -> None:
    """A listener killed after its AAs and before applying them: the messages are stored, received; the next
    listener of the tenant (in either mode) reads them again and applies them, in order, before it listens."""
    engine = make_engine(settings.database_url)
    db = make_sessionmaker(engine)
    with tenant_context(world.tenant_a):
        async with db() as session, session.begin():
            session.add(PluginEnablement(plugin="pipe_feed", enabled=True, config={}))
    killed = _feed(settings, db, world, pipe_feed, "stored")  # its applier never runs
    first = await killed.receive("CTRL=K-1\rPAT=T-91^Kim^Killed^1972-02-02", None)
    second = await killed.receive("CTRL=K-2\rREF=T-91\rOBX=718-7^7.1^low", None)
    assert (first, second) == ("ACK|accepted|K-1|", "ACK|accepted|K-2|")
    waiting = select(func.count()).select_from(InboundMessageRecord).where(InboundMessageRecord.status == "received")
    assert await _count(settings, world.tenant_a, waiting) == 2
    assert await _count(settings, world.tenant_a, select(func.count()).select_from(Patient)) == 0
    resent = await killed.receive("CTRL=K-1\rPAT=T-91^Kim^Killed^1972-02-02", None)
    assert resent == "ACK|accepted|K-1|"  # a received control id is a repeat too

    port, stop = _port(), asyncio.Event()
    task = asyncio.create_task(mllp.serve(_feed(settings, db, world, pipe_feed, "applied"), "127.0.0.1", port, stop))
    await listening(port, task)  # it applies what was stored before it listens
    stop.set()
    await asyncio.wait_for(task, 10)
    await engine.dispose()
    assert await _count(settings, world.tenant_a, waiting) == 0
    assert await _count(settings, world.tenant_a, select(func.count()).select_from(Patient)) == 1
    assert await _count(settings, world.tenant_a, select(func.count()).select_from(LabResult)) == 1


def test_the_listener_command_offers_each_acknowledgement_mode() -> None:
    from api.cli import build_parser
    from core.plugins.feed import ACK_MODES

    args = build_parser().parse_args(["mllp", "--tenant", "t", "--port", "2575"])
    assert args.ack == "applied"
    for mode in ACK_MODES:
        assert build_parser().parse_args(["mllp", "--tenant", "t", "--port", "1", "--ack", mode]).ack == mode


@pytest.fixture
def policy_read_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listeners read the network's word at every message (by default they trust it for 5 s)."""
    from core.plugins import feed

    monkeypatch.setattr(feed, "POLICY_SECONDS", 0.0)


async def test_a_plugin_the_network_forbids_takes_no_message_and_no_replay(
    settings: Settings, world: World, policy_read_each_time: None, listener: tuple[int, asyncio.Event], client: Any
) -> None:
    """The network admin forbids the plugin: the tenant's running listener stores nothing more (AR: send it
    again once allowed) within a few seconds, and a replay of a kept message is refused (409)."""
    from tests.conftest import login

    port, _stop = listener
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mllp.frame("CTRL=N-0\rREF=T-404\rOBX=718-7^7.1^low"))  # kept in error, for the replay below
    assert (await _replies(reader, 1))[0].startswith("ACK|error|N-0|")
    network = await login(client, "net@test.example", None)
    forbidden = await client.put("/api/v1/network/plugins/pipe_feed", json={"allowed": False}, headers=network)
    assert forbidden.status_code == 200, forbidden.text
    writer.write(mllp.frame("CTRL=N-1\rPAT=T-95^Nat^Banned^1970-01-01"))
    assert await _replies(reader, 1) == ["ACK|rejected|N-1|the message could not be stored; send it again"]
    writer.close()
    assert await _count(settings, world.tenant_a, select(func.count()).select_from(Patient)) == 0
    admin = await login(client, "admin.a@test.example", "hospital-a")
    [kept] = (await client.get("/api/v1/inbound-messages?status=error", headers=admin)).json()
    refused = await client.post(f"/api/v1/inbound-messages/{kept['id']}/replay", headers=admin)
    assert refused.status_code == 409 and "network" in refused.json()["detail"], refused.text


def test_the_plugins_command_makes_a_secret_key(capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.fernet import Fernet

    from api.cli import main

    assert main(["plugins", "new-key"]) == 0
    Fernet(capsys.readouterr().out.strip())  # a key the settings take


@pytest.mark.parametrize(
    ("text", "control", "version"),
    [
        ("MSH|^~\\&|EPIC|GOODHOSP|CAREHUB|RIVERNET|20260105||ADT^A01|X1|P|2.5.1\rPID|1", "X1", "2.5.1"),
        ("MSH#^~\\&#EP|IC#GOOD#C#R#2026##ADT#C-9#P#2.3", "C-9", "2.3"),
        ("not hl7 at all", "", "2.5.1"),
    ],
)
def test_without_a_plugin_reply_the_host_answers_a_readable_ar(text: str, control: str, version: str) -> None:
    """When the plugin builds no reply, the sender still gets an HL7 ACK it can match: MSH, and MSA AR with the
    message's control id (the sender resends it)."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    from core.plugins.feed import fallback_ack

    ack = parse_message(fallback_ack(text), validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    assert ack.msh.msh_12.to_er7() == version and ack.msh.msh_9.to_er7() == "ACK"
    assert ack.msa.msa_1.to_er7() == "AR" and ack.msa.msa_2.to_er7() == control
