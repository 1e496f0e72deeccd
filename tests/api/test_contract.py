"""The OpenAPI document is a true contract: schemathesis calls every operation against a live server.

Bounded for CI (a few examples per operation, a deadline for the whole run). Any server error, or any
response whose status, content type or body the document does not describe, fails the test.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.specs.openapi import checks as openapi_checks

from api.app import create_app
from tests.conftest import PASSWORD, _build_world, base_settings

EXAMPLES = 6
TIME_CAP_SECONDS = 240
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[dict[str, str]]:
    """A real uvicorn server over a copy of the migrated SQLite template, with the test world and tokens."""
    db_file = tmp_path_factory.mktemp("contract") / "contract.sqlite3"
    shutil.copy(sqlite_template, db_file)
    hub_settings = base_settings(database_url=f"sqlite+aiosqlite:///{db_file}")
    asyncio.run(_build_world(hub_settings))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(hub_settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    tokens = {}
    for name, email, tenant in (("staff", "admin.a@test.example", "hospital-a"), ("net", "net@test.example", None)):
        body = {"email": email, "password": PASSWORD, **({"tenant": tenant} if tenant else {})}
        tokens[name] = httpx.post(f"{base}/api/v1/auth/token", json=body).json()["access_token"]
    yield {"base": base, **tokens}
    server.should_exit = True
    thread.join(10)


def _failures(operation: Any, token: str, stop_at: float) -> list[str]:
    """Up to EXAMPLES generated calls of one operation; each failing check's first line, with the call."""
    found: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        if time.monotonic() > stop_at:
            return
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

    try:
        run()
    except BaseExceptionGroup as exc:  # schemathesis' failure group, after hypothesis shrank it: one line per check
        for failure in getattr(exc, "exceptions", [exc]):
            lines = str(failure).strip().splitlines()
            found.append(f"{operation.method.upper()} {operation.path}: {' / '.join(lines[:3])}")
    except AssertionError as exc:  # a single failed check
        found.append(f"{operation.method.upper()} {operation.path}: {' / '.join(str(exc).strip().splitlines()[:3])}")
    return found


def test_every_operation_conforms(live: dict[str, str]) -> None:
    contract = schemathesis.openapi.from_url(f"{live['base']}/schema/openapi.json")
    stop_at = time.monotonic() + TIME_CAP_SECONDS
    operations = [result.ok() for result in contract.get_all_operations()]
    assert len(operations) > 100
    failures: list[str] = []
    for operation in operations:
        token = live["net"] if operation.path.startswith("/api/v1/network") else live["staff"]
        failures.extend(_failures(operation, token, stop_at))
    assert time.monotonic() < stop_at, "the contract run hit its time cap: not every operation was called"
    assert not failures, f"{len(failures)} non-conforming responses:\n" + "\n".join(sorted(set(failures)))
