"""Test your plugin's hooks with pytest, without a database or a running carehub.

::

    from plugin_sdk.testing import PluginHarness
    import my_plugin

    async def test_pull():
        async with PluginHarness(my_plugin, config={"base_url": "https://ehr.example.org"}) as hub:
            batch = await hub.call("carehub_ehr_pull_patients", since=None)
            assert hub.effects[0].patient.family_name == "Rivera"

The harness does what the host does around a hook, except touching a database: it checks the manifest and the
configuration against its schema (:class:`ConfigRefused` names the failing path), gives the hook a
:class:`~plugin_sdk.context.PluginContext` for a fake tenant with an HTTP client under the same outbound rules,
checks what the hook returns against its declared type, and keeps the effects it asked for in ``effects``.
``clock`` is a :class:`FakeClock` you can move.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType, TracebackType
from typing import Any

from plugin_sdk.context import PluginContext
from plugin_sdk.effects import Effect, InboundResult, PullBatch
from plugin_sdk.hookspecs import HOOK_NAMES
from plugin_sdk.manifest import ConfigProblem, Manifest
from plugin_sdk.outbound import OutboundPolicy, guarded_client
from plugin_sdk.payloads import TenantInfo
from plugin_sdk.results import check_result

TEST_TENANT = TenantInfo(
    id="00000000-0000-4000-8000-000000000001", slug="test-clinic", name="Test Clinic", kind="clinic"
)


class ConfigRefused(ValueError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.path or '(config)'}: {p.message}" for p in problems))


class FakeClock:
    """A clock that stands still until moved."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def manifest_of(plugin: ModuleType) -> Manifest:
    manifest = getattr(plugin, "MANIFEST", None)
    if not isinstance(manifest, Manifest):
        raise TypeError(f"{plugin.__name__} has no MANIFEST = plugin_sdk.Manifest(...)")
    problems = manifest.problems(set(HOOK_NAMES))
    implemented = {n for n in HOOK_NAMES if hasattr(getattr(plugin, n, None), "carehub_impl")}
    if set(manifest.hooks) != implemented:
        listed, found = sorted(manifest.hooks), sorted(implemented)
        problems.append(f"manifest lists hooks {listed} but the module implements {found}")
    if problems:
        raise TypeError(f"{manifest.name}: " + "; ".join(problems))
    return manifest


class PluginHarness:
    def __init__(
        self,
        plugin: ModuleType,
        *,
        config: Mapping[str, Any] | None = None,
        tenant: TenantInfo = TEST_TENANT,
        clock: FakeClock | None = None,
        allow_networks: Iterable[str] = (),
    ) -> None:
        self.plugin = plugin
        self.manifest = manifest_of(plugin)
        self.config = dict(config or {})
        problems = self.manifest.config_problems(self.config)
        if problems:
            raise ConfigRefused(problems)
        self.clock = clock or FakeClock()
        self.effects: list[Effect] = []
        self.results: list[tuple[str, Any]] = []
        urls = [str(self.config[k]) for k in self.manifest.outbound_config_keys if self.config.get(k)]
        self.policy = OutboundPolicy.build(self.manifest.name, self.manifest.outbound_hosts, urls, allow_networks)
        self.http = guarded_client(self.policy)
        self.context = PluginContext(
            plugin=self.manifest.name,
            tenant=tenant,
            config=self.config,
            http=self.http,
            clock=self.clock,
            log=logging.getLogger(f"carehub.plugin.{self.manifest.name}"),
        )

    async def call(self, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` as the host would (keyword arguments, the context added), check its result, keep its
        effects. Raises what the hook raises, or :class:`~plugin_sdk.results.WrongResult`."""
        if hook not in self.manifest.hooks:
            raise LookupError(f"{self.manifest.name} does not implement {hook}")
        function = getattr(self.plugin, hook)
        wanted = inspect.signature(function).parameters
        arguments = {k: v for k, v in {"context": self.context, **kwargs}.items() if k in wanted}
        value = function(**arguments)
        if inspect.isawaitable(value):
            value = await value
        checked = check_result(hook, value)
        self.results.append((hook, checked))
        if isinstance(checked, PullBatch | InboundResult):
            self.effects.extend(checked.effects)
        elif isinstance(checked, list):
            self.effects.extend(e for e in checked if isinstance(e, Effect))
        return checked

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> PluginHarness:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
