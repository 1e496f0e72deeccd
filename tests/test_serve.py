"""`carehub serve`: worker processes, the C server stack and the access-log switch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from api.cli import build_parser, default_workers
from tests.conftest import base_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_workers_default_to_one_per_core_on_postgresql_and_one_otherwise() -> None:
    postgres = base_settings(database_url="postgresql+asyncpg://app@127.0.0.1/db")
    assert default_workers(postgres) == (os.cpu_count() or 1)
    assert default_workers(base_settings(database_url="sqlite+aiosqlite:///x.sqlite3")) == 1
    # Background jobs inside the API process elect no leader: one process, whatever the database.
    assert default_workers(postgres.model_copy(update={"jobs_in_process": True})) == 1


@pytest.mark.parametrize("value", ["0", "-1", "many", "257"])
def test_a_bad_worker_count_is_refused_naming_the_option(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["serve", "--workers", value])
    assert stopped.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_serve_with_two_workers_starts_two_server_processes_without_an_access_log(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}",
        "CAREHUB_REDIS_URL": "",
        "CAREHUB_DATA_DIR": str(tmp_path),
    }
    assert subprocess.run([sys.executable, "-m", "api.cli", "db", "upgrade"], env=env, check=False).returncode == 0
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        answered = 0
        while time.monotonic() < deadline and answered < 5:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    answered += response.status == 200
            except OSError:
                time.sleep(0.3)
        assert answered == 5, log.read_text()
        while time.monotonic() < deadline and log.read_text().count("Started server process") < 2:
            time.sleep(0.2)
        text = log.read_text()
        assert text.count("Started server process") == 2, text
        assert "GET /healthz" not in text  # the access log is off by default
    finally:
        process.terminate()
        process.wait(20)


def test_the_access_log_switch_logs_each_request(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CAREHUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'hub.sqlite3'}",
        "CAREHUB_REDIS_URL": "",
        "CAREHUB_DATA_DIR": str(tmp_path),
        "CAREHUB_ACCESS_LOG": "true",
    }
    assert subprocess.run([sys.executable, "-m", "api.cli", "db", "upgrade"], env=env, check=False).returncode == 0
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.3)
        for _ in range(20):
            if "GET /healthz" in log.read_text():
                break
            time.sleep(0.1)
        assert "GET /healthz" in log.read_text()
    finally:
        process.terminate()
        process.wait(20)
