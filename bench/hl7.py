"""HL7 v2 messages per second through ``carehub mllp`` into the database, next to the persist-before-ACK floor.

    python -m bench.hl7 [patients]   # CAREHUB_DATABASE_URL / CAREHUB_MIGRATION_DATABASE_URL as for bench.jobs

Each patient is three messages, as a hospital sends them: an admission (ADT^A01 with two diagnoses), a
chemistry panel (ORU^R01, four results, one abnormal) and a discharge (ADT^A03). Both servers run as their own
process on a free port, and the client (this process) sends over real TCP with MLLP framing, waiting for each
ACK before the next message on a connection, as senders do; the rate is measured with one connection and with
four (four feeds, or a sender with four interfaces).

- ``carehub``: the real listener (``carehub mllp``) with the bundled ``ehr_hl7v2`` plugin enabled for the
  tenant, in each acknowledgement mode. ``--ack applied`` (the default): the message read, stored with its raw
  text, its effects applied (patient, encounter, diagnoses, observations, the events the rules act on) and
  committed, then the plugin's ACK built and sent. ``--ack stored``: read, stored with its control id reserved,
  committed and answered; the listener applies the stored messages right after, in batches. For it the run also
  reports the rate until the last message is applied (the rate a feed can keep up).
- ``floor``: a bare asyncio server on the same engine that parses each message with the same ``hl7`` package,
  commits its raw text in one INSERT and answers a hand-formatted ACK: what persist-before-ACK cannot go below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import hl7
from sqlalchemy import text

from bench.jobs import bench_settings, new_tenant
from core import migrate
from core.db import make_engine, make_sessionmaker
from core.plugins import mllp
from core.plugins.models import PluginEnablement
from core.settings import Settings
from tenants.context import network_scope, tenant_context
from tenants.models import Tenant

CONFIG = {
    "timezone": "America/New_York",
    "assigning_authority_systems": {"GOODHOSP": "urn:oid:2.16.840.1.113883.3.9999.1"},
}
FLOOR_TABLE = "bench_hl7_floor"

A01 = (
    "MSH|^~\\&|EPIC|GOODHOSP|CAREHUB|RIVERNET|20260105083000-0500||ADT^A01^ADT_A01|{run}A{n}|P|2.5.1|||AL|NE\r"
    "EVN|A01|20260105083000-0500\r"
    "PID|1||B{run}{n}^^^GOODHOSP^MR||BENCH^PATIENT{n}^Q^^^^L||19700101|F|||100 FAKE ST^^TESTVILLE^ZZ^00000^USA^H"
    "||^PRN^PH^^1^555^5550100|||S||ACCT{n}\r"
    "PV1|1|I|4W^401^A^GOODHOSP||||1234^TESTDOC^PRIMARY^^^^MD|||MED||||||||INP|V{run}{n}^^^GOODHOSP^VN|SELF"
    "||||||||||||||||||||||||20260105080000-0500\r"
    "DG1|1||I50.9^Heart failure, unspecified^I10||20260105|A\r"
    "DG1|2||E11.9^Type 2 diabetes mellitus without complications^I10||20260105|A\r"
)
ORU = (
    "MSH|^~\\&|EPIC|GOODHOSP|CAREHUB|RIVERNET|20260106064500-0500||ORU^R01^ORU_R01|{run}R{n}|P|2.5.1\r"
    "PID|1||B{run}{n}^^^GOODHOSP^MR||BENCH^PATIENT{n}^Q^^^^L||19700101|F\r"
    "OBR|1||F{run}{n}^LAB|24323-8^Comprehensive metabolic panel^LN|||20260106061500-0500||||||||||||||||||F\r"
    "OBX|1|NM|2823-3^Potassium^LN||4.1|mmol/L|3.5-5.1|N|||F\r"
    "OBX|2|NM|2345-7^Glucose^LN||182|mg/dL|70-99|H|||F\r"
    "OBX|3|NM|2951-2^Sodium^LN||139|mmol/L|136-145|N|||F\r"
    "OBX|4|NM|2160-0^Creatinine^LN||1.1|mg/dL|0.6-1.2|N|||F\r"
)
A03 = (
    "MSH|^~\\&|EPIC|GOODHOSP|CAREHUB|RIVERNET|20260108143000-0500||ADT^A03^ADT_A03|{run}D{n}|P|2.5.1\r"
    "EVN|A03|20260108143000-0500\r"
    "PID|1||B{run}{n}^^^GOODHOSP^MR||BENCH^PATIENT{n}^Q^^^^L||19700101|F\r"
    "PV1|1|I|4W^401^A^GOODHOSP|||||||||||||||INP|V{run}{n}^^^GOODHOSP^VN|||||||||||||||||01||||||||"
    "20260105080000-0500|20260108141500-0500\r"
)


def messages(run: str, patients: range) -> list[str]:
    return [template.format(run=run, n=n) for n in patients for template in (A01, ORU, A03)]


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the floor -------------------------------------------------------------------------------------------------


async def floor_serve(settings: Settings, port: int) -> None:
    engine = make_engine(settings.database_url, pool_size=4)
    insert = text(f"INSERT INTO {FLOOR_TABLE} (id, control_id, body, received_at) VALUES (:i, :c, :b, :r)")  # noqa: S608

    async def receive(body: str) -> str:
        message = hl7.parse(body)
        msh = message.segment("MSH")
        control = str(msh[10])
        async with engine.begin() as conn:
            await conn.execute(
                insert, {"i": str(uuid.uuid4()), "c": control, "b": body, "r": datetime.now(UTC).isoformat()}
            )
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        return (
            f"MSH|^~\\&|{msh[5]}|{msh[6]}|{msh[3]}|{msh[4]}|{stamp}||ACK|{uuid.uuid4().hex[:20]}|P|{msh[12]}\r"
            f"MSA|AA|{control}\r"
        )

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = mllp.Framer()
        try:
            while data := await reader.read(65536):
                for raw in framer.feed(data):
                    writer.write(mllp.frame(await receive(mllp.decode(raw))))
                    await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    print("floor listening", flush=True)
    async with server:
        await asyncio.Event().wait()


# -- the client ------------------------------------------------------------------------------------------------


async def send(port: int, batch: list[str]) -> list[str]:
    """Send each message and wait for its answer; the MSA-1 codes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framer, codes = mllp.Framer(), []
    for body in batch:
        writer.write(mllp.frame(body))
        await writer.drain()
        replies: list[bytes] = []
        while not replies:
            data = await asyncio.wait_for(reader.read(65536), 30)
            if not data:
                raise ConnectionError("the listener closed the connection")
            replies = framer.feed(data)
        msa = next(line for line in replies[0].decode().split("\r") if line.startswith("MSA|"))
        codes.append(msa.split("|")[1])
    writer.close()
    return codes


async def drive(port: int, run: str, patients: int, connections: int) -> float:
    """Messages per second: ``patients`` patients' messages spread over ``connections`` connections."""
    per = max(1, patients // connections)
    batches = [messages(run, range(c * per, (c + 1) * per)) for c in range(connections)]
    began = time.perf_counter()
    results = await asyncio.gather(*(send(port, batch) for batch in batches))
    elapsed = time.perf_counter() - began
    codes = [code for result in results for code in result]
    refused = [code for code in codes if code != "AA"]
    assert not refused, f"{len(refused)} of {len(codes)} messages not accepted: {sorted(set(refused))}"
    return len(codes) / elapsed


async def wait_applied(settings: Settings, expected: int, began: float) -> float:
    """Messages per second from ``began`` until no stored message waits: the ``expected`` of the run applied."""
    statement = text("SELECT count(*) FROM inbound_messages WHERE status = 'received'")  # owner's view: no RLS
    owner = make_engine(settings.owner_database_url)
    try:
        while True:
            async with owner.connect() as conn:
                if not await conn.scalar(statement):
                    return expected / (time.perf_counter() - began)
            await asyncio.sleep(0.02)
    finally:
        await owner.dispose()


def start(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
    for _ in range(200):
        with contextlib.closing(socket.socket()) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        if process.poll() is not None:
            raise SystemExit(f"{argv[0]} exited: {process.stdout.read().decode() if process.stdout else ''}")
        time.sleep(0.05)
    raise SystemExit(f"{' '.join(argv)} did not listen on {port}")


async def prepare(settings: Settings) -> str:
    """A tenant with ehr_hl7v2 enabled, and the floor's table; the tenant's slug."""
    await migrate.grant_app_role(settings)
    tenant_id = await new_tenant(settings, "Bench Hospital")
    owner = make_engine(settings.owner_database_url)
    async with owner.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {FLOOR_TABLE}"))
        await conn.execute(
            text(
                f"CREATE TABLE {FLOOR_TABLE} (id varchar(36) PRIMARY KEY, control_id varchar(64) NOT NULL,"
                " body text NOT NULL, received_at varchar(40) NOT NULL)"
            )
        )
    await owner.dispose()
    await migrate.grant_app_role(settings)  # the new table too
    engine = make_engine(settings.database_url)
    with tenant_context(tenant_id):
        async with make_sessionmaker(engine)() as session, session.begin():
            session.add(PluginEnablement(plugin="ehr_hl7v2", enabled=True, config=CONFIG))
    with network_scope("bench: the tenant's slug"):
        async with make_sessionmaker(engine)() as session:
            tenant = await session.get(Tenant, tenant_id)
            assert tenant is not None
            slug = tenant.slug
    await engine.dispose()
    return slug


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "floor":
        asyncio.run(floor_serve(bench_settings(), int(sys.argv[2])))
        return
    patients = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    settings = bench_settings()
    slug = asyncio.run(prepare(settings))
    env = {**os.environ, "CAREHUB_DATABASE_URL": settings.database_url}
    if settings.migration_database_url:
        env["CAREHUB_MIGRATION_DATABASE_URL"] = settings.migration_database_url
    carehub = os.path.join(os.path.dirname(sys.executable), "carehub")
    ports = {mode: free_port() for mode in ("applied", "stored")}
    listeners = {
        mode: start(
            [carehub, "mllp", "--tenant", slug, "--host", "127.0.0.1", "--port", str(port), "--ack", mode],
            env,
            port,
        )
        for mode, port in ports.items()
    }
    floor = free_port()
    bare = start([sys.executable, "-m", "bench.hl7", "floor", str(floor)], env, floor)
    database = settings.database_url.split(":")[0]
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; {database}")
    print(f"{patients} patients x (ADT^A01, ORU^R01 with 4 OBX, ADT^A03) per cell; each ACK awaited per connection")
    rounds = int(os.environ.get("CAREHUB_BENCH_ROUNDS", "3"))
    print(f"the median of {rounds} rounds per cell (CAREHUB_BENCH_ROUNDS); the order of the servers rotates")
    try:
        for connections in (1, 4):
            cells: dict[str, list[float]] = {"floor": [], "applied": [], "stored": [], "caught_up": []}
            for round_ in range(rounds):
                run = uuid.uuid4().hex[:6].upper()
                for port in (*ports.values(), floor):  # warm each (imports, pools, the plugin's first read)
                    asyncio.run(drive(port, run + f"W{port}", 4, 1))
                asyncio.run(wait_applied(settings, 1, time.perf_counter()))
                order = ["floor", "applied", "stored"]
                for name in order[round_ % 3 :] + order[: round_ % 3]:
                    port = floor if name == "floor" else ports[name]
                    began = time.perf_counter()
                    cells[name].append(asyncio.run(drive(port, f"{run}{name[0].upper()}", patients, connections)))
                    if name == "stored":
                        sent = 3 * max(1, patients // connections) * connections
                        cells["caught_up"].append(asyncio.run(wait_applied(settings, sent, began)))
            base, applied, stored, caught_up = (statistics.median(cells[k]) for k in cells)
            plural = "s" if connections > 1 else " "
            print(f"{connections} connection{plural}: floor (parse + one INSERT + ACK)  {base:8,.0f} msg/s")
            for name, rate in (
                ("--ack applied (AA once applied)", applied),
                ("--ack stored  (AA once stored) ", stored),
                ("  ... and every message applied", caught_up),
            ):
                print(f"  carehub mllp {name} {rate:8,.0f} msg/s  {rate / base:4.0%} of the floor")
    finally:
        for process in (*listeners.values(), bare):
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
