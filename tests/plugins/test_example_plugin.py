"""The example external plugin (docs/examples/carehub-example-plugin) as carehub runs it: discovered through its
entry point, enabled for one tenant only through the API with a configuration its schema checks, and asked by
the directory search (``GET /api/v1/directory/services``) for that tenant only, with that tenant's configuration
only, against a local HSDS 3.0 directory. A second directory plugin registered by the test (``spy_directory``)
shows that each plugin gets its own configuration, and that one that raises, hangs or answers garbage leaves the
others' services in the answer.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from core.audit import AuditEvent
from core.db import make_engine, make_sessionmaker
from core.plugins.models import PluginEnablement
from core.plugins.registry import BUNDLED, registry
from core.settings import Settings
from plugin_sdk import Manifest, PluginContext, hookimpl
from plugin_sdk.payloads import ServiceQuery, ServiceRecord
from tenants.context import tenant_context
from tests.conftest import World, login
from tests.plugins.hsds_server import HsdsServer

KEY_A = "tenant-a-directory-key-4f1c"
SPY_SECRET_A = "spy-secret-of-tenant-a-93be"
SPY_SECRET_B = "spy-secret-of-tenant-b-07aa"
# What httpx sends with every request; the only other header is the plugin's own X-API-Key.
HTTPX_HEADERS = {"host", "accept", "accept-encoding", "connection", "user-agent"}
SEARCH = "/api/v1/directory/services"


@pytest.fixture
def timeout_ms() -> int:
    return 5000


@pytest.fixture
def settings(settings: Settings, timeout_ms: int) -> Settings:
    """The operator lets plugins reach the loopback network, where the test's directory listens."""
    return settings.model_copy(update={"plugin_allow_networks": ["127.0.0.0/8"], "plugin_timeout_ms": timeout_ms})


@pytest.fixture
def hsds() -> Iterator[HsdsServer]:
    with HsdsServer(api_key=KEY_A) as running:
        yield running


class Spy:
    """A second directory plugin: it records the configuration of each call and behaves as told."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []
        self.behaviour = "answer"

    async def carehub_directory_search(self, context: PluginContext, query: ServiceQuery) -> Any:
        self.configs.append(dict(context.config))
        if self.behaviour == "raise":
            raise RuntimeError("the directory's database is down")
        if self.behaviour == "hang":
            await asyncio.sleep(60)
        if self.behaviour == "garbage":
            return [{"id": 7}]
        return [ServiceRecord(id="spy-1", name=f"Spy result for {query.text}", organization="Spy Org")]


@pytest.fixture
def spy() -> Iterator[Spy]:
    found = Spy()
    module = types.ModuleType("carehub_spy_directory")

    async def carehub_directory_search(context: PluginContext, query: ServiceQuery) -> Any:
        return await found.carehub_directory_search(context, query)

    module.carehub_directory_search = hookimpl(carehub_directory_search)  # type: ignore[attr-defined]
    module.MANIFEST = Manifest(  # type: ignore[attr-defined]
        name="spy_directory",
        version="0.1.0",
        sdk=">=1.0,<2",
        title="Spy directory",
        hooks=("carehub_directory_search",),
        config_schema={
            "type": "object",
            "properties": {"token": {"type": "string", "sensitive": True}, "region": {"type": "string"}},
            "required": ["token"],
        },
    )
    plugins = registry()
    plugins.add(module, "test", "spy_directory")
    assert "spy_directory" in plugins.installed, plugins.refused
    try:
        yield found
    finally:
        plugins.installed.pop("spy_directory", None)
        plugins.pm.unregister(name="spy_directory")


async def _enable(client: AsyncTestClient[Any], headers: dict[str, str], name: str, config: dict[str, Any]) -> Any:
    answer = await client.put(f"/api/v1/plugins/{name}", json={"enabled": True, "config": config}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _search(client: AsyncTestClient[Any], headers: dict[str, str], query: str) -> dict[str, Any]:
    answer = await client.get(f"{SEARCH}?{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def _rows_and_events(settings: Settings, world: World) -> tuple[dict[str, PluginEnablement], list[AuditEvent]]:
    engine = make_engine(settings.database_url)
    try:
        with tenant_context(world.tenant_a):
            async with make_sessionmaker(engine)() as session:
                rows = {row.plugin: row for row in await session.scalars(select(PluginEnablement))}
                events = list(await session.scalars(select(AuditEvent).order_by(AuditEvent.at)))
    finally:
        await engine.dispose()
    return rows, events


async def test_it_is_discovered_through_its_entry_point(client: AsyncTestClient[Any], world: World) -> None:
    plugin = registry().get("example_directory")
    assert plugin is not None, registry().refused
    installed = version("carehub-example-plugin")
    assert plugin.source == f"entry point example_directory of carehub-example-plugin {installed}"
    assert plugin.manifest.version == installed
    # Not one of carehub's own: the module its entry point names, from its own distribution.
    assert plugin.module.__name__ == "carehub_example_directory" and "example_directory" not in str(BUNDLED)
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    listed = {p["name"]: p for p in (await client.get("/api/v1/plugins", headers=admin_a)).json()}
    assert listed["example_directory"]["source"] == plugin.source
    assert listed["example_directory"]["version"] == installed and not listed["example_directory"]["enabled"]


async def test_an_invalid_configuration_is_refused_at_its_path(
    client: AsyncTestClient[Any], world: World, hsds: HsdsServer
) -> None:
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    for config, path in (
        ({"base_url": hsds.base_url}, "config.api_key"),
        ({"base_url": "ftp://files.example.org", "api_key": KEY_A}, "config.base_url"),
        ({"base_url": hsds.base_url, "api_key": KEY_A, "region": "north"}, "config.region"),
    ):
        answer = await client.put("/api/v1/plugins/example_directory", json={"config": config}, headers=admin_a)
        assert answer.status_code == 422, answer.text
        assert path in [error["field"] for error in answer.json()["errors"]], answer.text
    seen = (await client.get("/api/v1/plugins/example_directory", headers=admin_a)).json()
    assert not seen["enabled"] and seen["config"] == {}  # nothing was stored


async def test_its_hook_is_called_only_for_the_enabling_tenant_with_only_its_configuration(
    client: AsyncTestClient[Any], world: World, settings: Settings, hsds: HsdsServer, spy: Spy
) -> None:
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    admin_b = await login(client, "admin.b@test.example", world.slug_b)
    enabled = await _enable(client, admin_a, "example_directory", {"base_url": hsds.base_url, "api_key": KEY_A})
    assert enabled["secrets_set"] == ["api_key"] and KEY_A not in str(enabled)
    await _enable(client, admin_a, "spy_directory", {"token": SPY_SECRET_A, "region": "north"})
    await _enable(client, admin_b, "spy_directory", {"token": SPY_SECRET_B})

    chw_a = await login(client, "chw.a@test.example", world.slug_a)
    found = await _search(client, chw_a, "q=meals&postal_code=97001&language=en&limit=5")
    mine = [item for item in found["items"] if item["plugin"] == "example_directory"]
    assert [(item["id"], item["name"]) for item in mine] == [("sal-meals-center", "Riverside Meals on Wheels")]
    assert mine[0]["organization"] == "Riverside Senior Center" and mine[0]["categories"] == ["Food"]
    assert mine[0]["address"]["postal_code"] == "97001" and mine[0]["phone"] == "+1 555 0199"
    assert [item["plugin"] for item in found["items"]] == ["example_directory", "spy_directory"]
    assert found["directories"] == [
        {"plugin": "example_directory", "title": "Example resource directory (HSDS)", "found": 1, "error": None},
        {"plugin": "spy_directory", "title": "Spy directory", "found": 1, "error": None},
    ]

    # The directory received tenant A's key and the search, and nothing else: no other header, no other secret.
    (request,) = hsds.requests
    assert request["path"] == "/hsds/services"
    assert request["query"] == {"search": "meals", "page": "1", "per_page": "5", "full": "true"}
    headers = {name.lower(): value for name, value in request["headers"].items()}
    assert headers.pop("x-api-key") == KEY_A
    assert set(headers) <= HTTPX_HEADERS, headers
    assert not any(secret in str(request) for secret in (SPY_SECRET_A, SPY_SECRET_B, settings.jwt_keys["test"]))
    # The other plugin got its own configuration for tenant A, and nothing of the example's.
    assert spy.configs == [{"token": SPY_SECRET_A, "region": "north"}]

    # Tenant B has not enabled the example: its search gets nothing from it, and the directory hears nothing.
    doc_b = await login(client, "doc.b@test.example", world.slug_b)
    seen_b = await _search(client, doc_b, "q=meals")
    assert [item["plugin"] for item in seen_b["items"]] == ["spy_directory"]
    assert [d["plugin"] for d in seen_b["directories"]] == ["spy_directory"]
    assert len(hsds.requests) == 1
    assert spy.configs[-1] == {"token": SPY_SECRET_B}

    # Disabled, it is not asked again.
    assert (await client.delete("/api/v1/plugins/example_directory", headers=admin_a)).status_code == 200
    after = await _search(client, chw_a, "q=meals")
    assert [d["plugin"] for d in after["directories"]] == ["spy_directory"] and len(hsds.requests) == 1

    rows, events = await _rows_and_events(settings, world)
    assert rows["example_directory"].last_success_at is not None and rows["example_directory"].failures == 0
    searches = [e for e in events if e.action == "directory.search"]
    assert [e.detail["directories"] for e in searches] == [["example_directory", "spy_directory"], ["spy_directory"]]
    assert searches[0].detail["given"] == ["text", "postal_code", "language"] and searches[0].detail["found"] == 2
    assert "meals" not in str(searches[0].detail)  # what the coordinator typed stays out of the log


async def test_a_network_forbidden_plugin_is_not_asked(
    client: AsyncTestClient[Any], world: World, hsds: HsdsServer
) -> None:
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    await _enable(client, admin_a, "example_directory", {"base_url": hsds.base_url, "api_key": KEY_A})
    net = await login(client, "net@test.example", None)
    forbid = await client.put("/api/v1/network/plugins/example_directory", json={"allowed": False}, headers=net)
    assert forbid.status_code == 200, forbid.text
    found = await _search(client, admin_a, "category=food")
    assert found == {"items": [], "directories": []} and hsds.requests == []


async def test_a_directory_that_fails_or_answers_garbage_is_contained(
    client: AsyncTestClient[Any], world: World, settings: Settings, hsds: HsdsServer, spy: Spy
) -> None:
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    await _enable(client, admin_a, "example_directory", {"base_url": hsds.base_url, "api_key": KEY_A})
    await _enable(client, admin_a, "spy_directory", {"token": SPY_SECRET_A})
    doc_a = await login(client, "doc.a@test.example", world.slug_a)

    spy.behaviour = "raise"
    found = await _search(client, doc_a, "q=rides")
    assert [item["id"] for item in found["items"]] == ["svc-rides"]
    notes = {d["plugin"]: d["error"] for d in found["directories"]}
    assert notes["example_directory"] is None
    assert "administrators can see why" in notes["spy_directory"]
    assert "database is down" not in found["directories"][1]["error"]  # the whole error is for the admins

    spy.behaviour = "garbage"
    found = await _search(client, doc_a, "q=rides")
    assert {d["plugin"]: d["error"] for d in found["directories"]}["spy_directory"] == "its answer could not be read"
    assert [item["plugin"] for item in found["items"]] == ["example_directory"]

    rows, events = await _rows_and_events(settings, world)
    assert rows["spy_directory"].failures == 2 and "returned garbage" in (rows["spy_directory"].last_error or "")
    failures = [e for e in events if e.action == "plugin.failure"]
    assert [(e.resource_id, e.outcome, e.actor_roles) for e in failures] == [
        ("spy_directory", "failure", ["plugin:spy_directory"])
    ] * 2
    assert (
        "database is down" in failures[0].detail["error"] and failures[0].detail["hook"] == "carehub_directory_search"
    )
    admin_view = (await client.get("/api/v1/plugins/spy_directory", headers=admin_a)).json()
    assert admin_view["status"]["failures"] == 2 and "returned garbage" in admin_view["status"]["last_error"]

    # After the breaker's count of failures in a row the spy is not asked; the example still is.
    for _ in range(settings.plugin_breaker_failures - 2):
        await _search(client, doc_a, "q=rides")
    asked = len(spy.configs)
    found = await _search(client, doc_a, "q=rides")
    assert len(spy.configs) == asked
    assert found["directories"][1]["error"].startswith("not asked: paused after repeated failures until")
    assert [item["plugin"] for item in found["items"]] == ["example_directory"]


@pytest.mark.parametrize("timeout_ms", [1000])
async def test_a_directory_that_hangs_is_cut_at_the_time_limit(
    client: AsyncTestClient[Any], world: World, hsds: HsdsServer, spy: Spy
) -> None:
    admin_a = await login(client, "admin.a@test.example", world.slug_a)
    await _enable(client, admin_a, "example_directory", {"base_url": hsds.base_url, "api_key": KEY_A})
    await _enable(client, admin_a, "spy_directory", {"token": SPY_SECRET_A})
    spy.behaviour = "hang"
    started = time.monotonic()
    found = await _search(client, admin_a, "q=meals")
    assert time.monotonic() - started < 10
    assert [item["plugin"] for item in found["items"]] == ["example_directory"]
    assert {d["plugin"]: d["error"] for d in found["directories"]}["spy_directory"] == "no answer within 1 s"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "q"),
        ("postal_code=97001", "q"),
        ("q=food&radius_km=5", "radius_km"),
        ("q=food&radius_km=0&postal_code=97001", "radius_km"),
        ("q=" + "f" * 201, "q"),
        ("q=food%0Aline", "q"),
        ("q=food&limit=0", "limit"),
        ("q=food&limit=51", "limit"),
        ("q=food&language=not a language", "language"),
        ("q=food&postal_code=%3Cscript%3E", "postal_code"),
    ],
)
async def test_a_bad_search_names_its_field(client: AsyncTestClient[Any], world: World, query: str, field: str) -> None:
    doc_a = await login(client, "doc.a@test.example", world.slug_a)
    answer = await client.get(f"{SEARCH}?{query}", headers=doc_a)
    assert 400 <= answer.status_code < 500, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]], answer.text


async def test_who_may_search(client: AsyncTestClient[Any], world: World) -> None:
    for email, slug in (("doc.a@test.example", world.slug_a), ("chw.a@test.example", world.slug_a)):
        answer = await client.get(f"{SEARCH}?q=food", headers=await login(client, email, slug))
        assert answer.status_code == 200 and answer.json() == {"items": [], "directories": []}, answer.text
    network_admin = await client.get(f"{SEARCH}?q=food", headers=await login(client, "net@test.example", None))
    assert network_admin.status_code == 403
    assert (await client.get(f"{SEARCH}?q=food")).status_code == 401
