"""The test harness itself: its clock, its configuration check, its manifest check, what it keeps of a call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from plugin_sdk import Manifest, PluginContext, hookimpl
from plugin_sdk.payloads import Health, TenantInfo
from plugin_sdk.testing import TEST_TENANT, ConfigRefused, FakeClock, PluginHarness, manifest_of

SCHEMA = {
    "type": "object",
    "properties": {
        "base_url": {"type": "string", "pattern": "^https://"},
        "credentials": {
            "type": "object",
            "properties": {"client_id": {"type": "string"}, "client_secret": {"type": "string"}},
            "required": ["client_id", "client_secret"],
            "additionalProperties": False,
        },
        "api_key": {"type": "string", "sensitive": True},
    },
    "required": ["base_url"],
    "additionalProperties": False,
}


def module(*, hooks: tuple[str, ...] | None = None, **manifest: Any) -> ModuleType:
    """A plugin implementing carehub_health_check (its manifest lists ``hooks``, by default that one)."""

    @hookimpl
    async def carehub_health_check(context: PluginContext) -> Health:
        return Health(ok=True, detail=f"{context.plugin} for {context.tenant.slug if context.tenant else '-'}")

    plugin = ModuleType("harness_test_plugin")
    plugin.carehub_health_check = carehub_health_check  # type: ignore[attr-defined]
    fields = {"name": "harness_test", "version": "1.0.0", "sdk": ">=1.0,<2", "title": "Harness test", **manifest}
    plugin.MANIFEST = Manifest(hooks=("carehub_health_check",) if hooks is None else hooks, **fields)  # type: ignore[attr-defined]
    return plugin


# -----------------------------------------------------------------------------------------------------------
# FakeClock
# -----------------------------------------------------------------------------------------------------------


def test_the_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock()
    assert clock() == clock() == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert clock.advance(minutes=90) == datetime(2026, 1, 5, 10, 30, tzinfo=UTC)
    assert clock.advance(days=1, seconds=1) == datetime(2026, 1, 6, 10, 30, 1, tzinfo=UTC)
    assert FakeClock(datetime(2030, 6, 1, tzinfo=UTC))() == datetime(2030, 6, 1, tzinfo=UTC)


async def test_the_context_tells_the_harness_clock() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 8, 0, tzinfo=UTC))
    async with PluginHarness(module(), clock=clock) as hub:
        before = hub.context.now()
        clock.advance(hours=2)
        assert hub.context.now() - before == timedelta(hours=2)
        assert hub.clock is clock


# -----------------------------------------------------------------------------------------------------------
# Configuration
# -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({}, "base_url"),
        ({"base_url": "http://ehr.example.org"}, "base_url"),
        ({"base_url": "https://ehr.example.org", "colour": "blue"}, "colour"),
        ({"base_url": "https://ehr.example.org", "credentials": {"client_id": "c"}}, "credentials.client_secret"),
        (
            {"base_url": "https://ehr.example.org", "credentials": {"client_id": 7, "client_secret": "s"}},
            "credentials.client_id",
        ),
        ({"base_url": "https://ehr.example.org", "api_key": ["not", "a", "string"]}, "api_key"),
    ],
)
def test_a_configuration_the_schema_refuses_is_refused_with_its_path(config: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(module(config_schema=SCHEMA), config=config)
    assert [problem.path for problem in refused.value.problems] == [path]
    assert str(refused.value).startswith(f"{path}: ")
    assert isinstance(refused.value, ValueError)


def test_every_problem_is_named() -> None:
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(module(config_schema=SCHEMA), config={"base_url": 1, "extra": True})
    assert sorted(problem.path for problem in refused.value.problems) == ["base_url", "extra"]


def test_a_plugin_without_configuration_takes_none() -> None:
    with pytest.raises(ConfigRefused, match="anything"):
        PluginHarness(module(), config={"anything": 1})


async def test_the_context_carries_the_configuration_and_the_tenant() -> None:
    config = {"base_url": "https://ehr.example.org", "api_key": "k-1"}
    async with PluginHarness(module(config_schema=SCHEMA), config=config) as hub:
        assert hub.context.config == config
        assert hub.context.tenant == TEST_TENANT
        assert hub.context.plugin == "harness_test"
        assert hub.manifest.sensitive_keys == ("api_key",)
        # The configuration's URL keys name hosts the plugin may call only when the manifest says they do.
        assert "ehr.example.org" not in hub.policy.hosts
    partner = TenantInfo(id="00000000-0000-4000-8000-000000000002", slug="harbor", name="Harbor", kind="partner")
    async with PluginHarness(module(), tenant=partner) as hub:
        assert (await hub.call("carehub_health_check")).detail == "harness_test for harbor"


# -----------------------------------------------------------------------------------------------------------
# The manifest
# -----------------------------------------------------------------------------------------------------------


def test_a_module_without_a_manifest_is_refused() -> None:
    with pytest.raises(TypeError, match=r"no MANIFEST = plugin_sdk\.Manifest"):
        PluginHarness(ModuleType("no_manifest"))


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"name": "Bad-Name"}, "name 'Bad-Name' must be 2-40 lower-case letters"),
        ({"name": "x"}, "name 'x' must be 2-40"),
        ({"sdk": "one point oh"}, "is not a version range"),
        ({"data_categories": ("genomics",)}, "data category 'genomics' is unknown"),
        ({"config_schema": {"type": "record"}}, "config_schema is not a valid JSON Schema"),
        ({"hooks": ("carehub_health_check", "carehub_teleport")}, "hook 'carehub_teleport' is not a carehub hook"),
        ({"hooks": ()}, "manifest lists hooks [] but the module implements ['carehub_health_check']"),
        (
            {"hooks": ("carehub_health_check", "carehub_on_enable")},
            "manifest lists hooks ['carehub_health_check', 'carehub_on_enable'] but the module implements",
        ),
    ],
)
def test_a_manifest_with_a_problem_is_refused_naming_it(manifest: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError) as refused:
        manifest_of(module(**manifest))
    assert message in str(refused.value)


def test_the_sdk_range() -> None:
    assert module().MANIFEST.supports()  # type: ignore[attr-defined]
    assert not module(sdk=">=2,<3").MANIFEST.supports()  # type: ignore[attr-defined]
    assert module(sdk=">=0.1").MANIFEST.supports("1.0.0")  # type: ignore[attr-defined]


# -----------------------------------------------------------------------------------------------------------
# Calls
# -----------------------------------------------------------------------------------------------------------


async def test_a_hook_the_manifest_does_not_list_cannot_be_called() -> None:
    async with PluginHarness(module()) as hub:
        with pytest.raises(LookupError, match="does not implement carehub_on_enable"):
            await hub.call("carehub_on_enable")


async def test_a_hook_gets_only_the_parameters_it_accepts_and_the_results_are_kept() -> None:
    async with PluginHarness(module()) as hub:
        # A parameter of a later SDK version that this hookimpl does not take is not passed to it.
        first = await hub.call("carehub_health_check", added_later="ignored")
        second = await hub.call("carehub_health_check")
    assert hub.results == [("carehub_health_check", first), ("carehub_health_check", second)]
    assert hub.effects == []


async def test_the_http_client_is_closed_with_the_harness() -> None:
    async with PluginHarness(module()) as hub:
        assert not hub.context.http.is_closed
    assert hub.context.http.is_closed


def test_each_missing_key_is_named_at_its_own_path() -> None:
    """Several required keys missing: one problem at each key's path (each used to name the first)."""
    schema = {**SCHEMA, "required": ["base_url", "region", "api_key"]}
    with pytest.raises(ConfigRefused) as refused:
        PluginHarness(module(config_schema=schema), config={"base_url": "https://ehr.example.org"})
    assert sorted(problem.path for problem in refused.value.problems) == ["api_key", "region"]
