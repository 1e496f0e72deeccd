"""The ``carehub`` command as an operator uses it: migrate, seed, mint a token, serve."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from core.demo import DEMO_PASSWORD, PORTAL_USERS, TENANTS, USERS
from tests.conftest import base_settings

# Subprocesses: the command itself, a served hub, a worker.
pytestmark = pytest.mark.slow


def _carehub(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}",
        "CAREHUB_PASSWORD_TIME_COST": "1",
        "CAREHUB_PASSWORD_MEMORY_KIB": "64",
        "CAREHUB_REDIS_URL": "",
        "CAREHUB_DATA_DIR": str(tmp_path),
    }


async def test_upgrade_seed_and_mint_a_token(env: dict[str, str]) -> None:
    assert _carehub(env, "db", "upgrade").returncode == 0
    seeded = _carehub(env, "seed-demo")
    assert seeded.returncode == 0 and "demo network created" in seeded.stdout
    again = _carehub(env, "seed-demo")
    assert "exists already" in again.stdout
    minted = _carehub(env, "token", "--user", "dr.lee@stmarys.example", "--tenant", "st-marys")
    assert minted.returncode == 0, minted.stderr
    refused = _carehub(env, "token", "--user", "dr.lee@stmarys.example", "--tenant", "riverside-clinic")
    assert refused.returncode == 1 and "not a member" in refused.stderr

    # The same local signing key as the command's (kept in the data directory).
    settings = base_settings(
        database_url=env["CAREHUB_DATABASE_URL"], data_dir=env["CAREHUB_DATA_DIR"], jwt_keys={}, jwt_active_kid="local"
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {minted.stdout.strip()}"}
        patients = (await client.get("/api/v1/patients?limit=100", headers=headers)).json()["items"]
        assert 9 <= len(patients) <= 12
        assert all(p["mrn"].startswith("STM-") for p in patients)
        # The demo shows care in progress: plans from the standard templates, a work queue, appointments.
        plans = (await client.get("/api/v1/care-plans", headers=headers)).json()["items"]
        assert {p["status"] for p in plans} == {"active", "draft"} and all(p["template_id"] for p in plans)
        queue = (await client.get("/api/v1/tasks?queue=mine", headers=headers)).json()["items"]
        assert any(t["overdue"] and t["escalation_level"] == 1 for t in queue)
        appointments = (await client.get("/api/v1/appointments", headers=headers)).json()["items"]
        assert {"booked", "noshow"} <= {a["status"] for a in appointments}
        threads = (await client.get("/api/v1/threads", headers=headers)).json()["items"]
        assert threads and all(t["unread_count"] >= 1 for t in threads)
        for email, _name, tenant, roles in USERS:
            body = {"email": email, "password": DEMO_PASSWORD} | ({"tenant": tenant} if tenant else {})
            response = await client.post("/api/v1/auth/token", json=body)
            assert response.status_code == 200, email
            assert response.json()["roles"] == list(roles or ("network_admin",))
        # A portal account per clinical tenant.
        body = {"email": PORTAL_USERS["st-marys"], "password": DEMO_PASSWORD, "tenant": "st-marys"}
        token = (await client.post("/api/v1/auth/token", json=body)).json()["access_token"]
        portal = {"Authorization": f"Bearer {token}"}
        plans = (await client.get("/api/v1/portal/care-plans", headers=portal)).json()["items"]
        assert plans and "staff_note" not in plans[0]
        assert (await client.get("/api/v1/portal/threads", headers=portal)).json()["items"]
        network = {
            "Authorization": "Bearer "
            + (
                await client.post(
                    "/api/v1/auth/token", json={"email": "netadmin@carehub.example", "password": DEMO_PASSWORD}
                )
            ).json()["access_token"]
        }
        tenants = (await client.get("/api/v1/network/tenants", headers=network)).json()["items"]
        assert sorted((t["slug"], t["kind"]) for t in tenants) == sorted((s, k) for s, _n, k in TENANTS)
        assert sum(t["member_count"] for t in tenants) == len(USERS) - 1 + len(PORTAL_USERS)


def test_init_creates_the_network_and_its_administrator(env: dict[str, str]) -> None:
    assert _carehub(env, "db", "upgrade").returncode == 0
    args = (
        "init",
        "--network-name",
        "North Network",
        "--network-slug",
        "north",
        "--email",
        "ops@north.example",
        "--name",
        "Olive Ops",
    )
    weak = _carehub({**env, "CAREHUB_INIT_PASSWORD": "short"}, *args)
    assert weak.returncode == 1 and "at least 12" in weak.stderr
    created = _carehub({**env, "CAREHUB_INIT_PASSWORD": "north-network-secret"}, *args)
    assert created.returncode == 0, created.stderr
    twice = _carehub({**env, "CAREHUB_INIT_PASSWORD": "north-network-secret"}, *args)
    assert twice.returncode == 1 and "exists already" in twice.stderr
    token = _carehub(env, "token", "--user", "ops@north.example")
    assert token.returncode == 0 and token.stdout.count(".") == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_serves_the_hub(env: dict[str, str]) -> None:
    """What ``make run`` runs: migrate, seed, print the logins, serve; /readyz answers 200."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        status: Any = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.3)
        assert status == 200
        # The embedded default runs its background jobs in the same process: the demo's no-shows get their
        # follow-up tasks without any other command.
        database = Path(env["CAREHUB_DATABASE_URL"].split(":///", 1)[1])

        def follow_ups() -> int:
            with sqlite3.connect(database) as conn:
                query = "SELECT count(*) FROM tasks WHERE template_code = 'noshow-follow-up'"
                return int(conn.execute(query).fetchone()[0])

        while time.monotonic() < deadline and follow_ups() < 6:
            time.sleep(0.3)
        assert follow_ups() == 6
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert DEMO_PASSWORD in output
    assert "dr.lee@stmarys.example" in output and "patient@st-marys.example" in output
    assert f"http://127.0.0.1:{port}" in output  # the banner names the port it serves on


def test_rate_limits_count_forwarded_clients_only_from_trusted_proxies(env: dict[str, str]) -> None:
    assert _carehub(env, "db", "upgrade").returncode == 0
    port = _free_port()
    server_env = {**env, "CAREHUB_RATE_LIMIT_TOKEN_PER_MINUTE": "1", "CAREHUB_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def sign_in(forwarded_for: str) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/auth/token",
            method="POST",
            data=b'{"email": "x@test.example", "password": "x", "tenant": "none"}',
            headers={"content-type": "application/json", "x-forwarded-for": forwarded_for},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        assert sign_in("203.0.113.7") == 401
        assert sign_in("203.0.113.7") == 429, "the same client is limited"
        assert sign_in("198.51.100.9") == 401, "another client behind the proxy has its own budget"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_worker_runs_the_demo_no_shows_follow_ups(env: dict[str, str], tmp_path: Path) -> None:
    """`carehub worker` relays the outbox and runs the handlers: each demo no-show gets one follow-up task."""
    assert _carehub(env, "db", "upgrade").returncode == 0
    assert _carehub(env, "seed-demo").returncode == 0
    database = tmp_path / "hub.sqlite3"

    def follow_ups() -> int:
        with sqlite3.connect(database) as conn:
            return int(
                conn.execute("SELECT count(*) FROM tasks WHERE template_code = 'noshow-follow-up'").fetchone()[0]
            )

    def unpublished() -> int:
        with sqlite3.connect(database) as conn:
            return int(conn.execute("SELECT count(*) FROM outbox_events WHERE published_at IS NULL").fetchone()[0])

    with sqlite3.connect(database) as conn:
        no_shows = int(conn.execute("SELECT count(*) FROM appointments WHERE status = 'noshow'").fetchone()[0])
    assert no_shows >= 3 and follow_ups() == 0 and unpublished() > 0
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker"],
        env={**env, "CAREHUB_RELAY_INTERVAL_MS": "100"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Done when every no-show has its follow-up and the outbox stayed empty for a second: a handler finishing
        # as the worker is stopped could still write an event (a notification) that no relay is left to take.
        deadline, quiet_since = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            if follow_ups() == no_shows and unpublished() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 1.0:
                    break
            else:
                quiet_since = None
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert (follow_ups(), unpublished()) == (no_shows, 0), output
    assert process.returncode == 0, output
