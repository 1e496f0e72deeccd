"""The chaos suite's deployment (one per module: its own Redis, database and processes).

Each fault test records one line of figures (``record_property``); pytest-xdist forwards a test's user properties
to the controller, where tests/chaos/summary.py prints them, so the CI log shows, per fault, the no-shows,
follow-up tasks, duplicates, missing ones and the drain time, even under ``pytest -q``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tests.chaos.harness import CAREHUB, Deployment, chaos_database_name, create_database, drop_database
from tests.conftest import PG_APP_URL, PG_URL, _one_worker_at_a_time

WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: starts its own Redis and carehub processes and breaks them")


def _unavailable(reason: str) -> None:
    """A service the suite needs is missing although PostgreSQL is configured: a failure, never a skip."""
    pytest.fail(f"chaos suite: {reason}", pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The chaos tests belong to the PostgreSQL leg: without CAREHUB_TEST_POSTGRES_URL and
    CAREHUB_TEST_POSTGRES_APP_URL (``make test`` on a machine with only Python) they are deselected, as the
    ``postgres_only`` tests are; with them, whatever else is missing fails the tests."""
    if PG_URL and PG_APP_URL:
        return
    keep = [item for item in items if item.get_closest_marker("chaos") is None]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("chaos")])
        items[:] = keep


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    owner_url = os.environ.get("CAREHUB_TEST_POSTGRES_URL")
    app_url = os.environ.get("CAREHUB_TEST_POSTGRES_APP_URL")
    if not owner_url or not app_url:
        _unavailable("CAREHUB_TEST_POSTGRES_URL and CAREHUB_TEST_POSTGRES_APP_URL are not both set")
    assert owner_url and app_url
    if shutil.which("redis-server") is None and not os.path.exists("/usr/bin/redis-server"):
        _unavailable("redis-server is not installed")
    if not CAREHUB.exists():
        _unavailable(f"{CAREHUB} is missing (make install)")
    database = chaos_database_name(owner_url, WORKER)
    try:
        with _one_worker_at_a_time(tmp_path_factory):
            create_database(owner_url, database)
    except OSError as exc:
        _unavailable(f"PostgreSQL at {owner_url} is unreachable: {exc}")
    hub = Deployment(tmp_path_factory.mktemp("chaos"), owner_url, app_url, database)
    try:
        with _one_worker_at_a_time(tmp_path_factory):
            hub.start()
        yield hub
    except Exception as exc:
        raise AssertionError(f"the chaos deployment did not start: {exc}\n{hub.logs()}") from exc
    finally:
        hub.stop()
        drop_database(owner_url, database)


@pytest.fixture(autouse=True)
def healthy(deployment: Deployment) -> Iterator[None]:
    """Every fault starts from a whole deployment, whatever the previous one left."""
    deployment.heal()
    yield
    deployment.heal()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failing chaos test's report carries the tail of every process's log."""
    report = yield
    hub = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and isinstance(hub, Deployment):
        report.sections.append(("chaos deployment logs", hub.logs()))
    return report
