"""HTTP throughput of carehub against its floor, side by side in one run, on PostgreSQL.

Three servers, one process each, on this machine: carehub (``carehub serve``), and the floor app
(``bench/floor.py``: the same SQL in the same transactions, nothing else) over SQLAlchemy Core and over raw
asyncpg. For every request and every wrk concurrency, the three run one after the other (carehub, core,
asyncpg), in rounds, so that a busy machine slows all three alike and the ratios stay fair; the table gives the
median round and each server's CPU time per request (the steadiest figure when other work shares the machine).
The application connects as a role that does not own the tables (row-level security binds it), as in production.

The benchmark owns its database: it drops and re-creates it, migrates, and seeds the demo network.

Environment:
    CAREHUB_BENCH_OWNER_URL    the table owner and the database to (re)create
                               (default postgresql://postgres@127.0.0.1:5432/carehub_bench)
    CAREHUB_BENCH_APP_ROLE     the application's role, created if missing (default carehub_app)
    CAREHUB_BENCH_SECONDS      seconds per wrk run (default 4)
    CAREHUB_BENCH_ROUNDS       rounds of (carehub, core, asyncpg) per request and concurrency; the table
                               shows the median round (default 3)
    CAREHUB_BENCH_CONNECTIONS  wrk connections, comma-separated (default 4,16,64)
    CAREHUB_BENCH_ONLY         run only the requests whose name contains this text

    python -m bench.http   (make bench)
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVERS = ("carehub", "core", "asyncpg")
PATIENT_BODY = (
    '{"mrn": "B{n}", "given_name": "Ana", "family_name": "Bench", "birth_date": "1980-01-01", "sex": "female"}'
)


@dataclass(frozen=True)
class Request:
    name: str
    path: str
    body: str | None = None  # a POST body; "{n}" becomes a number unique to the request


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float = 0.0  # the server process's CPU time per request (user + system)


def _cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (Linux /proc; 0 elsewhere, and the column stays empty)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int, url: str, token: str, connections: int, seconds: int, body: str | None, prefix: str) -> Result:
    """One wrk run, with the server's CPU time per request (less sensitive to a busy machine than req/s)."""
    before = _cpu_seconds(pid)
    result = wrk(url, token, connections, seconds, body, prefix)
    used = _cpu_seconds(pid) - before
    requests = result.rps * seconds
    return replace(result, cpu_ms=used * 1000 / requests if requests else 0.0)


def median_result(results: list[Result]) -> Result:
    """The round with the median req/s (its latencies with it), with the median CPU per request."""
    ordered = sorted(results, key=lambda r: r.rps)
    middle = ordered[len(ordered) // 2]
    cpu = sorted(r.cpu_ms for r in results)[len(results) // 2]
    return replace(middle, errors=sum(r.errors for r in results), cpu_ms=cpu)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _recreate_database(owner_url: str) -> None:
    url = make_url(owner_url)
    name = url.database
    if not name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SystemExit(f"CAREHUB_BENCH_OWNER_URL: {name!r} is not a plain database name")
    admin = await asyncpg.connect(url.set(drivername="postgresql", database="postgres").render_as_string(False))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(url: str, token: str, connections: int, seconds: int, body: str | None, prefix: str) -> Result:
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    command += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        command += ["-s", str(ROOT / "bench" / "post.lua"), url, "--", prefix, body]
    else:
        command.append(url)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = int(errors.group(1)) if errors else 0
    failed += sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return Result(rps, _ms(p50), _ms(p99), failed)


def _get_json(url: str, token: str) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        result: dict = json.load(response)  # type: ignore[type-arg]
        return result


def _wait_healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(150):
        if process.poll() is not None:
            raise SystemExit(f"bench: a server exited at start:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"bench: no server on port {port}:\n{log.read_text()[-3000:]}")


def _table(rows: list[tuple[str, int, dict[str, Result]]]) -> str:
    head = (
        "| request | -c | carehub req/s | p50 ms | p99 ms | CPU ms | Core req/s | p50 ms | p99 ms | CPU ms "
        "| asyncpg req/s | p50 ms | p99 ms | CPU ms | carehub / Core | carehub / asyncpg | CPU Core / carehub |"
    )
    lines = [head, "|---|---:|" + "---:|" * 15]
    for name, connections, results in rows:
        cells = [name, str(connections)]
        for server in SERVERS:
            r = results[server]
            errors = f" ({r.errors} failed)" if r.errors else ""
            cells += [f"{r.rps:.0f}{errors}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.cpu_ms:.2f}"]
        carehub = results["carehub"].rps
        cells += [f"{carehub / results['core'].rps:.2f}", f"{carehub / results['asyncpg'].rps:.2f}"]
        core_cpu, carehub_cpu = results["core"].cpu_ms, results["carehub"].cpu_ms
        cells.append(f"{core_cpu / carehub_cpu:.2f}" if carehub_cpu else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is needed (Debian/Ubuntu: apt-get install wrk)")
    owner_url = os.environ.get("CAREHUB_BENCH_OWNER_URL", "postgresql://postgres@127.0.0.1:5432/carehub_bench")
    role = os.environ.get("CAREHUB_BENCH_APP_ROLE", "carehub_app")
    seconds = int(os.environ.get("CAREHUB_BENCH_SECONDS", "4"))
    concurrencies = [int(c) for c in os.environ.get("CAREHUB_BENCH_CONNECTIONS", "4,16,64").split(",")]
    only = os.environ.get("CAREHUB_BENCH_ONLY", "")
    repeats = int(os.environ.get("CAREHUB_BENCH_ROUNDS", "3"))
    owner = make_url(owner_url).set(drivername="postgresql+asyncpg")
    app = owner.set(username=role, password=None)
    asyncio.run(_recreate_database(owner_url))

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = {
            **os.environ,
            "CAREHUB_DATABASE_URL": app.render_as_string(False),
            "CAREHUB_MIGRATION_DATABASE_URL": owner.render_as_string(False),
            "CAREHUB_JWT_KEYS": json.dumps({"bench": secrets.token_urlsafe(32)}),
            "CAREHUB_JWT_ACTIVE_KID": "bench",
            "CAREHUB_DATA_DIR": str(work),
            # wrk is one client; the per-client rate limit would only answer 429. Off, as behind a gateway.
            "CAREHUB_RATE_LIMIT_API_PER_MINUTE": "0",
            "CAREHUB_RATE_LIMIT_TOKEN_PER_MINUTE": "0",
        }
        carehub = str(BIN / "carehub")

        def run(*args: str) -> str:
            return subprocess.run(args, env=env, check=True, capture_output=True, text=True, cwd=ROOT).stdout  # noqa: S603

        run(carehub, "db", "upgrade")
        run(carehub, "seed-demo")
        token = run(carehub, "token", "--user", "dr.lee@stmarys.example", "--tenant", "st-marys").strip()

        ports = {server: _free_port() for server in SERVERS}
        commands = {
            "carehub": [carehub, "serve", "--host", "127.0.0.1", "--port", str(ports["carehub"]), "--workers", "1"],
            "core": [sys.executable, "-m", "bench.floor", "--variant", "core", "--port", str(ports["core"])],
            "asyncpg": [sys.executable, "-m", "bench.floor", "--variant", "asyncpg", "--port", str(ports["asyncpg"])],
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        for server, command in commands.items():
            log = work / f"{server}.log"
            process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)  # noqa: S603
            stack.callback(_stop, process)
            processes[server] = process
            _wait_healthy(ports[server], process, log)

        base = f"http://127.0.0.1:{ports['carehub']}"
        patient = _get_json(f"{base}/api/v1/patients?limit=1", token)["items"][0]["id"]
        plan = _get_json(f"{base}/api/v1/care-plans?limit=1", token)["items"][0]["id"]
        thread = _get_json(f"{base}/api/v1/threads?limit=1", token)["items"][0]["id"]
        requests = [
            Request("GET /api/v1/patients/{id}", f"/api/v1/patients/{patient}"),
            Request("GET /api/v1/patients?limit=20", "/api/v1/patients?limit=20"),
            Request("POST /api/v1/patients", "/api/v1/patients", PATIENT_BODY),
            Request("GET /api/v1/tasks?queue=mine", "/api/v1/tasks?queue=mine"),
            Request("GET /api/v1/care-plans/{id}", f"/api/v1/care-plans/{plan}"),
            Request("POST /api/v1/threads/{id}/messages", f"/api/v1/threads/{thread}/messages", '{"body": "m{n}"}'),
        ]
        requests = [r for r in requests if only in r.name]

        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} cores, {platform.machine()}, {_cpu_model()}; load before {load[0]:.2f}")
        python = platform.python_version()
        runs = f"wrk -t2, {repeats} rounds of {seconds} s"
        print(f"PostgreSQL as role {role}; one process per server; {runs}; Python {python}")
        for server in SERVERS:  # warm-up: connections opened, statements prepared
            for r in requests:
                wrk(f"http://127.0.0.1:{ports[server]}{r.path}", token, 4, 1, r.body, f"w{server}")
        rows: list[tuple[str, int, dict[str, Result]]] = []
        for connections in concurrencies:
            for r in requests:
                rounds: dict[str, list[Result]] = {server: [] for server in SERVERS}
                for n in range(repeats):
                    for server in SERVERS:
                        url = f"http://127.0.0.1:{ports[server]}{r.path}"
                        prefix = f"{server}{connections}r{n}"
                        pid = processes[server].pid
                        rounds[server].append(measure(pid, url, token, connections, seconds, r.body, prefix))
                results = {server: median_result(rounds[server]) for server in SERVERS}
                rows.append((r.name, connections, results))
                print(
                    f"  {r.name} -c{connections}: " + ", ".join(f"{s} {v.rps:.0f}" for s, v in results.items()),
                    flush=True,
                )
        print(f"load after {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
        print(_table(rows))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


if __name__ == "__main__":
    main()
