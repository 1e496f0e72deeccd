"""The chaos suite's own services and the real carehub processes it drives.

Everything here belongs to one test module: a ``redis-server`` without persistence on a free port (killed with
SIGKILL and restarted empty on the same port), a TCP proxy in front of PostgreSQL that can be cut (every
connection closed, new ones refused, as a stopped server does) and restored, a database of the suite's own, and
the processes of a production deployment: ``carehub serve``, two ``carehub worker`` and two ``carehub scheduler``,
each logging to a file that a failing test shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import URL, make_url

REPO = Path(__file__).resolve().parents[2]
CAREHUB = REPO / ".venv" / "bin" / "carehub"
PASSWORD = "chaos-suite-password-1"
LEADER_KEY = "carehub:scheduler:leader"

# Short job timings: the suite waits for real retries, redeliveries and leases.
JOB_TIMINGS = {
    "CAREHUB_SCHEDULER_TICK_MS": "1000",
    "CAREHUB_RELAY_INTERVAL_MS": "200",
    "CAREHUB_JOB_MIN_BACKOFF_MS": "200",
    "CAREHUB_JOB_MAX_BACKOFF_MS": "2000",
    "CAREHUB_JOB_HEARTBEAT_TIMEOUT_MS": "2000",
    # A no-show's handler takes milliseconds; the delivery timeout must be longer than an attempt may run.
    "CAREHUB_JOB_TIME_LIMIT_MS": "5000",
    # How long a delivery handed to the broker may go without an outcome before the relay hands it over again.
    "CAREHUB_JOB_DELIVERY_TIMEOUT_MS": "10000",
    "CAREHUB_JOB_WORKER_THREADS": "2",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Any, seconds: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {seconds:g} s")
        time.sleep(every)


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


# Processes -------------------------------------------------------------------------------------------------------


class Service:
    """One process, logging (stdout and stderr) to its own file; started again, the log goes on."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log.open("a") as out:
            out.write(f"\n===== {self.name}: starting at {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n")
            out.flush()
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        self.frozen = False
        self.note(f"pid {self.process.pid}")

    def note(self, text: str) -> None:
        with self.log.open("a") as out:
            out.write(f"===== {self.name} ({time.strftime('%H:%M:%S')}): {text}\n")

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.note(f"sent {sig.name}")
        self.process.send_signal(sig)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.frozen and self.alive():
            self.signal(signal.SIGCONT)
        self.frozen = False

    def kill9(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
            assert self.process is not None
            self.process.wait(10)

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.thaw()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill9()


class RedisServer(Service):
    """A ``redis-server`` of the suite's own: no RDB snapshots, no AOF, so a SIGKILL loses everything it held."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        data = workdir / "redis"
        data.mkdir(exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(data), "--protected-mode", "no"]
        super().__init__("redis-server", argv, dict(os.environ), workdir / "redis-server.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        super().start()

        def answers() -> bool:
            with contextlib.closing(self.client()) as client:
                return bool(client.ping())

        wait_until(answers, 15, f"redis-server on port {self.port}")


# The cuttable proxy in front of PostgreSQL -----------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; :meth:`cut` closes every connection and refuses new ones (the port
    is closed, as a stopped PostgreSQL's is), :meth:`restore` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        self.restore()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(15)

    @property
    def is_cut(self) -> bool:
        return self._server is None

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        if self._server is None:
            self._call(self._listen())

    def close(self) -> None:
        if self._thread.is_alive():
            self.cut()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._open):
            writer.transport.abort()  # a reset, at once, for both ends of every connection
        self._open.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections += 1
        pair = {client_writer, upstream_writer}
        self._open |= pair
        try:
            await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))
        finally:
            self._open -= pair
            for writer in pair:
                writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()


# The database ----------------------------------------------------------------------------------------------------


def asyncpg_dsn(url: str | URL) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def chaos_database_name(configured: str, worker: str | None) -> str:
    """``<configured name>_chaos`` (plus the xdist worker id): never a database the rest of the suite uses."""
    name = make_url(configured).database or "carehub"
    return f"{name}_chaos" + (f"_{worker}" if worker else "")


async def _admin(owner_url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(make_url(owner_url).set(database="postgres")))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def create_database(owner_url: str, name: str) -> None:
    asyncio.run(_admin(owner_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_admin(owner_url, f'CREATE DATABASE "{name}"'))


def drop_database(owner_url: str, name: str) -> None:
    asyncio.run(_admin(owner_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# The deployment --------------------------------------------------------------------------------------------------


@dataclass
class Facility:
    tenant_id: str
    slug: str
    admin_email: str
    admin_user_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)


class Deployment:
    """carehub in production shape against the suite's own Redis and (through the proxy) its own database."""

    def __init__(self, workdir: Path, owner_url: str, app_url: str, database: str) -> None:
        self.workdir = workdir
        self.redis = RedisServer(workdir)
        pg = make_url(app_url)
        self.proxy = TcpProxy(pg.host or "127.0.0.1", pg.port or 5432)
        self.database = database
        self.owner_url = make_url(owner_url).set(database=database).render_as_string(hide_password=False)
        self.app_url = make_url(app_url).set(database=database, host="127.0.0.1", port=self.proxy.port)
        self.api_port = free_port()
        self.api: Service | None = None
        self.workers: list[Service] = []
        self.schedulers: list[Service] = []
        self.started = 0
        self.facility: Facility | None = None

    # environment and commands

    def env(self, **extra: str) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")}
        values = {
            **inherited,
            "PYTHONUNBUFFERED": "1",
            "CAREHUB_ENV": "production",
            "CAREHUB_DATABASE_URL": self.app_url.render_as_string(hide_password=False),
            "CAREHUB_REDIS_URL": self.redis.url,
            "CAREHUB_JWT_KEYS": '{"chaos-1": "' + "c" * 48 + '"}',
            "CAREHUB_JWT_ACTIVE_KID": "chaos-1",
            "CAREHUB_DATA_DIR": str(self.workdir / "data"),
            "CAREHUB_BLOB_DIR": str(self.workdir / "blobs"),
            "CAREHUB_PASSWORD_TIME_COST": "1",
            "CAREHUB_PASSWORD_MEMORY_KIB": "64",
            # The suite is one client sending hundreds of requests a minute.
            "CAREHUB_RATE_LIMIT_TOKEN_PER_MINUTE": "0",
            "CAREHUB_RATE_LIMIT_API_PER_MINUTE": "0",
            "CAREHUB_HOST": "127.0.0.1",
            "CAREHUB_PORT": str(self.api_port),
            **JOB_TIMINGS,
        }
        values.update(extra)
        return values

    def run(self, *args: str, **extra: str) -> str:
        """Run a ``carehub`` command to completion; its output (it must succeed)."""
        done = subprocess.run(
            [str(CAREHUB), *args], env=self.env(**extra), capture_output=True, text=True, timeout=120, cwd=REPO
        )
        with (self.workdir / "commands.log").open("a") as out:
            out.write(f"$ carehub {' '.join(args)}  -> {done.returncode}\n{done.stdout}{done.stderr}\n")
        assert done.returncode == 0, f"carehub {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
        return done.stdout

    def _service(self, name: str, *args: str) -> Service:
        self.started += 1
        return Service(name, [str(CAREHUB), *args], self.env(), self.workdir / f"{name}.log")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # life cycle

    def start(self) -> None:
        (self.workdir / "data").mkdir(exist_ok=True)
        self.redis.start()
        self.proxy.start()
        # Migrations as the owner (directly, not through the proxy); the grants give the application role access.
        self.run("db", "upgrade", CAREHUB_MIGRATION_DATABASE_URL=self.owner_url)
        self.run(
            "init",
            "--network-name",
            "Chaos Network",
            "--network-slug",
            "chaos-net",
            "--email",
            "ops@chaos.example",
            "--name",
            "Olive Ops",
            CAREHUB_INIT_PASSWORD=PASSWORD,
        )
        self.api = self._service("api", "serve", "--port", str(self.api_port), "--workers", "1")
        self.api.start()
        wait_until(self._api_ready, 60, "carehub serve answering /readyz")
        self.facility = self.onboard()
        self.workers = [self._service(f"worker-{n}", "worker") for n in (1, 2)]
        for worker in self.workers:
            worker.start()
        self.start_schedulers()

    def start_schedulers(self) -> None:
        """Scheduler 1, and once it holds the leader key, scheduler 2: the first one started leads."""
        for scheduler in self.schedulers:
            scheduler.stop()
        with contextlib.closing(self.redis.client()) as client:
            client.delete(LEADER_KEY)
        self.schedulers = [self._service(f"scheduler-{n}", "scheduler") for n in (1, 2)]
        self.schedulers[0].start()
        wait_until(lambda: self.leader_value() is not None, 30, "scheduler-1 taking the leader key")
        self.schedulers[1].start()

    def leader_value(self) -> bytes | None:
        with contextlib.closing(self.redis.client()) as client:
            value = client.get(LEADER_KEY)
        return bytes(value) if value is not None else None

    def _api_ready(self) -> bool:
        return httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200

    def onboard(self) -> Facility:
        """The network administrator (from ``carehub init``) creates a clinic, invites its administrator, who
        accepts; the network administrator activates the clinic. All through the API, as a real deployment."""
        with httpx.Client(base_url=self.base_url, timeout=30) as http:

            def sign_in(email: str, tenant: str | None) -> dict[str, str]:
                body = {"email": email, "password": PASSWORD} | ({"tenant": tenant} if tenant else {})
                answer = http.post("/api/v1/auth/token", json=body)
                assert answer.status_code == 200, answer.text
                return {"Authorization": f"Bearer {answer.json()['access_token']}"}

            network = sign_in("ops@chaos.example", None)
            created = http.post(
                "/api/v1/network/tenants",
                headers=network,
                json={"slug": "chaos-clinic", "name": "Chaos Clinic", "kind": "clinic"},
            )
            assert created.status_code == 201, created.text
            tenant = created.json()
            invited = http.post(
                f"/api/v1/network/tenants/{tenant['id']}/invitations",
                headers=network,
                json={"email": "admin@chaos-clinic.example"},
            )
            assert invited.status_code == 201, invited.text
            accepted = http.post(
                "/api/v1/invitations/accept",
                json={"token": invited.json()["token"], "full_name": "Casey Admin", "password": PASSWORD},
            )
            assert accepted.status_code in (200, 201), accepted.text
            activated = http.post(f"/api/v1/network/tenants/{tenant['id']}/activate", headers=network)
            assert activated.status_code == 200 and activated.json()["status"] == "active", activated.text
            facility = Facility(tenant_id=tenant["id"], slug="chaos-clinic", admin_email="admin@chaos-clinic.example")
            facility.headers = sign_in(facility.admin_email, facility.slug)
            me = http.get("/api/v1/auth/me", headers=facility.headers)
            assert me.status_code == 200, me.text
            facility.admin_user_id = me.json()["user_id"]
        return facility

    def services(self) -> Iterator[Service]:
        if self.api is not None:
            yield self.api
        yield from self.workers
        yield from self.schedulers

    def heal(self) -> None:
        """After a test, whatever its outcome: Redis up, the proxy open, every process running and not frozen."""
        if not self.redis.alive():
            self.redis.start()
        self.proxy.restore()
        for service in self.services():
            service.thaw()
            if not service.alive():
                service.note("found dead: started again")
                service.start()
        if self.api is not None:
            wait_until(self._api_ready, 60, "carehub serve answering /readyz")

    def replace_worker(self, index: int) -> Service:
        replacement = self._service(f"worker-{index + 1}-replacement-{self.started}", "worker")
        self.workers[index] = replacement
        replacement.start()
        return replacement

    def stop(self) -> None:
        for service in self.services():
            service.stop()
        self.redis.stop()
        self.proxy.close()

    def logs(self, lines: int = 60) -> str:
        """The tail of every log of this deployment (for a failing test's message)."""
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            parts.append(f"----- {path.name} (last {lines} lines) -----\n{tail(path, lines)}")
        return "\n".join(parts)
